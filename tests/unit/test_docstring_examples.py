"""The ``>>>`` examples in docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "l2rl.aggregate",
    "l2rl.agents.dynamics_ensemble",
    "l2rl.dreamer_math",
    "l2rl.components.detectors.changepoint",
    "l2rl.components.hypernetworks.network",
    "l2rl.components.skills.bank",
    "l2rl.components.skills.csp",
    "l2rl.components.world_models.conv",
    "l2rl.components.world_models.plan2explore",
    "l2rl.config",
    "l2rl.core",
    "l2rl.dirlock",
    "l2rl.manifest",
    "l2rl.metrics_detection",
    "l2rl.planning",
    "l2rl.report_document",
    "l2rl.return_bounds",
    "l2rl.sweep_file",
    "l2rl.testing.conformance",
    "l2rl.testing.runs",
    "l2rl.testing.scenario_check",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
