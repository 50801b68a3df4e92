"""The Dreamer agent: what it needs, its actor-critic losses, acting states, conformance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.dreamer import DreamerAgent, StartStates
from l2rl.builder import services_from
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.config import ConfigError
from l2rl.core import AgentServices, Component
from l2rl.dreamer_math import twohot_mean
from l2rl.testing import fake_scenario
from l2rl.testing.conformance import check_agent
from l2rl.types import EnvSpec

SMALL_AGENT = {"units": 16, "layers": 1, "batch_size": 2, "sequence_length": 4}
SMALL_MODEL = {"deter": 16, "latents": 2, "classes": 4, "units": 16, "layers": 1}
DISCRETE: EnvSpec = fake_scenario(1, 4).env_spec()
CONTINUOUS = EnvSpec(
    gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
    num_tasks=1,
    task_aware=False,
)


class ConstantModel:
    """A world model whose state is its feature vector and never changes; reward 1 for
    discrete action 1 (or for a positive continuous action), continue 1."""

    feature_dim = 3

    def features(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def initial(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 3)

    def observe_step(self, state: Any, prev_action: Any, obs: Any, is_first: Any) -> Any:
        return state + 1.0

    def observe_sequences(self, batch: Any) -> torch.Tensor:
        return torch.ones(*batch.rewards.shape, 3)

    def imagine(
        self, start: torch.Tensor, policy: Callable[[torch.Tensor], torch.Tensor], horizon: int
    ) -> dict[str, torch.Tensor]:
        feats = start.reshape(-1, 3)
        actions = torch.stack([policy(feats) for _ in range(horizon)])
        good = actions == 1 if actions.dtype == torch.long else actions.squeeze(-1)
        return {
            "features": feats.expand(horizon + 1, *feats.shape),
            "actions": actions,
            "rewards": good.to(torch.float32),
            "continues": torch.ones(horizon, len(feats)),
        }


def agent_on(spec: EnvSpec, model: Any = None, **options: Any) -> DreamerAgent:
    replay = FIFOReplay(FIFOReplay.Config(capacity=64, chunk_steps=8), spec)
    services = AgentServices(replay=replay, sequences=replay, world_model=model or ConstantModel())
    config = DreamerAgent.Config(**{**SMALL_AGENT, **options})
    return DreamerAgent(config, spec, services, seed=0)


def starts(n: int = 64) -> StartStates:
    return StartStates(torch.ones(n, 3), torch.ones(n))


def test_it_needs_a_world_model_and_sequences() -> None:
    with pytest.raises(ConfigError, match="configure a world model"):
        DreamerAgent(DreamerAgent.Config(), DISCRETE, AgentServices(), 0)
    model = DreamerWorldModel(DreamerWorldModel.Config(**SMALL_MODEL), DISCRETE)
    with pytest.raises(ConfigError, match="serves sequences"):
        DreamerAgent(DreamerAgent.Config(), DISCRETE, AgentServices(world_model=model), 0)


def test_reinforce_raises_the_probability_of_the_rewarded_action() -> None:
    agent = agent_on(DISCRETE, lr=1e-2)
    torch.manual_seed(0)
    before = float(agent.policy(torch.ones(1, 3)).probs[0, 1])  # type: ignore[attr-defined]
    for _ in range(30):
        losses = agent.losses(starts())
        agent.optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        agent.optimizer.step()
        agent.after_optimizer_step()
    after = float(agent.policy(torch.ones(1, 3)).probs[0, 1])  # type: ignore[attr-defined]
    assert before == pytest.approx(0.5, abs=0.05) and after > 0.8


def test_continuous_actor_backprops_through_imagination_and_not_into_the_critic() -> None:
    agent = agent_on(CONTINUOUS)
    torch.manual_seed(0)
    agent.losses(starts())["loss_actor"].backward()
    assert all(p.grad is not None for p in agent.nets.actor.parameters())
    assert all(p.grad is None for p in agent.nets.critic.parameters())
    assert all(p.requires_grad for p in agent.nets.critic.parameters())


def test_critic_learns_the_discounted_value_and_the_slow_critic_follows_at_its_rate() -> None:
    # Reward 1 at every step with the actor pinned to action 1: v -> sum of discounts.
    agent = agent_on(DISCRETE, lr=1e-2, horizon=15, gamma=0.9, lam=1.0, entropy=0.0)
    agent._imagination_policy = lambda feats: torch.ones(len(feats), dtype=torch.long)  # type: ignore[method-assign]
    slow_before = [p.clone() for p in agent.nets.slow_critic.parameters()]
    for step in range(300):
        losses = agent.losses(starts(8))
        agent.optimizer.zero_grad()
        losses["loss_critic"].backward()
        agent.optimizer.step()
        fast = [p.detach().clone() for p in agent.nets.critic.parameters()]
        agent.after_optimizer_step()
        if step == 0:
            for slow, old, new in zip(
                agent.nets.slow_critic.parameters(), slow_before, fast, strict=True
            ):
                torch.testing.assert_close(slow, old + 0.02 * (new - old))
    with torch.no_grad():
        value = float(twohot_mean(agent.nets.critic(torch.ones(1, 3)), agent.nets.bins))
    assert value == pytest.approx(sum(0.9**k for k in range(100)), rel=0.1)


def test_training_and_evaluation_keep_separate_latent_states() -> None:
    agent = agent_on(DISCRETE)
    obs = np.zeros(4, dtype=np.float32)
    agent.on_episode_start([0], evaluation=False)
    for _ in range(3):
        agent.act(obs, None, explore=True)
    agent.on_episode_start([0], evaluation=True)
    agent.act(obs, None, explore=False)
    # ConstantModel adds 1 per observed step and restarts from 0 on is_first... the fake
    # ignores is_first, so compare counts: training saw 3 steps, evaluation 1.
    assert float(agent._streams[True].state[0, 0]) == 3.0
    assert float(agent._streams[False].state[0, 0]) == 1.0


def test_continuous_actions_are_in_the_action_space() -> None:
    agent = agent_on(CONTINUOUS)
    torch.manual_seed(0)
    for explore in (True, False):
        action = agent.act(np.zeros(3, dtype=np.float32), None, explore)
        assert CONTINUOUS.action_space.contains(action)


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=256, chunk_steps=8), env_spec)


def world_model(env_spec: EnvSpec) -> Component:
    options = {**SMALL_MODEL, "batch_size": 2, "sequence_length": 4, "learning_starts": 16}
    return DreamerWorldModelComponent(DreamerWorldModel.Config(**options), env_spec)


def test_dreamer_conforms_with_a_real_world_model() -> None:
    report = check_agent(
        DreamerAgent,
        {**SMALL_AGENT, "learning_starts": 16, "train_every": 8},
        companions=[fifo, world_model],
    )
    assert "gradients applied" in report.passed and "state_dict" in report.passed


def test_the_builder_wires_the_world_model_to_the_agent() -> None:
    replay, model = fifo(DISCRETE), world_model(DISCRETE)
    services = services_from([replay, model])
    assert isinstance(model, DreamerWorldModelComponent)
    assert services.world_model is model.model


def test_the_policy_on_replayed_observations_is_differentiable_in_the_actor() -> None:
    model = DreamerWorldModel(DreamerWorldModel.Config(**SMALL_MODEL), DISCRETE)
    agent = agent_on(DISCRETE, model)
    obs = torch.rand(5, 4)
    dist = agent.policy_distribution(obs, torch.full((5,), -1))
    assert isinstance(dist, torch.distributions.Categorical) and dist.probs.shape == (5, 2)
    dist.log_prob(torch.zeros(5, dtype=torch.long)).sum().backward()
    assert all(p.grad is not None for p in agent.nets.actor.parameters())
    assert all(p.grad is None for p in model.nets.parameters())
    assert agent.state_value(obs, torch.full((5,), -1)).shape == (5,)


def test_dreamer_acts_and_learns_from_minatar_frames_through_the_cnn_world_model() -> None:
    from l2rl.builder import build_run
    from l2rl.config import parse_config

    schedule = {"batch_size": 2, "sequence_length": 8, "train_every": 4, "learning_starts": 40}
    config = parse_config(
        {
            "name": "dreamer-minatar",
            "scenario": {
                "name": "minatar-sequence",
                "options": {"games": ["breakout", "freeway"]},
                "steps_per_task": 60,
                "task_aware": False,
            },
            "agent": {"name": "dreamer", "options": {"units": 16, "layers": 1, **schedule}},
            "replay": {"name": "fifo", "options": {"capacity": 500, "chunk_steps": 16}},
            "components": [
                {
                    "name": "dreamer-world-model",
                    "options": {**SMALL_MODEL, "cnn_depth": 4, **schedule},
                }
            ],
            "evaluation": {"every": 60, "episodes": 1, "max_episode_steps": 20},
            "progress": False,
        }
    )
    built = build_run(config, seed=0)
    runner = built.runner()
    result = runner.run()
    assert result.env_steps == 120
    assert runner.ctx.learner_updates["agent"] > 0 and runner.ctx.learner_updates["world_model"] > 0
