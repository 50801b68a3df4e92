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

import pytest
import torch


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
