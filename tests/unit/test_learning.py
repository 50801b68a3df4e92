"""DQN really learns: its greedy score rises on a tiny task within seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2rl.agents.dqn import DQNAgent
from l2rl.builder import build_component
from l2rl.config import EvalConfig, PluginRef
from l2rl.core import AgentServices
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.scenarios.cartpole_variants import cartpole_variants


def learning_curve(seed: int, steps: int) -> list[float]:
    """Greedy scores on CartPole (episodes cut at 100 steps) every 1000 training steps."""
    tasks = cartpole_variants.tasks({"variants": ["base"], "max_episode_steps": 100})
    scenario = Scenario.sequence("tiny", tasks, steps_per_task=steps)
    spec = scenario.env_spec()
    replay = build_component(PluginRef(name="fifo", options={"capacity": 10_000}), spec)
    options = DQNAgent.Config(
        learning_starts=500, train_every=2, epsilon_decay_steps=2000, target_update_every=100
    )
    agent = DQNAgent(options, spec, AgentServices(replay=replay), seed)  # type: ignore[arg-type]
    result = Runner(scenario, agent, [replay], EvalConfig(every=1000, episodes=5), seed).run()
    return [r.score for r in result.records]


@pytest.mark.parametrize("seed", [0, 2])
def test_dqn_learning_curve_rises_on_cartpole(seed: int) -> None:
    torch.set_num_threads(1)
    curve = learning_curve(seed, steps=4000)
    assert len(curve) == 5  # before training + every 1000 steps
    assert curve[0] < 0.3, curve  # an untrained greedy policy falls within a few steps
    # the rise is a trend, not one lucky evaluation
    assert min(curve[-2:]) > 0.8, curve
    assert np.mean(curve[-2:]) > np.mean(curve[:2]) + 0.5, curve
