"""SAC: the soft target by hand, gradient isolation of the summed losses, temperature,
the tanh log-density, action scaling, errors, and learning."""

from __future__ import annotations

import io
import math
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.sac import (
    SACAgent,
    SquashedNormal,
    soft_q_target,
    squashed_gaussian_sample,
)
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices, PolicyAgent
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.types import EnvSpec, ReturnRange, Step, TaskSpec, TransitionBatch


def box_spec(
    low: list[float] | None = None,
    high: list[float] | None = None,
    obs_dim: int = 2,
    num_tasks: int = 1,
    task_aware: bool = True,
) -> EnvSpec:
    low_a = np.array(low or [-2.0], np.float32)
    high_a = np.array(high or [2.0], np.float32)
    return EnvSpec(
        gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        gym.spaces.Box(low_a, high_a, dtype=np.float32),
        num_tasks,
        task_aware,
    )


def make_agent(
    env_spec: EnvSpec | None = None, seed: int = 0, capacity: int = 1000, **options: Any
) -> SACAgent:
    env_spec = env_spec or box_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=capacity), env_spec)
    return SACAgent(SACAgent.Config(**options), env_spec, AgentServices(replay=replay), seed)


def set_linear(layer: torch.nn.Module, weight: list[list[float]], bias: list[float]) -> None:
    assert isinstance(layer, torch.nn.Linear)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def random_batch(n: int = 16, obs_dim: int = 2, action_dim: int = 1) -> TransitionBatch:
    g = torch.Generator().manual_seed(0)
    return TransitionBatch(
        obs=torch.randn(n, obs_dim, generator=g),
        actions=torch.rand(n, action_dim, generator=g) * 4 - 2,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=torch.rand(n, generator=g) < 0.3,
        task_ids=torch.zeros(n, dtype=torch.int64),
    )


# --- the critic target ----------------------------------------------------------------------


def test_soft_q_target_on_hand_numbers() -> None:
    # 1 + 0.5 * (2 - 0.2 * -1) = 2.1; the terminated row keeps its reward only.
    target = soft_q_target(
        rewards=torch.tensor([1.0, 1.0]),
        terminated=torch.tensor([False, True]),
        next_q=torch.tensor([2.0, 2.0]),
        next_log_prob=torch.tensor([-1.0, -1.0]),
        alpha=0.2,
        gamma=0.5,
    )
    assert target.tolist() == pytest.approx([2.1, 1.0])


def test_critic_loss_on_hand_numbers() -> None:
    """Linear nets; target critics ignore the action and the temperature is ~0.

    Q1'(s') = s'0 + 1, Q2'(s') = 2 s'1. A: s' = (1, 0.5): min(2, 1) = 1, y = 0.5 + 0.9 = 1.4.
    B: terminated, y = r = -1. Online Q1(s, a) = unit action, Q2(s, a) = s0; actions are in
    [-2, 2], so env action 1 is 0.5 in unit range and -2 is -1.
    Q1 errors (0.5 - 1.4, -1 + 1), Q2 errors (1 - 1.4, 0.5 + 1): 0.5 (0.405 + 1.205) = 0.805.
    """
    agent = make_agent(hidden_sizes=[], gamma=0.9, init_alpha=1e-9, autotune_alpha=False)
    target, online = agent.target_critics, agent.nets.critics
    set_linear(target.q1.body.heads[0], [[1.0, 0.0, 0.0]], [1.0])
    set_linear(target.q2.body.heads[0], [[0.0, 2.0, 0.0]], [0.0])
    set_linear(online.q1.body.heads[0], [[0.0, 0.0, 1.0]], [0.0])
    set_linear(online.q2.body.heads[0], [[1.0, 0.0, 0.0]], [0.0])
    batch = TransitionBatch(
        obs=torch.tensor([[1.0, 2.0], [0.5, 0.0]]),
        actions=torch.tensor([[1.0], [-2.0]]),
        rewards=torch.tensor([0.5, -1.0]),
        next_obs=torch.tensor([[1.0, 0.5], [0.0, 3.0]]),
        terminated=torch.tensor([False, True]),
        task_ids=torch.tensor([0, 0]),
    )
    losses = agent.losses(batch)
    assert set(losses) == {"loss_critic", "loss_actor"}  # no temperature loss when fixed
    assert losses["loss_critic"].item() == pytest.approx(0.805, abs=1e-5)


# --- gradient isolation -----------------------------------------------------------------


def grads_by_part(agent: SACAgent) -> dict[str, bool]:
    """Which parameter sets hold a nonzero gradient."""

    def has(params: Any) -> bool:
        return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)

    return {
        "actor": has(agent.nets.actor.parameters()),
        "critics": has(agent.nets.critics.parameters()),
        "alpha": has([agent.log_alpha]),
        "target": has(agent.target_critics.parameters()),
    }


@pytest.mark.parametrize(
    ("loss", "owner"),
    [("loss_critic", "critics"), ("loss_actor", "actor"), ("loss_alpha", "alpha")],
)
def test_each_loss_reaches_only_its_own_parameters(loss: str, owner: str) -> None:
    agent = make_agent(hidden_sizes=[16, 16])
    agent.optimizer.zero_grad(set_to_none=True)
    agent.losses(random_batch())[loss].backward()
    parts = grads_by_part(agent)
    assert parts == {part: part == owner for part in parts}


def test_the_summed_losses_give_each_part_the_gradient_of_its_own_loss() -> None:
    agent = make_agent(hidden_sizes=[16, 16], seed=2)
    batch = random_batch()
    state = agent.generator.get_state()
    own: dict[str, list[torch.Tensor]] = {}
    params = {
        "loss_actor": list(agent.nets.actor.parameters()),
        "loss_critic": list(agent.nets.critics.parameters()),
        "loss_alpha": [agent.log_alpha],
    }
    for name, group in params.items():
        agent.generator.set_state(state)  # the same noise draws every time
        agent.optimizer.zero_grad(set_to_none=True)
        agent.losses(batch)[name].backward()
        own[name] = [p.grad.clone() for p in group]  # type: ignore[union-attr]
    agent.generator.set_state(state)
    agent.optimizer.zero_grad(set_to_none=True)
    sum(agent.losses(batch).values()).backward()  # type: ignore[union-attr]
    for name, group in params.items():
        for p, g in zip(group, own[name], strict=True):
            assert p.grad is not None and torch.allclose(p.grad, g, atol=1e-6)


# --- the temperature --------------------------------------------------------------------


@pytest.mark.parametrize(("log_std", "alpha_rises"), [(0.0, False), (-5.0, True)])
def test_temperature_falls_when_entropy_exceeds_the_target_and_rises_otherwise(
    log_std: float, alpha_rises: bool
) -> None:
    """Target entropy -1 (one action dim). With std 1 the squashed policy's entropy is about
    0.67 > -1, so alpha should fall; with std e^-5 it is about -3.6 < -1, so alpha should rise.
    Adam's first step moves log alpha by exactly its learning rate."""
    agent = make_agent(hidden_sizes=[], alpha_lr=0.1, init_alpha=0.5)
    set_linear(agent.nets.actor.heads[0], [[0.0, 0.0], [0.0, 0.0]], [0.0, log_std])
    agent.optimizer.zero_grad()
    agent.losses(random_batch())["loss_alpha"].backward()
    agent.optimizer.step()
    assert (agent.alpha > 0.5) == alpha_rises
    assert agent.alpha == pytest.approx(0.5 * math.exp(0.1 if alpha_rises else -0.1), rel=1e-3)


def test_fixed_temperature_is_not_learned() -> None:
    agent = make_agent(init_alpha=0.2, autotune_alpha=False)
    assert agent.alpha == pytest.approx(0.2)
    assert not agent.log_alpha.requires_grad
    assert all(agent.log_alpha is not p for g in agent.optimizer.param_groups for p in g["params"])


# --- the squashed Gaussian ----------------------------------------------------------------


def test_tanh_log_density_matches_a_numerical_derivative_of_the_cdf() -> None:
    """P(tanh(u) <= a) = Phi((atanh(a) - mu) / sigma); its derivative in a is the density."""
    mu, sigma = 0.3, 0.7
    noise = torch.tensor([[-2.5], [-1.0], [0.0], [0.4], [1.7], [3.0]], dtype=torch.float64)
    mean = torch.full_like(noise, mu)
    action, log_prob = squashed_gaussian_sample(
        mean, torch.full_like(noise, math.log(sigma)), noise
    )

    def cdf(a: float) -> float:
        return 0.5 * (1 + math.erf((math.atanh(a) - mu) / (sigma * math.sqrt(2))))

    for a, lp in zip(action[:, 0].tolist(), log_prob.tolist(), strict=True):
        h = 1e-6 * (1 - abs(a))
        numeric = (cdf(a + h) - cdf(a - h)) / (2 * h)
        assert math.exp(lp) == pytest.approx(numeric, rel=1e-4)


def test_squashed_normal_scores_env_actions_consistently_with_the_sampler() -> None:
    center, half = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.5])
    mean, log_std = torch.tensor([[0.2, -0.4]]), torch.tensor([[-0.3, 0.1]])
    noise = torch.tensor([[0.5, -1.2]])
    unit, log_prob = squashed_gaussian_sample(mean, log_std, noise)
    dist = SquashedNormal(mean, log_std.exp(), center, half)
    # Env space = affine map of the unit action: the density divides by prod(half_range).
    expected = log_prob - half.log().sum()
    assert dist.log_prob(center + half * unit).item() == pytest.approx(expected.item(), abs=1e-5)
    assert torch.allclose(dist.mode, center + half * torch.tanh(mean))
    assert torch.isfinite(dist.log_prob(center + half)).all()  # a bound is not -inf
    assert dist.rsample((7,)).shape == (7, 1, 2)


def test_kl_between_squashed_normals_is_the_kl_of_their_gaussians() -> None:
    center, half = torch.zeros(2), torch.ones(2)
    p = SquashedNormal(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.5]]), center, half)
    q = SquashedNormal(torch.tensor([[0.5, 1.0]]), torch.tensor([[2.0, 0.5]]), center, half)
    # KL(N(0,1) || N(0.5,2)) = log 2 + (1 + 0.25) / 8 - 0.5; the second dimension adds 0.
    expected = math.log(2) + 1.25 / 8 - 0.5
    assert torch.distributions.kl_divergence(p, q).item() == pytest.approx(expected, abs=1e-6)
    other = SquashedNormal(torch.zeros(1, 2), torch.ones(1, 2), center, 2 * half)
    with pytest.raises(ValueError, match="same action bounds"):
        torch.distributions.kl_divergence(p, other)


# --- acting and scaling ---------------------------------------------------------------------


def test_actions_are_scaled_to_the_bounds_of_the_space() -> None:
    spec = box_spec(low=[-2.0, 0.0], high=[2.0, 10.0])
    agent = make_agent(spec, hidden_sizes=[], random_steps=200)
    assert agent.to_env(torch.tensor([-1.0, -1.0])).tolist() == [-2.0, 0.0]
    assert agent.to_env(torch.tensor([1.0, 1.0])).tolist() == [2.0, 10.0]
    assert agent.to_unit(torch.tensor([1.0, 7.5])).tolist() == pytest.approx([0.5, 0.5])
    obs = np.array([0.3, -0.2], np.float32)
    random_phase = []
    for _ in range(200):
        random_phase.append(agent.act(obs, 0, explore=True))
        agent.observe(Step(obs, random_phase[-1], 0.0, obs, False, False, 0, 0))
    spread = np.array(random_phase)
    assert spread.min(0) == pytest.approx([-2.0, 0.0], abs=0.15)
    assert spread.max(0) == pytest.approx([2.0, 10.0], abs=0.4)
    sampled = np.array([agent.act(obs, 0, explore=True) for _ in range(200)])
    assert np.all(sampled >= [-2.0, 0.0]) and np.all(sampled <= [2.0, 10.0])
    assert sampled.dtype == np.float32 and sampled.shape == (200, 2)
    set_linear(agent.nets.actor.heads[0], [[0, 0], [0, 0], [0, 0], [0, 0]], [0.5, -1.0, 0, 0])
    greedy = agent.act(obs, 0, explore=False)
    assert greedy.tolist() == pytest.approx([2 * math.tanh(0.5), 5 + 5 * math.tanh(-1.0)])


def test_policy_agent_methods() -> None:
    agent = make_agent(hidden_sizes=[8])
    assert isinstance(agent, PolicyAgent)
    obs, tasks = torch.randn(6, 2), torch.full((6,), -1)
    dist = agent.policy_distribution(obs, tasks)
    assert isinstance(dist, SquashedNormal)
    assert dist.log_prob(torch.zeros(6, 1)).shape == (6,)
    value = agent.state_value(obs, tasks)
    assert value.shape == (6,)
    assert torch.equal(value, agent.state_value(obs, tasks))  # deterministic
    q1, q2 = agent.nets.critics(obs, torch.tanh(agent.nets.actor(obs)[:, :1]))
    assert torch.allclose(value, torch.min(q1, q2))
    assert agent.networks() is agent.nets
    assert {n.split(".")[0] for n, _ in agent.networks().named_parameters()} == {
        "actor",
        "critics",
    }


def test_multi_head_uses_the_task_heads() -> None:
    agent = make_agent(box_spec(num_tasks=2), hidden_sizes=[], multi_head=True, random_steps=0)
    set_linear(agent.nets.actor.heads[0], [[0, 0], [0, 0]], [1.0, 0.0])
    set_linear(agent.nets.actor.heads[1], [[0, 0], [0, 0]], [-1.0, 0.0])
    obs = np.zeros(2, np.float32)
    assert agent.act(obs, 0, False)[0] == pytest.approx(2 * math.tanh(1.0))
    assert agent.act(obs, 1, False)[0] == pytest.approx(-2 * math.tanh(1.0))
    with pytest.raises(ValueError, match="task id"):
        agent.act(obs, None, False)
    batch = random_batch()
    batch = TransitionBatch(**{**vars(batch), "task_ids": torch.ones(16, dtype=torch.int64)})
    agent.losses(batch)["loss_actor"].backward()
    assert agent.nets.actor.heads[0].weight.grad is not None
    assert torch.all(agent.nets.actor.heads[0].weight.grad == 0)
    assert agent.nets.actor.heads[1].weight.grad.abs().sum() > 0  # type: ignore[union-attr]


# --- updates, targets, state --------------------------------------------------------------


def test_batches_only_when_due_and_warm() -> None:
    agent = make_agent(learning_starts=5, train_every=2, gradient_steps=3, batch_size=4)
    obs = np.zeros(2, np.float32)
    action = np.zeros(1, np.float32)
    for _ in range(4):
        agent.replay.add(Step(obs, action, 0.0, obs, False, False, 0, 0))  # type: ignore[attr-defined]
    assert list(agent.batches(4)) == []
    agent.replay.add(Step(obs, action, 0.0, obs, False, False, 0, 0))  # type: ignore[attr-defined]
    assert list(agent.batches(5)) == []
    assert [len(b) for b in agent.batches(6)] == [4, 4, 4]


def test_target_critics_follow_by_polyak_averaging() -> None:
    agent = make_agent(hidden_sizes=[], tau=0.25)
    set_linear(agent.nets.critics.q1.body.heads[0], [[4.0, 0.0, 0.0]], [8.0])
    set_linear(agent.target_critics.q1.body.heads[0], [[0.0, 0.0, 4.0]], [0.0])
    agent.after_optimizer_step()
    head = agent.target_critics.q1.body.heads[0]
    assert head.weight.tolist() == [[1.0, 0.0, 3.0]]
    assert head.bias.tolist() == [2.0]
    assert not any(p.requires_grad for p in agent.target_critics.parameters())


def test_state_dict_round_trip_and_seeding() -> None:
    torch.manual_seed(11)
    expected = torch.rand(2)
    torch.manual_seed(11)
    source = make_agent(seed=1, random_steps=3, init_alpha=0.3)
    assert torch.equal(torch.rand(2), expected)  # construction left the global stream alone
    obs = np.zeros(2, np.float32)
    for _ in range(2):
        source.observe(Step(obs, source.act(obs, 0, True), 0.0, obs, False, False, 0, 0))
    source.after_optimizer_step()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    restored = make_agent(seed=7, random_steps=3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.steps == 2 and restored.alpha == pytest.approx(0.3)
    pairs = zip(
        restored.target_critics.parameters(), source.target_critics.parameters(), strict=True
    )
    assert all(torch.equal(x, y) for x, y in pairs)
    # the last random action, then policy samples: both streams restored
    assert np.array_equal([restored.act(obs, 0, True) for _ in range(4)],
                          [source.act(obs, 0, True) for _ in range(4)])  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (EnvSpec(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), 1, True), "1-D Box action"),
        (EnvSpec(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-np.inf, np.inf, (1,)), 1, True),
         "finite action bounds"),
        (EnvSpec(gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (1,)), 1, True),
         "Box observation space"),
        (box_spec(num_tasks=2, task_aware=False), "task_aware"),
    ],
)  # fmt: skip
def test_refuses_bad_setups(spec: EnvSpec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SACAgent(SACAgent.Config(multi_head=True), spec, AgentServices(replay=object()), 0)  # type: ignore[arg-type]


def test_refuses_a_missing_replay() -> None:
    with pytest.raises(ConfigError, match=r"replay component \(role replay\)"):
        SACAgent(SACAgent.Config(), box_spec(), AgentServices(replay=None), 0)


# --- learning -----------------------------------------------------------------------------


class TrackTarget(gym.Env[np.ndarray, np.ndarray]):
    """One-step task: observe x in [-1, 1], act a in [-1, 1], reward -(a - x)^2."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x = np.zeros(1, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._x = self.np_random.uniform(-1, 1, 1).astype(np.float32)
        return self._x.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = -float((np.asarray(action)[0] - self._x[0]) ** 2)
        return self._x.copy(), reward, True, False, {}


def test_sac_learns_to_track_a_target_within_seconds() -> None:
    torch.set_num_threads(1)
    task = TaskSpec("track", TrackTarget, ReturnRange(-1.0, 0.0))
    scenario = Scenario.sequence("track", [task], steps_per_task=800)
    agent = make_agent(
        scenario.env_spec(),
        seed=0,
        hidden_sizes=[32, 32],
        batch_size=64,
        learning_starts=100,
        random_steps=100,
        actor_lr=3e-3,
        critic_lr=3e-3,
        alpha_lr=3e-3,
        gamma=0.0,
    )
    replay = agent.replay
    result = Runner(scenario, agent, [replay], EvalConfig(every=200, episodes=20), 0).run()  # type: ignore[list-item]
    returns = [r.mean_return for r in result.records]
    # Acting uniformly at random scores E(a - x)^2 = -2/3; the untrained greedy policy
    # (a ~ 0) about -1/3. Seeds 0-2 reach -0.007 to -0.015 (an error of about 0.1).
    assert returns[0] < -0.1, returns
    assert returns[-1] > -0.03, returns
    assert min(returns[1:]) > returns[0], returns


@pytest.mark.slow
def test_sac_swings_up_the_pendulum() -> None:
    torch.set_num_threads(1)
    make = partial(gym.make, "Pendulum-v1", max_episode_steps=200)
    task = TaskSpec("pendulum", make, ReturnRange(-1200.0, -140.0))
    scenario = Scenario.sequence("pendulum", [task], steps_per_task=8000)
    # The replay keeps every step. With 1000 transitions (five episodes) the critic chases
    # the newest data and the policy drops the pendulum again: seeds 0-5 then ended
    # anywhere between -150 and -1030, failing the assertion below for most of them. With
    # all 8000 kept, the last two evaluations of seeds 0-5 lie between -124 and -236.
    agent = make_agent(
        scenario.env_spec(),
        seed=0,
        capacity=10_000,
        hidden_sizes=[64, 64],
        batch_size=128,
        actor_lr=1e-3,
        critic_lr=1e-3,
        alpha_lr=1e-3,
    )
    replay = agent.replay
    result = Runner(scenario, agent, [replay], EvalConfig(every=2000, episodes=5), 0).run()  # type: ignore[list-item]
    returns = [r.mean_return for r in result.records]
    assert returns[0] < -900, returns  # untrained: the pendulum hangs or spins
    assert min(returns[-2:]) > -300, returns  # swung up and held from most starts
