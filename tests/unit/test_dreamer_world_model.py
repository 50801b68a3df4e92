"""The DreamerV3-style world model: its losses at initialisation, resets, training beside
the agent, imagination and wiring."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices
from l2rl.runner import Runner
from l2rl.testing import FakeAgent, fake_scenario
from l2rl.types import EnvSpec, SequenceBatch

SMALL = {
    "deter": 32,
    "latents": 4,
    "classes": 4,
    "units": 32,
    "layers": 1,
    "batch_size": 8,
    "sequence_length": 8,
    "train_every": 2,
    "learning_starts": 40,
    "lr": 3e-3,
}


def setup(steps: int = 200) -> tuple[Runner, DreamerWorldModelComponent, FIFOReplay]:
    scenario = fake_scenario(num_tasks=1, steps_per_task=steps)
    spec = scenario.env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=2000), spec)
    replay.name = "fifo"
    model = DreamerWorldModelComponent(DreamerWorldModel.Config(**SMALL), spec)
    model.name = "dreamer-world-model"
    services = AgentServices(replay=replay, sequences=replay, world_model=model.model)
    model.wire(services)
    agent = FakeAgent(FakeAgent.Config(), spec, services, seed=0)
    runner = Runner(scenario, agent, [replay, model], EvalConfig(every=100, episodes=1), 0)
    return runner, model, replay


def sequences(replay: FIFOReplay) -> SequenceBatch:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return replay.sample_sequences(8, 8)


def test_losses_at_initialisation() -> None:
    runner, model, replay = setup(steps=60)
    model.model.source = None  # collect data only
    runner.run()
    batch = sequences(replay)
    losses = model.model.losses(batch)
    assert set(losses) == {"loss_decoder", "loss_reward", "loss_continue", "loss_kl"}
    # The zero-initialised reward head predicts uniform bins: cross-entropy ln 255 exactly.
    assert losses["loss_reward"].item() == pytest.approx(math.log(255), rel=1e-6)
    # Free bits: the KL term is at least 0.5 + 0.1 nats.
    assert losses["loss_kl"].item() >= 0.6 - 1e-6
    assert all(torch.isfinite(v) for v in losses.values())


def test_the_latent_state_resets_at_episode_starts() -> None:
    runner, model, replay = setup(steps=60)
    model.model.source = None
    runner.run()
    batch = sequences(replay)
    assert batch.is_first[:, 1:].any()  # fake episodes are short: starts inside sequences
    nets = model.model.nets
    embed = nets.encoder(batch.obs.to(torch.float32))
    _, _, feats = nets.rssm.observe(
        embed, model.model.encode_actions(batch.actions), batch.is_first
    )
    deter = feats[..., : nets.rssm.deter]
    # After a reset h_t = GRU(0, [0, 0]): the same vector wherever an episode starts.
    starts = deter[batch.is_first]
    torch.testing.assert_close(starts, starts[:1].expand_as(starts))


def test_the_world_model_learns_beside_the_agent() -> None:
    runner, model, replay = setup(steps=600)
    before = {k: v.item() for k, v in model.model.losses(sequences_after(runner, replay)).items()}
    runner.run()
    after = {k: v.item() for k, v in model.model.losses(sequences(replay)).items()}
    assert runner.ctx.learner_updates["world_model"] == (600 - 40) // 2 + 1
    assert after["loss_decoder"] < 0.5 * before["loss_decoder"]
    assert after["loss_reward"] < 0.5 * before["loss_reward"]


def sequences_after(runner: Runner, replay: FIFOReplay) -> SequenceBatch:
    """Sequences of a data-only twin run: the untrained model's losses on the same data."""
    twin, twin_model, twin_replay = setup(steps=600)
    twin_model.model.source = None
    twin.run()
    return sequences(twin_replay)


def test_imagination_rolls_the_policy_out() -> None:
    _, component, _ = setup()
    model = component.model
    start = model.initial(3)
    out = model.imagine(start, lambda feats: torch.zeros(len(feats), dtype=torch.long), 5)
    feature_dim = model.feature_dim
    assert out["features"].shape == (6, 3, feature_dim)
    assert out["actions"].shape == (5, 3)
    assert out["rewards"].shape == out["continues"].shape == (5, 3)
    # The zero-initialised reward head predicts 0 (up to float32 rounding of the bin mean).
    assert torch.allclose(out["rewards"], torch.zeros(5, 3), atol=1e-5)


def test_it_needs_a_replay_that_serves_sequences() -> None:
    spec = fake_scenario(1, 4).env_spec()
    component = DreamerWorldModelComponent(DreamerWorldModel.Config(**SMALL), spec)
    with pytest.raises(ConfigError, match="trains on replayed sequences"):
        component.wire(AgentServices())


def test_imagination_gradients_reach_the_actions_but_not_the_model() -> None:
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    spec = EnvSpec(box, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), 1, True)
    model = DreamerWorldModel(DreamerWorldModel.Config(**SMALL), spec)
    shift = torch.zeros(1, requires_grad=True)

    def policy(feats: torch.Tensor) -> torch.Tensor:
        return torch.tanh(feats[:, :1]) + shift

    out = model.imagine(model.initial(4), policy, 3)
    (out["features"].sum() + out["continues"].sum()).backward()
    assert shift.grad is not None and shift.grad.abs() > 0
    assert all(p.grad is None for p in model.nets.parameters())
    assert all(p.requires_grad for p in model.nets.parameters())


def test_stepwise_posteriors_match_the_sequence_filter() -> None:
    """Acting with observe_step sees the states that training filters from replay."""
    runner, component, replay = setup(steps=60)
    component.model.source = None
    runner.run()
    batch = sequences(replay)
    model = component.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        filtered = model.observe_sequences(batch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        state = model.initial(len(batch))
        for t in range(batch.obs.shape[1]):
            state = model.observe_step(
                state, batch.actions[:, t], batch.obs[:, t], batch.is_first[:, t]
            )
            torch.testing.assert_close(state.deter, filtered.deter[:, t])
            torch.testing.assert_close(state.stoch, filtered.stoch[:, t])
    assert filtered.deter.shape == (8, 8, SMALL["deter"])


def test_latent_samples_follow_the_categorical_with_straight_through_gradients() -> None:
    from l2rl.components.world_models.rssm import RSSM

    rssm = RSSM(4, 2, 8, latents=1, classes=4, units=8)
    probs = torch.tensor([[[0.1, 0.0, 0.6, 0.3]]]).expand(20000, 1, 4).clone()
    log_probs = probs.clamp_min(1e-12).log().requires_grad_(True)
    torch.manual_seed(0)
    sample = rssm.sample(log_probs)
    frequencies = sample.detach().mean(0)[0]
    torch.testing.assert_close(frequencies, probs[0, 0], atol=0.01, rtol=0.0)
    assert set(sample.detach().sum(-1).flatten().tolist()) == {1.0}  # one-hot
    sample[:, 0, 2].sum().backward()  # straight-through: d sample / d probs = identity
    assert log_probs.grad is not None and log_probs.grad[:, 0, 2].abs().sum() > 0
