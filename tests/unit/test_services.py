"""Service slots filled by role, and the builder's second wiring step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from l2rl.builder import build_run, services_from
from l2rl.config import ConfigError, PluginConfig, parse_config
from l2rl.core import AgentServices, Component
from l2rl.testing import fake_scenario
from l2rl.types import EnvSpec

ENV_SPEC: EnvSpec = fake_scenario(1, 4).env_spec()


def component(cls: type[Component], name: str) -> Component:
    built = cls(PluginConfig(), ENV_SPEC)
    built.name = name
    return built


class Model(Component):
    """Offers the world-model service."""

    role = "world_model"
    feature_dim = 1

    def features(self, state: Any) -> torch.Tensor:
        return torch.as_tensor(state)

    def initial(self, batch: int) -> Any:
        return torch.zeros(batch)

    def observe_step(
        self, state: Any, prev_action: torch.Tensor, obs: torch.Tensor, is_first: torch.Tensor
    ) -> Any:
        return state + 1

    def observe_sequences(self, batch: Any) -> Any:
        return torch.zeros(2, 3)

    def imagine(self, start: Any, policy: Any, horizon: int) -> Any:
        return {"features": torch.stack([start] * (horizon + 1))}


class Wrapper(Component):
    """A world-model-role component whose service is an object it owns."""

    role = "world_model"

    def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.model = Model(config, env_spec)

    def service(self) -> object:
        return self.model


class Hyper(Component):
    """Offers generated weights."""

    role = "hypernetwork"
    bound = True

    def bind(self, target: torch.nn.Module, loss_scale: float) -> None:
        pass

    def weights(self, task: int | None) -> Mapping[str, torch.Tensor]:
        return {"weight": torch.full((1,), float(task or 0))}


class Ensemble(Component):
    """A world-model-role component that offers no service (e.g. a disagreement ensemble)."""

    role = "world_model"


def test_slots_are_filled_by_role_and_protocol() -> None:
    model, hyper = component(Model, "model"), component(Hyper, "hyper")
    services = services_from([hyper, model])
    assert services.world_model is model
    assert services.weights is hyper
    assert services.replay is None and services.sequences is None and services.skills is None
    assert services_from([component(Ensemble, "ensemble")]).world_model is None


def test_a_component_may_hand_out_another_object_as_its_service() -> None:
    wrapper = component(Wrapper, "wrapper")
    assert isinstance(wrapper, Wrapper)
    assert services_from([wrapper]).world_model is wrapper.model


def test_two_components_of_a_serving_role_are_an_error() -> None:
    with pytest.raises(ConfigError, match="at most one component may have role 'world_model'"):
        services_from([component(Model, "a"), component(Ensemble, "b")])


def test_the_replay_serves_sequences_and_every_component_is_wired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wired: list[tuple[str, AgentServices]] = []

    def record(self: Component, services: AgentServices) -> None:
        wired.append((self.name, services))

    monkeypatch.setattr(Component, "wire", record)
    config = parse_config(
        {
            "name": "t",
            "scenario": {"name": "cartpole-variants", "steps_per_task": 100},
            "agent": {"name": "dqn", "options": {"learning_starts": 50}},
            "replay": {"name": "fifo", "options": {"capacity": 100}},
            "components": [{"name": "l2"}],
            "evaluation": {"every": 50},
        }
    )
    built = build_run(config, seed=0)
    replay = built.components[0]
    assert built.agent.services.replay is replay
    assert built.agent.services.sequences is replay  # chunked replays serve sequences too
    assert [name for name, _ in wired] == ["fifo", "l2"]
    assert all(services is built.agent.services for _, services in wired)
