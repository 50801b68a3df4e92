"""``benchmarks/world_model.py`` runs at tiny sizes and prints every figure (its speed
target is checked by running the benchmark, never here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "world_model.py"
# One peak-memory child (each costs a fresh interpreter importing torch): the plain
# loop's is the same code path with another setup, which the timing run builds too.
TINY = "--repeats 1 --updates 1 --rollouts 1 --memory-updates 1 --memory-runs l2rl --horizon 3"
SIZES = "--deter 8 --units 8 --layers 1 --latents 2 --classes 3 --batch 2 --length 4"


def test_the_benchmark_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("world_model_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        status = module.main(f"{TINY} {SIZES}".split())
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    assert status in (0, 1)  # 1: the speed target was missed, which is not asserted
    assert "deter 8, units 8 x 1 layers, z 2x3, batch 2 x 4 steps" in out
    for figure in (
        "l2rl: fifo replay + runner update",
        "plain single-file torch loop",
        "l2rl / plain median:",
        "sample_sequences:",
        "losses differ by",
        "8 start states x horizon 3",  # batch 2 x length 4
        *module.IMAGINE_LABELS.values(),
        module.MEMORY_RUNS["l2rl"].label,
    ):
        assert figure in out
