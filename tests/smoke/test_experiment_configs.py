"""Every committed experiment config validates and builds (no training)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from l2rl.builder import check_config
from l2rl.config import load_config, load_yaml
from l2rl.sweep_file import cell_configs, load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


SWEEP_FILES = {"sweep.yaml"}
"""Sweep files among the example configs (l2rl.sweep_file), checked cell by cell."""


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXPERIMENTS.glob("*.yaml") if p.name not in SWEEP_FILES),
    ids=lambda p: p.name,
)
def test_experiment_config_builds(path: Path) -> None:
    check_config(load_config(path))


@pytest.mark.parametrize("name", sorted(SWEEP_FILES))
def test_every_cell_of_the_example_sweep_builds(name: str) -> None:
    cells = cell_configs(load_sweep(EXPERIMENTS / name))
    assert cells
    for _, config in cells.values():
        check_config(config)


def test_every_baseline_builds(
    tmp_path: Path, experiment_script: Callable[..., ModuleType]
) -> None:
    module = experiment_script("baselines")
    methods = list(load_yaml((EXPERIMENTS / "baselines" / "methods.yaml").read_text()))
    assert "fine-tuning" in methods and len(methods) == 9
    grid = module.experiment_configs(list(module.AVAILABLE), methods, [0], tmp_path)
    assert len(grid) == len(module.AVAILABLE) * 9
    for directory, config in grid.values():
        assert directory.parent.parent == tmp_path
        check_config(config)
