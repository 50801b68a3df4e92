"""``benchmarks/weight_generation.py`` runs at tiny sizes and prints every figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "weight_generation.py"


def test_the_benchmark_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("weight_generation_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        status = module.main(["--calls", "2", "--repeats", "2", "--sizes", "1"])
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    assert status == 0
    for figure in ("generate:", "forward:", "plain update:", "generated update:"):
        assert figure in out
    assert "generate / forward:" in out and "generated update / plain update:" in out
