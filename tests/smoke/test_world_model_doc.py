"""The complete example of docs/writing-a-world-model.md works exactly as printed.

The page's ``tiny_world_model.py`` block is written to a temporary folder and imported
from there: a third-party world model that imports nothing of the built-in one. It must
pass the conformance kit with a replay as companion, and the ``dreamer`` agent must train
in its imagination through the ordinary builder wiring.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from l2rl.agents.dreamer import DreamerAgent
from l2rl.builder import services_from
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import EvalConfig
from l2rl.core import Component
from l2rl.runner import Runner
from l2rl.testing import check_component, fake_scenario
from l2rl.testing.conformance import check_agent
from l2rl.types import EnvSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-world-model.md"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    match = re.search(
        r"<!-- file: tiny_world_model.py -->\n```python\n(.*?)```", DOC.read_text(), re.DOTALL
    )
    assert match is not None, "the page lost its tiny_world_model.py block"
    path = tmp_path_factory.mktemp("doc") / "tiny_world_model.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("tiny_world_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the Config's annotations there
    spec.loader.exec_module(module)
    return module


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=256, chunk_steps=8), env_spec)


def test_the_example_passes_the_conformance_kit(example: ModuleType) -> None:
    report = check_component(
        example.TinyWorldModelComponent, {"learning_starts": 16}, companions=[fifo]
    )
    assert "gradients applied[task-aware]" in report.passed


def test_dreamer_trains_in_the_example_models_imagination(example: ModuleType) -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=64)
    spec = scenario.env_spec()
    replay, model = (
        fifo(spec),
        example.TinyWorldModelComponent(
            example.TinyWorldModelComponent.Config(learning_starts=16), spec
        ),
    )
    replay.name, model.name = "fifo", "tiny-world-model"
    services = services_from([replay, model])
    assert services.world_model is model.model
    for component in (replay, model):
        component.wire(services)
    options = DreamerAgent.Config(
        units=16, layers=1, batch_size=2, sequence_length=8, learning_starts=16
    )
    agent = DreamerAgent(options, spec, services, seed=0)
    runner = Runner(scenario, agent, [replay, model], EvalConfig(every=64, episodes=1), 0)
    runner.run()
    assert runner.ctx.learner_updates["agent"] > 0
    assert runner.ctx.learner_updates["tiny_world_model"] > 0

    def world_model(env_spec: EnvSpec) -> Component:
        config = example.TinyWorldModelComponent.Config(learning_starts=16)
        component: Component = example.TinyWorldModelComponent(config, env_spec)
        return component

    check_agent(
        DreamerAgent,
        {"units": 16, "layers": 1, "batch_size": 2, "sequence_length": 8, "learning_starts": 16},
        companions=[fifo, world_model],
    )
