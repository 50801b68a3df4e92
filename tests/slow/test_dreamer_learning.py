"""Dreamer learns a task only in its world model's imagination.

The task is :class:`~l2rl.testing.FakeEnv`'s contextual bandit (reward 1 for the action the
observation's sign picks): a random policy scores 0.5. The world model learns the reward
from replayed sequences, the actor-critic learns from imagined rollouts only, and the
greedy policy must then score well above chance. Marked slow (about half a minute on 2
cores); run with ``pytest -m slow`` (CI's second job).
"""

from __future__ import annotations

import pytest
import torch

from l2rl.agents.dreamer import DreamerAgent
from l2rl.builder import services_from
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.config import EvalConfig
from l2rl.runner import Runner
from l2rl.testing import fake_scenario

STEPS = 2000


@pytest.mark.slow
def test_dreamer_learns_a_contextual_bandit_in_imagination() -> None:
    torch.set_num_threads(1)
    scenario = fake_scenario(num_tasks=1, steps_per_task=STEPS)
    spec = scenario.env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=5000, chunk_steps=16), spec)
    model = DreamerWorldModelComponent(
        DreamerWorldModel.Config(
            deter=64,
            latents=4,
            classes=8,
            units=64,
            layers=1,
            batch_size=16,
            sequence_length=8,
            train_every=2,
            learning_starts=200,
            lr=1e-3,
        ),
        spec,
    )
    replay.name, model.name = "fifo", "dreamer-world-model"
    services = services_from([replay, model])
    for component in (replay, model):
        component.wire(services)
    agent = DreamerAgent(
        DreamerAgent.Config(
            units=64,
            layers=1,
            batch_size=8,
            sequence_length=8,
            train_every=2,
            learning_starts=300,
            lr=3e-4,
            horizon=5,
        ),
        spec,
        services,
        seed=0,
    )
    result = Runner(scenario, agent, [replay, model], EvalConfig(every=250, episodes=10), 0).run()
    scores = [record.score for record in result.records]
    assert scores[0] < 0.65  # chance is 0.5
    assert min(scores[-3:]) > 0.8, scores
