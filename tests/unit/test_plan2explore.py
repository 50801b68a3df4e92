"""Plan2Explore: the disagreement and the reward mix on hand-made numbers, the training
pairs' time alignment, gradient flow, learning beside a world model, wiring and state."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.components.world_models.plan2explore import (
    DisagreementEnsemble,
    Plan2Explore,
    StreamNorm,
)
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices, ExplorationService
from l2rl.runner import Runner
from l2rl.testing import FakeAgent, fake_scenario
from l2rl.types import EnvSpec, SequenceBatch

DISCRETE = EnvSpec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32), gym.spaces.Discrete(2), 1, True)
CONTINUOUS = EnvSpec(
    gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    1,
    True,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small networks: a second thread only adds contention on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear_ensemble(
    weights: list[list[float]], biases: list[list[float]], **options: Any
) -> DisagreementEnsemble:
    """An ensemble of linear heads (``layers=0``) with the given weights, one row per output
    (a head with one output gives ``[[w...]]``)."""
    config = DisagreementEnsemble.Config(ensemble_size=len(weights), layers=0, **options)
    ensemble = DisagreementEnsemble(config, DISCRETE)
    w = torch.tensor(weights)  # [K, out, in] or [K, in] for one output
    w = w if w.dim() == 3 else w.unsqueeze(1)
    in_dim = w.shape[-1] - (ensemble.encode_actions.dim if config.action_conditioned else 0)
    ensemble.build(feature_dim=in_dim, target_dim=w.shape[1])
    with torch.no_grad():
        for head, head_w, head_b in zip(ensemble.networks().members, w, biases, strict=True):
            layer = head[0]
            assert isinstance(layer, nn.Linear)
            layer.weight.copy_(head_w)
            layer.bias.copy_(torch.tensor(head_b))
    return ensemble


# --- the disagreement and the reward ---------------------------------------------------------
def test_disagreement_is_the_population_std_across_heads_averaged_over_outputs() -> None:
    # Three heads predicting constants (zero weights): [1, 0], [2, 4], [3, 2].
    zeros = [[0.0] * 3, [0.0] * 3]
    ensemble = linear_ensemble([zeros] * 3, [[1.0, 0.0], [2.0, 4.0], [3.0, 2.0]])
    features, actions = torch.zeros(1, 1), torch.zeros(1, dtype=torch.long)
    # Per output: std{1, 2, 3} = sqrt(2/3), std{0, 4, 2} = sqrt(8/3) (dividing by K = 3,
    # as tf.math.reduce_std; the unbiased std would give 1 and 2, mean 1.5).
    expected = (math.sqrt(2 / 3) + math.sqrt(8 / 3)) / 2
    assert expected == pytest.approx(math.sqrt(1.5))
    assert ensemble.disagreement(features, actions).item() == pytest.approx(expected, rel=1e-6)


def two_heads(**options: Any) -> DisagreementEnsemble:
    """Inputs ``[f, onehot(a)]``: head 0 predicts ``f``, head 1 ``3 f + 2 [a == 1]``."""
    return linear_ensemble([[1.0, 0.0, 0.0], [3.0, 0.0, 2.0]], [[0.0], [0.0]], **options)


FEATURES = torch.tensor([[[0.0]], [[1.0]], [[2.0]]])  # [H + 1 = 3, N = 1, F = 1]
ACTIONS = torch.tensor([[0], [1]])  # [H = 2, N = 1]: a_0 = 0, a_1 = 1


def test_the_reward_of_step_t_comes_from_features_t_and_action_t() -> None:
    ensemble = two_heads()
    # t = 0: f = 0, a = 0: both heads say 0, D = 0. t = 1: f = 1, a = 1: 1 vs 5, D = 2.
    # (features[t + 1] with actions[t] would give D = 1 at t = 0 and 4 at t = 1.)
    disagreement = ensemble.disagreement(FEATURES[:-1], ACTIONS)
    torch.testing.assert_close(disagreement, torch.tensor([[0.0], [2.0]]))
    extrinsic = torch.tensor([[1.0], [-2.0]])
    reward = ensemble.imagined_reward(FEATURES, ACTIONS, extrinsic)
    # Continual-Dreamer's 0.9 * D + 0.9 * r, normalisers off (momentum 1):
    torch.testing.assert_close(reward, torch.tensor([[0.9], [0.0]]))


def test_the_mix_normalises_each_reward_by_its_running_magnitude() -> None:
    ensemble = two_heads(intrinsic_weight=0.5, extrinsic_weight=2.0, norm_momentum=0.0)
    extrinsic = torch.tensor([[1.0], [-3.0]])
    reward = ensemble.imagined_reward(FEATURES, ACTIONS, extrinsic)
    # Momentum 0: D = [0, 2] / mean|D| = 1 -> [0, 2]; r = [1, -3] / mean|r| = 2 -> [0.5, -1.5].
    # 0.5 * [0, 2] + 2 * [0.5, -1.5] = [1, -2].
    torch.testing.assert_close(reward, torch.tensor([[1.0], [-2.0]]))
    assert ensemble.intrinsic_norm.mag.item() == pytest.approx(1.0)
    assert ensemble.extrinsic_norm.mag.item() == pytest.approx(2.0)


def test_without_extrinsic_weight_the_reward_is_the_scaled_disagreement() -> None:
    ensemble = two_heads(intrinsic_weight=1.0, extrinsic_weight=0.0, norm_momentum=0.5)
    reward = ensemble.imagined_reward(FEATURES, ACTIONS, torch.tensor([[5.0], [5.0]]))
    # The intrinsic magnitude moves to 0.5 * 1 + 0.5 * mean|D| = 1; the extrinsic one is
    # never updated (DreamerV2 skips the extrinsic term when its scale is 0).
    torch.testing.assert_close(reward, torch.tensor([[0.0], [2.0]]))
    assert ensemble.extrinsic_norm.mag.item() == 1.0


def test_log_disagreement() -> None:
    ensemble = two_heads(log_disagreement=True)
    value = ensemble.disagreement(FEATURES[1:2], ACTIONS[1:2])
    assert value.item() == pytest.approx(math.log(2.0))


def test_stream_norm_follows_its_momentum() -> None:
    norm = StreamNorm(momentum=0.5)
    # m = 0.5 * 1 + 0.5 * mean|[3, -1]| = 1.5; then 0.5 * 1.5 + 0.5 * 1 = 1.25.
    torch.testing.assert_close(norm(torch.tensor([3.0, -1.0])), torch.tensor([2.0, -2 / 3]))
    torch.testing.assert_close(norm(torch.tensor([1.0])), torch.tensor([0.8]))
    off = StreamNorm()  # DreamerV2's expl_reward_norm default: momentum 1 changes nothing
    values = torch.tensor([7.0, -0.25])
    assert torch.equal(off(values), values)
    assert off.mag.item() == 1.0


def test_mismatched_rollout_shapes_are_refused() -> None:
    ensemble = two_heads()
    with pytest.raises(ValueError, match=r"features \[H \+ 1, N, F\]"):
        ensemble.imagined_reward(FEATURES[:-1], ACTIONS, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="extrinsic"):
        ensemble.imagined_reward(FEATURES, ACTIONS, torch.zeros(3, 1))


# --- the training pairs --------------------------------------------------------------------
@dataclass
class StubState:
    """``deter`` ``[..., 1]`` = the observation; ``stoch`` ``[..., 1, 4]`` = one-hot of it."""

    deter: torch.Tensor
    stoch: torch.Tensor


class StubWorldModel:
    """A world model whose state at step t is read off the observation (no learning):
    ``deter_t = obs_t``, ``stoch_t = onehot(obs_t, 4)``, features ``[deter, stoch]``."""

    feature_dim = 5

    def features(self, state: StubState) -> torch.Tensor:
        return torch.cat([state.deter, state.stoch.flatten(1)], dim=-1)

    def initial(self, batch: int) -> StubState:
        return StubState(torch.zeros(batch, 1), torch.zeros(batch, 1, 4))

    def observe_sequences(self, batch: SequenceBatch) -> StubState:
        obs = batch.obs.to(torch.float32)  # [B, T, 1]
        stoch = torch.nn.functional.one_hot(obs[..., 0].long(), 4).to(torch.float32)
        return StubState(obs, stoch.unsqueeze(-2))


def stub_batch() -> SequenceBatch:
    # One sequence of 4 steps; a new episode starts at t = 2. actions[t] led to obs_t.
    return SequenceBatch(
        obs=torch.tensor([[[0.0], [1.0], [2.0], [3.0]]]),
        actions=torch.tensor([[0, 1, 1, 0]]),
        rewards=torch.zeros(1, 4),
        terminated=torch.zeros(1, 4, dtype=torch.bool),
        is_first=torch.tensor([[True, False, True, False]]),
        task_ids=torch.zeros(1, 4, dtype=torch.long),
    )


def bound_to_stub(**options: Any) -> DisagreementEnsemble:
    ensemble = DisagreementEnsemble(DisagreementEnsemble.Config(**options), DISCRETE)
    replay = FIFOReplay(FIFOReplay.Config(capacity=16), DISCRETE)
    ensemble.bind(StubWorldModel(), replay)  # type: ignore[arg-type]
    return ensemble


def test_pairs_predict_the_next_stoch_from_features_and_the_action_taken() -> None:
    ensemble = bound_to_stub()
    assert ensemble.sizes == {"feature_dim": 5, "target_dim": 4}
    pairs = ensemble.training_pairs(stub_batch())
    # (0, 1): features_0 with a_0 = actions[:, 1] = 1, target stoch_1.
    # (1, 2) is dropped: step 2 starts a new episode.
    # (2, 3): features_2 with a_2 = actions[:, 3] = 0, target stoch_3.
    expected_inputs = torch.tensor([[0.0, 1, 0, 0, 0, 0, 1], [2.0, 0, 0, 1, 0, 1, 0]])
    torch.testing.assert_close(pairs.inputs, expected_inputs)
    torch.testing.assert_close(pairs.targets, torch.tensor([[0.0, 1, 0, 0], [0.0, 0, 0, 1]]))


@pytest.mark.parametrize(
    ("target", "expected"),
    [("deter", [[1.0], [3.0]]), ("features", [[1.0, 0, 1, 0, 0], [3.0, 0, 0, 0, 1]])],
)
def test_other_targets_and_no_action(target: str, expected: list[list[float]]) -> None:
    ensemble = bound_to_stub(target=target, action_conditioned=False)
    pairs = ensemble.training_pairs(stub_batch())
    torch.testing.assert_close(pairs.inputs, torch.tensor([[0.0, 1, 0, 0, 0], [2.0, 0, 0, 1, 0]]))
    torch.testing.assert_close(pairs.targets, torch.tensor(expected))


def test_the_loss_is_the_unit_gaussian_nll_summed_over_heads() -> None:
    # Constant heads: head 0 predicts [0, 0, 0, 0], head 1 predicts [1, 1, 1, 1].
    ensemble = bound_to_stub(ensemble_size=2, layers=0)
    with torch.no_grad():
        for head, value in zip(ensemble.networks().members, (0.0, 1.0), strict=True):
            head[0].weight.zero_()
            head[0].bias.fill_(value)
    pairs = ensemble.training_pairs(stub_batch())
    # Each target is one-hot: head 0 is off by 1 in one place (0.5 * 1), head 1 by 1 in
    # three places (0.5 * 3), on both rows: 0.5 + 1.5 = 2.
    loss = ensemble.losses(pairs)["loss_ensemble"]
    assert loss.item() == pytest.approx(2.0)


# --- gradients -----------------------------------------------------------------------------
def continuous_explorer(**options: Any) -> tuple[Plan2Explore, DreamerWorldModel]:
    """An explorer wired to a tiny world model with 1-D continuous actions."""
    model = DreamerWorldModel(
        DreamerWorldModel.Config(deter=16, latents=2, classes=4, units=16, layers=1), CONTINUOUS
    )
    config = Plan2Explore.Config(ensemble_size=3, units=16, layers=1, **options)
    explorer = Plan2Explore(config, CONTINUOUS)
    replay = FIFOReplay(FIFOReplay.Config(capacity=16), CONTINUOUS)
    explorer.wire(AgentServices(replay=replay, sequences=replay, world_model=model))
    return explorer, model


def test_gradients_reach_features_and_actions_but_not_the_heads() -> None:
    torch.manual_seed(0)
    explorer, model = continuous_explorer()
    ensemble = explorer.ensemble
    features = torch.randn(4, 5, model.feature_dim, requires_grad=True)
    actions = torch.randn(3, 5, 1, requires_grad=True)
    ensemble.imagined_reward(features, actions, torch.zeros(3, 5)).sum().backward()
    assert features.grad is not None and actions.grad is not None
    assert features.grad[:-1].abs().sum() > 0 and actions.grad.abs().sum() > 0
    # The last state has no outgoing action, so no reward reads it.
    assert torch.equal(features.grad[-1], torch.zeros_like(features.grad[-1]))
    heads = ensemble.networks()
    assert all(p.grad is None for p in heads.parameters())
    assert all(p.requires_grad for p in heads.parameters())


def test_an_imagined_rollout_backprops_into_the_policy_only() -> None:
    torch.manual_seed(0)
    explorer, model = continuous_explorer()
    ensemble = explorer.ensemble
    shift = torch.zeros(1, requires_grad=True)

    def policy(feats: torch.Tensor) -> torch.Tensor:
        return torch.tanh(feats[:, :1]) + shift

    out = model.imagine(model.initial(4), policy, 3)
    reward = ensemble.imagined_reward(out["features"], out["actions"], out["rewards"])
    assert reward.shape == (3, 4)
    reward.sum().backward()
    assert shift.grad is not None and shift.grad.abs() > 0
    assert all(p.grad is None for p in ensemble.networks().parameters())
    assert all(p.grad is None for p in model.nets.parameters())


# --- learning beside a world model ---------------------------------------------------------
MODEL = {
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
EXPLORER = {
    "ensemble_size": 4,
    "units": 32,
    "layers": 2,
    "batch_size": 8,
    "sequence_length": 8,
    "train_every": 2,
    "learning_starts": 40,
    "lr": 3e-3,
}


def run_explorer(steps: int) -> tuple[Plan2Explore, FIFOReplay]:
    scenario = fake_scenario(num_tasks=1, steps_per_task=steps)
    spec = scenario.env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=2000), spec)
    model = DreamerWorldModelComponent(DreamerWorldModel.Config(**MODEL), spec)
    explorer = Plan2Explore(Plan2Explore.Config(**EXPLORER), spec)
    replay.name, model.name, explorer.name = "fifo", "dreamer-world-model", "plan2explore"
    services = AgentServices(replay=replay, sequences=replay, world_model=model.model)
    model.wire(services)
    explorer.wire(services)
    agent = FakeAgent(FakeAgent.Config(), spec, services, seed=0)
    components = [replay, model, explorer]
    runner = Runner(scenario, agent, components, EvalConfig(every=1000, episodes=1), 0)
    runner.run()
    assert runner.ctx.learner_updates["plan2explore"] == (steps - 40) // 2 + 1
    return explorer, replay


def test_training_fits_seen_states_and_leaves_far_ones_uncertain() -> None:
    explorer, replay = run_explorer(steps=300)
    trained = explorer.ensemble
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pairs = trained.training_pairs(replay.sample_sequences(16, 8))
    untrained = DisagreementEnsemble(trained.config, trained_spec())
    assert trained.sizes is not None
    untrained.build(**trained.sizes)  # the same seeded initialisation the run started from
    with torch.no_grad():
        after = trained.losses(pairs)["loss_ensemble"].item()
        before = untrained.losses(pairs)["loss_ensemble"].item()
    # The fake env's observations are i.i.d., so z_{t+1} is unpredictable beyond its
    # average: the best constant prediction's loss is about the floor, and the trained
    # heads must come close to it from well above.
    targets = pairs.targets
    members = len(trained.networks().members)
    floor = members * 0.5 * (targets - targets.mean(0)).pow(2).sum(-1).mean().item()
    assert before > 1.8 * floor  # there was something to learn
    assert after < 0.6 * before
    assert after < 1.25 * floor
    feature_dim = trained.sizes["feature_dim"]
    features, actions = pairs.inputs[:, :feature_dim], pairs.inputs[:, feature_dim:].argmax(-1)
    generator = torch.Generator().manual_seed(1)
    far = 10.0 * torch.randn(features.shape, generator=generator)
    seen = trained.disagreement(features, actions).mean().item()
    unseen = trained.disagreement(far, actions).mean().item()
    assert seen < 0.5 * unseen
    assert seen < untrained.disagreement(features, actions).mean().item()


def trained_spec() -> EnvSpec:
    return fake_scenario(num_tasks=1, steps_per_task=1).env_spec()


# --- wiring and state ----------------------------------------------------------------------
def test_wiring_needs_a_world_model_and_sequences() -> None:
    spec = trained_spec()
    explorer = Plan2Explore(Plan2Explore.Config(), spec)
    replay = FIFOReplay(FIFOReplay.Config(capacity=16), spec)
    model = DreamerWorldModel(DreamerWorldModel.Config(**MODEL), spec)
    with pytest.raises(ConfigError, match=r"world model.*serves sequences"):
        explorer.wire(AgentServices())
    with pytest.raises(ConfigError, match="configure a world model") as err:
        explorer.wire(AgentServices(replay=replay, sequences=replay))
    assert "serves sequences" not in str(err.value)
    with pytest.raises(ConfigError, match="configure a replay that serves sequences"):
        explorer.wire(AgentServices(world_model=model))
    assert explorer.learners() == ()
    explorer.wire(AgentServices(replay=replay, sequences=replay, world_model=model))
    assert explorer.learners() == (explorer.ensemble,)
    assert isinstance(explorer.service(), ExplorationService)


@dataclass
class FlatState:
    h: torch.Tensor


class FlatWorldModel(StubWorldModel):
    """States without a ``stoch`` tensor."""

    def features(self, state: Any) -> torch.Tensor:
        h: torch.Tensor = state.h
        return h

    def initial(self, batch: int) -> Any:
        return FlatState(torch.zeros(batch, 3))


def test_a_target_the_world_model_lacks_is_refused() -> None:
    spec = trained_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=16), spec)
    services = AgentServices(replay=replay, sequences=replay, world_model=FlatWorldModel())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"target 'stoch'.*target: features"):
        Plan2Explore(Plan2Explore.Config(), spec).wire(services)
    explorer = Plan2Explore(Plan2Explore.Config(target="features"), spec)
    explorer.wire(services)
    assert explorer.ensemble.sizes == {"feature_dim": 3, "target_dim": 3}


def test_actions_it_cannot_encode_are_refused() -> None:
    spec = EnvSpec(DISCRETE.observation_space, gym.spaces.MultiDiscrete([2, 2]), 1, True)
    with pytest.raises(ConfigError, match="cannot encode actions"):
        Plan2Explore(Plan2Explore.Config(), spec)


def test_a_restored_unwired_instance_rewards_the_same() -> None:
    torch.manual_seed(0)
    component, model = continuous_explorer(norm_momentum=0.5)
    ensemble = component.ensemble
    features, actions = torch.randn(4, 5, model.feature_dim), torch.randn(3, 5, 1)
    extrinsic = torch.randn(3, 5)
    ensemble.imagined_reward(features, actions, extrinsic)  # moves both magnitudes
    buffer = io.BytesIO()
    torch.save(component.state_dict(), buffer)
    buffer.seek(0)
    fresh = Plan2Explore(component.config, CONTINUOUS)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.learners() == (fresh.ensemble,)
    assert fresh.ensemble.intrinsic_norm.mag == ensemble.intrinsic_norm.mag != 1.0
    torch.testing.assert_close(
        fresh.ensemble.imagined_reward(features, actions, extrinsic),
        ensemble.imagined_reward(features, actions, extrinsic),
    )
    wrong = DisagreementEnsemble(component.config, CONTINUOUS)
    wrong.build(feature_dim=7, target_dim=8)
    with pytest.raises(ValueError, match="sized"):
        wrong.load_state_dict(component.state_dict()["ensemble"])
