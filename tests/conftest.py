"""Suite-wide settings: one torch thread.

The test networks are tiny; with torch's default of one thread per core, two cores shared
with other processes make them several times slower (intra-op threads contend), and
results do not depend on the thread count for these sizes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml


def pytest_configure() -> None:
    torch.set_num_threads(1)


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment_script(folder: str, name: str = "run") -> ModuleType:
    """``experiments/<folder>/<name>.py`` imported as a module (its folder on ``sys.path``
    while it loads, so it can import its siblings)."""
    directory = EXPERIMENTS / folder
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location(f"{folder}_{name}", directory / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(directory))
    return module


@pytest.fixture
def experiment_script() -> Callable[..., ModuleType]:
    """:func:`load_experiment_script`, for the tests of the experiment folders' scripts."""
    return load_experiment_script


def write_tiny_cartpole_configs(
    folder: str, configs: Path, steps_per_task: int, every: int
) -> dict[str, Any]:
    """Write into ``configs`` a tiny copy of ``experiments/<folder>/cartpole-variants.yaml``
    (one seed, ``steps_per_task`` steps per task, 30-step episodes, DQN learning from step
    32 on batches of 16 at every step, one evaluation episode every ``every`` steps);
    return that folder's ``methods.yaml``, to be changed and written beside it."""
    from l2rl.config import load_yaml  # the suite's settings load before the library

    configs.mkdir(parents=True, exist_ok=True)
    base = load_yaml((EXPERIMENTS / folder / "cartpole-variants.yaml").read_text())
    base["seeds"] = [0]
    base["scenario"].update(steps_per_task=steps_per_task)
    base["scenario"]["options"].update(max_episode_steps=30)
    base["agent"]["options"].update(learning_starts=32, batch_size=16, train_every=1)
    base["evaluation"].update(every=every, episodes=1)
    (configs / "cartpole-variants.yaml").write_text(yaml.safe_dump(base))
    methods: dict[str, Any] = load_yaml((EXPERIMENTS / folder / "methods.yaml").read_text())
    return methods


@pytest.fixture
def tiny_cartpole_configs() -> Callable[..., dict[str, Any]]:
    """:func:`write_tiny_cartpole_configs`, for the experiment folders' pipeline tests."""
    return write_tiny_cartpole_configs
