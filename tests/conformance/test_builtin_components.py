"""Every registered replay passes the conformance checks and feeds DQN, SAC and Dreamer;
the skill managers pass them with DQN.

Parametrised over the ``l2rl.components`` entry points whose class has role ``replay``,
so a replay registered later is checked without touching this file. Each runs the kit's
checks with its :class:`~l2rl.testing.FakeAgent` and with DQN (a real agent reading every
field of the batch), and trains SAC (continuous actions), on small sizes so that chunks
are completed and evicted within the run.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from l2rl import registry
from l2rl.agents.dqn import DQNAgent
from l2rl.agents.dreamer import DreamerAgent
from l2rl.agents.sac import SACAgent
from l2rl.builder import services_from
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.config import EvalConfig
from l2rl.core import Agent, AgentServices
from l2rl.runner import Runner
from l2rl.scenarios.from_envs import scenario_from_envs
from l2rl.testing import check_component, fake_scenario
from l2rl.testing.conformance import AgentFactory
from l2rl.types import EnvSpec

BUILTIN_REPLAYS = {
    "fifo",
    "reservoir",
    "task-balanced",
    "wmar",
    "continual-dreamer",
    "current-task",
    "coreset",
}

REPLAYS = sorted(
    name
    for name in registry.available("l2rl.components")
    if getattr(registry.load("l2rl.components", name), "role", None) == "replay"
)

# The fake run is 2 tasks x 32 steps: chunks of 4 steps, 4 of them kept (2 per WMAR
# buffer), so chunks complete, are evicted and change task during the run.
SMALL = {"capacity": 16, "chunk_steps": 4}


def dqn(env_spec: EnvSpec, services: AgentServices, seed: int) -> Agent:
    """A DQN that starts learning after 8 steps, so the short runs update it."""
    config = DQNAgent.Config(batch_size=8, learning_starts=8, train_every=4, hidden_sizes=[16])
    return DQNAgent(config, env_spec, services, seed)


AGENTS: dict[str, AgentFactory | None] = {"fake-agent": None, "dqn": dqn}


def small_options(cls: Any) -> dict[str, int]:
    """The small sizes, for the options the replay's Config has."""
    return {k: v for k, v in SMALL.items() if k in cls.Config.model_fields}


def test_the_builtin_replays_are_registered() -> None:
    # Entry points come from the installed metadata: after editing pyproject.toml,
    # reinstall (pip install -e .) for new names to appear.
    assert BUILTIN_REPLAYS.issubset(REPLAYS)


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize("name", REPLAYS)
def test_replay_passes_conformance(name: str, agent: str) -> None:
    cls = registry.load("l2rl.components", name)
    report = check_component(cls, small_options(cls), agent_factory=AGENTS[agent], name=name)
    assert "replay sample[task-aware]" in report.passed
    assert "replay sample[task-agnostic]" in report.passed


@pytest.mark.parametrize("name", REPLAYS)
def test_sac_trains_from_every_replay(name: str) -> None:
    # SAC needs a Box action space, which the kit's fake scenario does not have: two
    # short Pendulum windows instead, so the replay changes task and completes chunks.
    scenario = scenario_from_envs(
        ["Pendulum-v1", "Pendulum-v1"],
        steps_per_task=40,
        names=["pendulum-a", "pendulum-b"],
        return_range=(-1600.0, 0.0),
    )
    env_spec = scenario.env_spec()
    cls = registry.load("l2rl.components", name)
    replay = cls(cls.Config(**small_options(cls)), env_spec)
    replay.name = name
    config = SACAgent.Config(batch_size=8, learning_starts=8, random_steps=8, hidden_sizes=[16])
    agent = SACAgent(config, env_spec, services_from([replay]), seed=0)
    evaluation = EvalConfig(every=40, episodes=1, max_episode_steps=2)
    result = Runner(scenario, agent, [replay], evaluation, seed=0).run()
    assert result.updates > 40  # SAC updates every step once 8 transitions are stored
    batch = replay.sample(8)
    # A coreset replay adds 8 rows per finished task (one here).
    rows = 16 if name == "coreset" else 8
    assert batch.actions.dtype == torch.float32 and batch.actions.shape == (rows, 1)


SEQUENCE_REPLAYS = [
    name
    for name in REPLAYS
    if callable(getattr(registry.load("l2rl.components", name), "sample_sequences", None))
]
"""The replays that also serve sequences (every chunked one; not the coreset)."""


def test_the_chunked_replays_serve_sequences() -> None:
    assert set(REPLAYS) - set(SEQUENCE_REPLAYS) == {"coreset"}


@pytest.mark.parametrize("name", SEQUENCE_REPLAYS)
def test_dreamer_and_its_world_model_train_from_every_replay(name: str) -> None:
    """Both learners update from the replay's sequences, across a task change."""
    scenario = fake_scenario(num_tasks=2, steps_per_task=32)
    env_spec = scenario.env_spec()
    cls = registry.load("l2rl.components", name)
    replay = cls(cls.Config(**small_options(cls)), env_spec)
    tiny = {"batch_size": 2, "sequence_length": 4, "train_every": 4, "learning_starts": 8}
    model = DreamerWorldModelComponent(
        DreamerWorldModel.Config(deter=16, latents=2, classes=4, units=16, layers=1, **tiny),
        env_spec,
    )
    replay.name, model.name = name, "dreamer-world-model"
    services = services_from([replay, model])
    for component in (replay, model):
        component.wire(services)
    agent = DreamerAgent(DreamerAgent.Config(units=16, layers=1, **tiny), env_spec, services, 0)
    runner = Runner(scenario, agent, [replay, model], EvalConfig(every=32, episodes=1), seed=0)
    runner.run()
    assert runner.ctx.learner_updates == {"agent": 15, "world_model": 15}


@pytest.mark.parametrize("name", ["slim", "csp"])
def test_skill_managers_pass_conformance(name: str) -> None:
    cls = registry.load("l2rl.components", name)
    options: dict[str, Any] = {"validation_episodes": 1}
    if name == "slim":  # fail at every evaluation: the run expands, freezes and audits
        options |= {"tau": 2.0, "patience": 1, "n_min": 0, "skill_batch_size": 8}
    fifo = registry.load("l2rl.components", "fifo")

    def replay(env_spec: EnvSpec) -> Any:
        component = fifo(fifo.Config(capacity=64), env_spec)
        component.name = "fifo"
        return component

    report = check_component(
        cls,
        options,
        agent_factory=dqn,
        name=name,
        settings=("task-aware",),
        companions=[replay],
    )
    assert "skill parameters[task-aware]" in report.passed
    assert "state_dict[task-aware]" in report.passed


def test_csp_passes_conformance_in_searched_mode_with_a_detector() -> None:
    cls = registry.load("l2rl.components", "csp")
    fifo, cusum = (registry.load("l2rl.components", n) for n in ("fifo", "cusum"))

    def replay(env_spec: EnvSpec) -> Any:
        return fifo(fifo.Config(capacity=64), env_spec)

    def detector(env_spec: EnvSpec) -> Any:  # alarms at once: every inferred task is short
        return cusum(cusum.Config(warmup=2, threshold=0.1, drift=0.0), env_spec)

    report = check_component(
        cls,
        {"validation_episodes": 1, "candidates": 2, "score_every": 5},
        agent_factory=dqn,
        name="csp",
        settings=("task-agnostic",),
        companions=[replay, detector],
    )
    assert "skill parameters[task-agnostic]" in report.passed
    assert "state_dict[task-agnostic]" in report.passed


def test_the_kit_refuses_a_skill_manager_the_agent_never_binds() -> None:
    cls = registry.load("l2rl.components", "csp")
    with pytest.raises(Exception, match="never bound the skills service"):
        check_component(cls, {}, name="csp", settings=("task-aware",))
