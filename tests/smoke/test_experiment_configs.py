"""Every committed experiment config validates and builds (no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from l2rl.builder import check_config
from l2rl.config import load_config, load_yaml

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def baselines_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "baselines_run", EXPERIMENTS / "baselines" / "run.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_config_builds(path: Path) -> None:
    check_config(load_config(path))


def test_every_baseline_builds(tmp_path: Path) -> None:
    module = baselines_module()
    methods = list(load_yaml((EXPERIMENTS / "baselines" / "methods.yaml").read_text()))
    assert "fine-tuning" in methods and len(methods) == 9
    grid = module.experiment_configs(list(module.AVAILABLE), methods, [0], tmp_path)
    assert len(grid) == len(module.AVAILABLE) * 9
    for directory, config in grid.values():
        assert directory.parent.parent == tmp_path
        check_config(config)
