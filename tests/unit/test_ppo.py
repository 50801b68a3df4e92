"""PPO: GAE and the clipped objective by hand, rollouts through the runner, spaces, errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.ppo import PPOAgent, PPOBatch, clipped_surrogate_loss, gae, value_loss
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices, PolicyAgent
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.scenarios.cartpole_variants import cartpole_variants
from l2rl.testing.fakes import RecordingComponent, fake_scenario
from l2rl.types import EnvSpec, Step


def discrete_spec(
    obs_dim: int = 2, num_actions: int = 2, num_tasks: int = 1, task_aware: bool = True
) -> EnvSpec:
    return EnvSpec(
        gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        gym.spaces.Discrete(num_actions),
        num_tasks,
        task_aware,
    )


def box_spec(low: float = -1.0, high: float = 1.0, dims: int = 2, num_tasks: int = 1) -> EnvSpec:
    return EnvSpec(
        gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        gym.spaces.Box(low, high, (dims,), np.float32),
        num_tasks,
        True,
    )


def make_agent(env_spec: EnvSpec | None = None, seed: int = 0, **options: Any) -> PPOAgent:
    return PPOAgent(PPOAgent.Config(**options), env_spec or discrete_spec(), AgentServices(), seed)


def set_linear_critic(agent: PPOAgent, weight: list[float], bias: float = 0.0) -> None:
    """Make V(s) = weight . s + bias (the agent must have ``hidden_sizes=[]``)."""
    head = agent.nets.critic.heads[0]
    with torch.no_grad():
        head.weight.copy_(torch.tensor([weight]))
        head.bias.fill_(bias)


def feed(
    agent: PPOAgent,
    obs: list[float],
    next_obs: list[float],
    reward: float,
    terminated: bool = False,
    truncated: bool = False,
    env_index: int = 0,
    first: bool = False,
) -> None:
    """Act on ``obs`` (caching the log-prob) and observe the resulting transition."""
    o = np.array(obs, np.float32)
    action = agent.act(o, 0, explore=True)
    next_o = np.array(next_obs, np.float32)
    agent.observe(Step(o, action, reward, next_o, terminated, truncated, 0, 0, env_index, first))


# --- GAE and the objective by hand ------------------------------------------------------


def test_gae_on_a_hand_computed_rollout_with_a_truncation_and_a_termination() -> None:
    # gamma 0.9, lambda 0.5. t0 continues into t1; t1 is truncated (bootstraps from
    # V(s'_1) = 0.8, the sum stops); t2 terminates (no bootstrap, V(s'_2) = 9 ignored).
    # deltas: 1 + 0.9*0.6 - 0.5 = 1.04;  2 + 0.9*0.8 - 0.6 = 2.12;  1 - 0.3 = 0.7.
    # A2 = 0.7, A1 = 2.12, A0 = 1.04 + 0.9*0.5*2.12 = 1.994.
    advantages = gae(
        rewards=np.array([1.0, 2.0, 1.0]),
        values=np.array([0.5, 0.6, 0.3]),
        next_values=np.array([0.6, 0.8, 9.0]),
        terminated=np.array([False, False, True]),
        ends=np.array([False, True, True]),
        gamma=0.9,
        lam=0.5,
    )
    assert advantages.tolist() == pytest.approx([1.994, 2.12, 0.7])


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value() -> None:
    rewards = np.array([1.0, 0.0, 2.0])
    values = np.array([0.3, -0.2, 0.7])
    next_values = np.array([-0.2, 0.7, 0.0])
    advantages = gae(rewards, values, next_values, np.array([0, 0, 1], bool),
                     np.array([0, 0, 1], bool), gamma=0.5, lam=1.0)  # fmt: skip
    returns = [1 + 0.5 * 0 + 0.25 * 2, 0 + 0.5 * 2, 2.0]
    assert advantages.tolist() == pytest.approx(np.subtract(returns, values).tolist())


def test_clipped_surrogate_value_and_gradient_on_hand_numbers() -> None:
    # ratios 1.5, 0.5, 1.1, 0.7 with advantages 1, 1, -1, -2 and eps 0.2:
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-1.1, -1.1) = -1.1; min(-1.4, -1.6) = -1.6.
    # Objective mean -0.25, so the loss is 0.25.
    old = torch.log(torch.tensor([0.2, 0.4, 0.5, 0.5]))
    log_probs = (old + torch.log(torch.tensor([1.5, 0.5, 1.1, 0.7]))).requires_grad_()
    advantages = torch.tensor([1.0, 1.0, -1.0, -2.0])
    loss = clipped_surrogate_loss(log_probs, old, advantages, clip_range=0.2)
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    # Clipped terms (rows 0 and 3) pass no gradient; the others give -r A / 4.
    assert log_probs.grad is not None
    assert log_probs.grad.tolist() == pytest.approx([0.0, -0.125, 0.275, 0.0])


def test_value_loss_plain_and_clipped() -> None:
    values, old, returns = (
        torch.tensor([1.0, 0.0]),
        torch.tensor([0.0, 0.5]),
        torch.tensor([2.0, 1.0]),
    )
    # plain: 0.5 * mean(1, 1) = 0.5
    assert value_loss(values, old, returns, None).item() == pytest.approx(0.5)
    # clipped to 0.2 from old: 0.2 and 0.3; errors (2 - 0.2)^2 = 3.24 > 1, (1 - 0.3)^2 = 0.49 < 1
    assert value_loss(values, old, returns, 0.2).item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)


# --- rollouts -------------------------------------------------------------------------------


def only_batch(agent: PPOAgent) -> PPOBatch:
    batches = list(agent.batches(0))
    assert len(batches) == 1
    return batches[0]


def test_rollout_advantages_bootstrap_truncations_and_cuts_not_terminations() -> None:
    """Four steps of one env through observe: V(s) = s0; gamma 0.9, lambda 0.5.

    a: (1,0) -> (2,0), r 1, continues into b.      delta 1 + 1.8 - 1 = 1.8
    b: (2,0) -> (3,0), r 0, truncated.              delta 0 + 2.7 - 2 = 0.7
    c: (4,0) -> (5,0), r 1, starts an episode (after b's truncation); the next step starts
       another (Step.first: a window cut), so c's piece ends there and bootstraps.
                                                    delta 1 + 4.5 - 4 = 1.5
    d: (6,0) -> (7,0), r 2, terminated.             delta 2 - 6 = -4
    A = (1.8 + 0.45 * 0.7, 0.7, 1.5, -4).
    """
    agent = make_agent(hidden_sizes=[], gamma=0.9, gae_lambda=0.5, n_steps=4, n_epochs=1,
                       num_minibatches=1)  # fmt: skip
    set_linear_critic(agent, [1.0, 0.0])
    feed(agent, [1, 0], [2, 0], 1.0)
    feed(agent, [2, 0], [3, 0], 0.0, truncated=True)
    feed(agent, [4, 0], [5, 0], 1.0, first=True)
    assert list(agent.batches(3)) == []  # not full yet
    feed(agent, [6, 0], [7, 0], 2.0, terminated=True, first=True)
    batch = only_batch(agent)
    by_obs = {float(o[0]): i for i, o in enumerate(batch.obs)}
    got = [batch.advantages[by_obs[x]].item() for x in (1.0, 2.0, 4.0, 6.0)]
    assert got == pytest.approx([1.8 + 0.45 * 0.7, 0.7, 1.5, -4.0])
    values = [batch.values[by_obs[x]].item() for x in (1.0, 2.0, 4.0, 6.0)]
    assert values == pytest.approx([1.0, 2.0, 4.0, 6.0])
    assert torch.allclose(batch.returns, batch.advantages + batch.values)
    assert list(agent.batches(4)) == []  # the rollout was consumed


def test_batches_yield_epochs_of_minibatches_covering_the_rollout() -> None:
    agent = make_agent(n_steps=10, n_epochs=3, num_minibatches=4)
    for i in range(10):
        feed(agent, [float(i), 0.0], [float(i) + 0.5, 0.0], 0.0)
    batches = list(agent.batches(10))
    assert [len(b) for b in batches] == [3, 3, 3, 1] * 3
    for epoch in range(3):
        rows = torch.cat([b.obs[:, 0] for b in batches[4 * epoch : 4 * epoch + 4]])
        assert sorted(rows.tolist()) == [float(i) for i in range(10)]


class CapturingPPO(PPOAgent):
    """Keeps every minibatch it hands the runner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[PPOBatch] = []

    def batches(self, global_step: int) -> Iterator[PPOBatch]:
        for batch in super().batches(global_step):
            self.seen.append(batch)
            yield batch


def test_two_env_rollouts_through_the_runner_keep_each_envs_order() -> None:
    """Value 0 (zero head, no value loss), gamma = lambda = 1: each advantage is the sum of
    the same env's later rewards in the rollout. Interleaving the two envs' transitions, or
    caching one env's action for the other, would break the match with the recorded steps."""
    scenario = fake_scenario(num_tasks=1, steps_per_task=48, episode_length=8)
    spec = scenario.env_spec()
    options = PPOAgent.Config(
        n_steps=6, n_epochs=1, num_minibatches=1, gamma=1.0, gae_lambda=1.0, value_coef=0.0
    )
    agent = CapturingPPO(options, spec, AgentServices(), seed=3)
    with torch.no_grad():
        agent.nets.critic.heads[0].weight.zero_()
    recorder = RecordingComponent(RecordingComponent.Config(), spec)
    Runner(scenario, agent, [recorder], EvalConfig(every=1000, episodes=1), 3, num_envs=2).run()
    assert agent.num_envs == 2
    steps = [c.payload for c in recorder.calls if c.hook == "on_step"]
    assert len(agent.seen) == 4 and all(len(b) == 12 for b in agent.seen)
    for r, batch in enumerate(agent.seen):
        rollout = steps[12 * r : 12 * (r + 1)]
        expected = {}
        for env in (0, 1):
            mine = [s for s in rollout if s.env_index == env]
            assert len(mine) == 6
            for t, s in enumerate(mine):
                # FakeEnv episodes last 8 steps: the sum stops at a truncation.
                end = next((k for k in range(t, 6) if mine[k].truncated), 5)
                expected[s.obs.tobytes()] = (s.action, sum(m.reward for m in mine[t : end + 1]))
        for obs, action, advantage in zip(batch.obs, batch.actions, batch.advantages, strict=True):
            want_action, want_advantage = expected[obs.numpy().tobytes()]
            assert action.item() == want_action
            assert advantage.item() == pytest.approx(want_advantage)


def test_observe_without_an_exploring_act_is_an_error() -> None:
    agent = make_agent()
    o = np.zeros(2, np.float32)
    agent.act(o, 0, explore=False)  # evaluation does not cache
    with pytest.raises(RuntimeError, match="did not act on"):
        agent.observe(Step(o, 0, 0.0, o, False, False, 0, 0))


# --- action spaces ------------------------------------------------------------------------


def test_discrete_acting_samples_when_exploring_and_takes_the_argmax_otherwise() -> None:
    agent = make_agent(discrete_spec(num_actions=3), hidden_sizes=[])
    with torch.no_grad():
        agent.nets.actor.heads[0].weight.zero_()
        agent.nets.actor.heads[0].bias.copy_(torch.log(torch.tensor([0.2, 0.5, 0.3])))
    obs = np.zeros(2, np.float32)
    assert {agent.act(obs, 0, explore=False) for _ in range(10)} == {1}
    counts = np.bincount([agent.act(obs, 0, explore=True) for _ in range(3000)], minlength=3)
    assert counts / 3000 == pytest.approx([0.2, 0.5, 0.3], abs=0.03)
    dist = agent.policy_distribution(torch.zeros(1, 2), torch.tensor([0]))
    assert isinstance(dist, torch.distributions.Categorical)


def test_box_actions_are_clipped_for_the_env_but_stored_unclipped() -> None:
    agent = make_agent(box_spec(-0.1, 0.1), n_steps=50, n_epochs=1, num_minibatches=1,
                       log_std_init=1.0)  # fmt: skip
    obs = np.zeros(2, np.float32)
    env_actions = []
    for _ in range(50):
        action = agent.act(obs, 0, explore=True)
        env_actions.append(action)
        agent.observe(Step(obs, action, 0.0, obs, True, False, 0, 0))
    assert all(a.shape == (2,) and a.dtype == np.float32 for a in env_actions)
    assert np.abs(env_actions).max() <= 0.1
    batch = only_batch(agent)
    assert batch.actions.abs().max() > 1.0  # std e: most samples fall outside [-0.1, 0.1]
    # The stored log-prob is that of the unclipped sample under the acting policy.
    dist = agent.policy_distribution(batch.obs, batch.task_ids)
    assert torch.allclose(batch.log_probs, dist.log_prob(batch.actions), atol=1e-5)


def test_box_greedy_action_is_the_clipped_mean_and_log_std_is_state_independent() -> None:
    agent = make_agent(box_spec(-1.0, 1.0, dims=2), hidden_sizes=[], log_std_init=-0.5)
    with torch.no_grad():
        agent.nets.actor.heads[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        agent.nets.actor.heads[0].bias.zero_()
    action = agent.act(np.array([0.25, 0.5], np.float32), 0, explore=False)
    assert action.tolist() == pytest.approx([0.25, 1.0])  # the mean (0.25, 1.5), clipped
    dist = agent.policy_distribution(torch.tensor([[0.0, 0.0], [5.0, 1.0]]), torch.tensor([0, 0]))
    assert dist.event_shape == (2,) and dist.batch_shape == (2,)
    assert torch.allclose(dist.stddev, torch.full((2, 2), float(np.exp(-0.5))))


def test_losses_have_the_three_terms_and_train_the_policy_towards_good_actions() -> None:
    """One-step bandit: action 1 pays 1, action 0 pays 0. A few updates raise pi(1)."""
    agent = make_agent(discrete_spec(), n_steps=64, n_epochs=4, num_minibatches=2, lr=0.01,
                       entropy_coef=0.01)  # fmt: skip
    obs = np.array([0.5, -0.5], np.float32)

    def p1() -> float:
        dist = agent.policy_distribution(torch.from_numpy(obs)[None], torch.tensor([0]))
        return float(dist.probs[0, 1].detach())

    before = p1()
    for _ in range(3):
        for _ in range(64):
            a = agent.act(obs, 0, explore=True)
            agent.observe(Step(obs, a, float(a), obs, True, False, 0, 0))
        for batch in agent.batches(0):
            losses = agent.losses(batch)
            assert set(losses) == {"loss_policy", "loss_value", "loss_entropy"}
            agent.optimizer.zero_grad()
            sum(losses.values()).backward()  # type: ignore[union-attr]
            agent.optimizer.step()
    assert before == pytest.approx(0.5, abs=0.02)
    assert p1() > 0.9


def test_multi_head_uses_the_task_head_and_its_own_log_std() -> None:
    agent = make_agent(box_spec(num_tasks=3), multi_head=True, n_steps=4, n_epochs=1,
                       num_minibatches=1)  # fmt: skip
    assert agent.nets.log_std is not None
    assert agent.nets.log_std.shape == (3, 2)
    with torch.no_grad():
        agent.nets.log_std[2].fill_(-1.0)
    obs = torch.zeros(2, 2)
    dist = agent.policy_distribution(obs, torch.tensor([0, 2]))
    assert dist.stddev[:, 0].tolist() == pytest.approx([1.0, float(np.exp(-1.0))])
    with pytest.raises(ValueError, match="head index"):
        agent.state_value(obs, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="task id"):
        agent.act(np.zeros(2, np.float32), None, explore=False)
    # A batch of task 2 only: gradients reach head 2 and its log-std row, not the others.
    o = np.array([0.5, -1.0], np.float32)
    for reward in range(4):  # different returns, so normalised advantages are not all 0
        a = agent.act(o, 2, explore=True)
        agent.observe(Step(o, a, float(reward), o, True, False, 2, 0))
    batch = only_batch(agent)
    sum(agent.losses(batch).values()).backward()  # type: ignore[union-attr]
    grads = [h.weight.grad for h in agent.nets.actor.heads]
    assert all(g is not None for g in grads)
    assert torch.all(grads[0] == 0) and torch.all(grads[1] == 0) and grads[2].abs().sum() > 0  # type: ignore[union-attr]
    assert agent.nets.log_std.grad is not None
    assert (
        torch.all(agent.nets.log_std.grad[:2] == 0) and agent.nets.log_std.grad[2].abs().sum() > 0
    )


def test_implements_the_policy_agent_protocol() -> None:
    agent = make_agent(discrete_spec(obs_dim=3))
    assert isinstance(agent, PolicyAgent)
    obs, tasks = torch.randn(5, 3), torch.full((5,), -1)
    assert agent.state_value(obs, tasks).shape == (5,)
    assert agent.policy_distribution(obs, tasks).log_prob(
        torch.zeros(5, dtype=torch.int64)
    ).shape == (5,)
    assert agent.networks() is agent.nets
    assert {n.split(".")[0] for n, _ in agent.networks().named_parameters()} == {"actor", "critic"}


# --- seeding, state, errors ---------------------------------------------------------------


def test_same_seed_same_actions_and_the_global_stream_is_untouched() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a, b = make_agent(box_spec(), seed=4), make_agent(box_spec(), seed=4)
    obs = np.array([0.1, 0.2], np.float32)
    acts_a = [a.act(obs, 0, True) for _ in range(20)]
    assert torch.equal(torch.rand(3), expected)
    assert np.array_equal(acts_a, [b.act(obs, 0, True) for _ in range(20)])
    assert not np.array_equal(acts_a, [make_agent(box_spec(), seed=5).act(obs, 0, True)
                                       for _ in range(20)])  # fmt: skip


def save_and_load(source: PPOAgent, target: PPOAgent) -> None:
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))


@pytest.mark.parametrize("spec", [box_spec(), discrete_spec()], ids=["box", "discrete"])
def test_state_dict_round_trip_includes_the_open_rollout(spec: EnvSpec) -> None:
    """A restored agent finishes the rollout in progress exactly as the original does."""
    options = {"n_steps": 3, "n_epochs": 2, "num_minibatches": 2}
    source = make_agent(spec, seed=1, **options)
    obs = np.array([0.3, -0.1], np.float32)
    observed = source.act_batch(np.stack([obs, obs]), 0, True)
    for i, action in enumerate(observed):
        source.observe(Step(obs, action, float(i), obs + 1, False, i == 1, 0, 0, env_index=i))
    restored = make_agent(spec, seed=9, **options)
    save_and_load(source, restored)
    assert restored.num_envs == 2 and len(restored.rollout) == 2
    pairs = zip(restored.nets.parameters(), source.nets.parameters(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    for agent in (source, restored):  # the same four more transitions for both
        for _ in range(2):
            actions = agent.act_batch(np.stack([obs + 1, obs + 1]), 0, True)
            for i, action in enumerate(actions):
                agent.observe(Step(obs + 1, action, 1.0, obs + 2, True, False, 0, 0, i))
    mine, theirs = list(restored.batches(0)), list(source.batches(0))
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        assert all(
            torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True)
        )


def test_empty_rollout_round_trip() -> None:
    source, restored = make_agent(seed=1), make_agent(seed=2)
    save_and_load(source, restored)
    assert len(restored.rollout) == 0
    obs = np.zeros(2, np.float32)
    assert [restored.act(obs, 0, True) for _ in range(10)] == [
        source.act(obs, 0, True) for _ in range(10)
    ]


def test_refuses_a_replay() -> None:
    spec = discrete_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=10), spec)
    with pytest.raises(ConfigError, match="on-policy; set replay: null"):
        PPOAgent(PPOAgent.Config(), spec, AgentServices(replay=replay), 0)


@pytest.mark.parametrize(
    ("action_space", "message"),
    [
        (gym.spaces.Discrete(3, start=1), "Discrete action space from 0"),
        (gym.spaces.MultiBinary(3), "Discrete or a 1-D Box"),
        (gym.spaces.Box(-1, 1, (2, 2), np.float32), "Discrete or a 1-D Box"),
    ],
)
def test_refuses_unsupported_action_spaces(
    action_space: gym.spaces.Space[Any], message: str
) -> None:
    spec = EnvSpec(gym.spaces.Box(-1, 1, (2,), np.float32), action_space, 1, True)
    with pytest.raises(ConfigError, match=message):
        make_agent(spec)


def test_refuses_non_box_observations_and_multi_head_without_task_ids() -> None:
    with pytest.raises(ConfigError, match="Box observation space"):
        make_agent(EnvSpec(gym.spaces.Discrete(4), gym.spaces.Discrete(2), 1, True))
    with pytest.raises(ConfigError, match="task_aware"):
        make_agent(discrete_spec(num_tasks=2, task_aware=False), multi_head=True)


# --- learning -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 3])
def test_ppo_greedy_cartpole_score_rises_within_seconds(seed: int) -> None:
    torch.set_num_threads(1)
    tasks = cartpole_variants.tasks({"variants": ["base"], "max_episode_steps": 100})
    scenario = Scenario.sequence("tiny", tasks, steps_per_task=6000)
    agent = make_agent(scenario.env_spec(), seed=seed, lr=2.5e-3, n_steps=128)
    result = Runner(scenario, agent, [], EvalConfig(every=1500, episodes=5), seed, num_envs=4).run()
    curve = [r.score for r in result.records]
    assert len(curve) == 5
    assert curve[0] < 0.3, curve
    assert min(curve[-2:]) > 0.8, curve
