"""check_agent on every built-in agent, and the orphan-gradient check on broken plugins."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from l2rl.agents.dqn import DQNAgent
from l2rl.agents.ppo import PPOAgent
from l2rl.agents.sac import SACAgent
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import PluginConfig
from l2rl.core import AgentServices, Component, RunContext
from l2rl.scenario import Scenario
from l2rl.scenarios.pendulum_gravity import pendulum_gravity
from l2rl.testing import (
    ConformanceError,
    FakeAgent,
    FakeLearnerComponent,
    check_component,
    fake_scenario,
)
from l2rl.testing.conformance import check_agent, orphan_gradients
from l2rl.types import EnvSpec, Losses


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=500), env_spec)


def test_dqn_conforms() -> None:
    report = check_agent(DQNAgent, {"learning_starts": 16, "batch_size": 8}, companions=[fifo])
    assert report.passed == (
        "options",
        "run",
        "gradients applied",
        "state_dict",
        "untrained_task_heads",
    )


def test_ppo_conforms() -> None:
    check_agent(PPOAgent, {"n_steps": 32, "num_minibatches": 2})


def test_sac_conforms() -> None:
    family = pendulum_gravity
    tasks = family.tasks(
        {
            "gravities": [10.0],
            "max_episode_steps": 20,
            "return_low": [-320.0],
            "return_high": [0.0],
        },
        where="test",
    )
    scenario = Scenario.sequence("pendulum", tasks, steps_per_task=64)
    check_agent(
        SACAgent, {"learning_starts": 16, "batch_size": 8}, scenario=scenario, companions=[fifo]
    )


class UnownedParameters(Component):
    """Learns a parameter through the agent's loss without any optimizer stepping it."""

    role = "regularizer"

    def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        return {"loss_scaled": self.scale * ctx.agent.networks().weight.pow(2).sum() * 1e-3}


def test_a_gradient_nobody_applies_fails_conformance() -> None:
    with pytest.raises(
        ConformanceError, match=r"received a gradient but belong to no learner's optimizer.*scale"
    ):
        check_component(UnownedParameters)


def test_a_component_learner_conforms_and_its_optimizer_round_trips() -> None:
    report = check_component(FakeLearnerComponent)
    assert "gradients applied[task-aware]" in report.passed
    assert "state_dict[task-agnostic]" in report.passed


def test_a_learner_whose_optimizer_state_is_not_saved_fails() -> None:
    class ForgetsOptimizer(FakeLearnerComponent):
        def state_dict(self) -> dict[str, Any]:
            return {"net": self.model.networks().state_dict(), "recent": list(self.model.recent)}

        def load_state_dict(self, state: Any) -> None:
            self.model.networks().load_state_dict(state["net"])

    with pytest.raises(ConformanceError, match="learner 'reward-model' optimizer"):
        check_component(ForgetsOptimizer)


def test_orphan_gradients_names_the_parameter() -> None:
    class Holder:
        def __init__(self) -> None:
            self.net = torch.nn.Linear(2, 1)

    holder = Holder()
    holder.net(torch.ones(1, 2)).sum().backward()
    agent = FakeAgent(FakeAgent.Config(), _spec(), _services(), 0)
    assert orphan_gradients([holder], [agent]) == ["Holder.net.bias", "Holder.net.weight"]


def _spec() -> EnvSpec:
    return fake_scenario(1, 4).env_spec()


def _services() -> AgentServices:
    return AgentServices()
