"""dynamics-heldout: held-out transitions cut from sequences, and the error it logs."""

from __future__ import annotations

import pytest
import torch

from l2rl.agents.mpc import MPCAgent
from l2rl.builder import services_from
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dynamics_heldout import DynamicsHeldout, transitions_of
from l2rl.config import EvalConfig
from l2rl.hooks import ComponentError
from l2rl.logging.recorder import Recorder
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.scenarios.pendulum_gravity import pendulum_gravity
from l2rl.testing import FakeAgent, fake_scenario


def test_transitions_skip_each_episodes_first_row() -> None:
    obs = torch.arange(5.0).reshape(1, 5, 1)
    actions = torch.arange(10.0, 15.0).reshape(1, 5, 1)
    is_first = torch.tensor([[True, False, False, True, False]])
    s, a, s_next = transitions_of(obs, actions, is_first)
    # Rows 1, 2 and 4 end a transition: (0 -a11-> 1), (1 -a12-> 2), (3 -a14-> 4).
    assert s.flatten().tolist() == [0.0, 1.0, 3.0]
    assert a.flatten().tolist() == [11.0, 12.0, 14.0]
    assert s_next.flatten().tolist() == [1.0, 2.0, 4.0]


class Scalars(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[float]] = {}

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.values.setdefault(tag, []).append(value)


def test_the_probe_logs_each_tasks_model_error_and_it_falls_with_training() -> None:
    tasks = pendulum_gravity.tasks(
        {
            "gravities": [10.0, 14.0],
            "max_episode_steps": 50,
            "return_low": [-400.0] * 2,
            "return_high": [0.0] * 2,
        },
        where="test",
    )
    scenario = Scenario.sequence("pendulum", tasks, steps_per_task=300)
    spec = scenario.env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=1000, chunk_steps=10), spec)
    probe = DynamicsHeldout(DynamicsHeldout.Config(sequences=2, sequence_length=40), spec)
    replay.name, probe.name = "fifo", "dynamics-heldout"
    options = {
        "planner": "mppi",
        "hidden": [32],
        "samples": 8,
        "horizon": 2,
        "random_steps": 300,
        "train_every": 100,
        "gradient_steps": 200,
        "batch_size": 32,
        "normalize_inputs": False,
    }
    agent = MPCAgent(MPCAgent.Config(**options), spec, services_from([replay]), seed=0)
    log = Scalars()
    evaluation = EvalConfig(every=300, episodes=1, max_episode_steps=1)
    Runner(scenario, agent, [replay, probe], evaluation, seed=0, recorder=log).run()
    first = log.values["eval/dynamics/g=10/mse"]
    assert len(first) == 3 and len(log.values["eval/dynamics/g=14/mse"]) == 3
    assert first[1] < 0.2 * first[0]  # after training on g=10, before any: far better


def test_the_probe_refuses_an_agent_without_a_model() -> None:
    scenario = fake_scenario(1, 8)
    spec = scenario.env_spec()
    probe = DynamicsHeldout(DynamicsHeldout.Config(), spec)
    probe.name = "dynamics-heldout"
    agent = FakeAgent(FakeAgent.Config(), spec, services_from([]), seed=0)
    with pytest.raises(ComponentError, match="predict"):
        Runner(scenario, agent, [probe], EvalConfig(every=8, episodes=1), seed=0).run()
