"""DQN: the double-DQN Huber loss by hand, target updates, epsilon schedule, heads, errors."""

from __future__ import annotations

import io
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.dqn import DQNAgent, linear_schedule
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import ConfigError
from l2rl.core import AgentServices
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch


def spec(
    obs_dim: int = 2, num_actions: int = 2, num_tasks: int = 1, task_aware: bool = True
) -> EnvSpec:
    return EnvSpec(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Discrete(num_actions),
        num_tasks=num_tasks,
        task_aware=task_aware,
    )


def make_agent(env_spec: EnvSpec | None = None, seed: int = 0, **options: Any) -> DQNAgent:
    env_spec = env_spec or spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=1000), env_spec)
    return DQNAgent(DQNAgent.Config(**options), env_spec, AgentServices(replay=replay), seed)


def set_linear(layer: torch.nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def batch(
    obs: list[list[float]],
    actions: list[int],
    rewards: list[float],
    next_obs: list[list[float]],
    terminated: list[bool],
    task_ids: list[int] | None = None,
) -> TransitionBatch:
    return TransitionBatch(
        obs=torch.tensor(obs),
        actions=torch.tensor(actions),
        rewards=torch.tensor(rewards),
        next_obs=torch.tensor(next_obs),
        terminated=torch.tensor(terminated),
        task_ids=torch.tensor(task_ids or [-1] * len(actions)),
    )


def step(obs: list[float], action: int = 0, task_id: int | None = 0) -> Step:
    o = np.array(obs, np.float32)
    return Step(o, action, 0.0, o, False, False, task_id, 0)


@pytest.fixture
def linear_agent() -> DQNAgent:
    """A linear Q (no hidden layer): online Q(s) = s, target Q'(s) = (2 s0, 3 s1)."""
    agent = make_agent(hidden_sizes=[], gamma=0.9)
    set_linear(agent.q.heads[0], [[1, 0], [0, 1]], [0, 0])
    set_linear(agent.target_q.heads[0], [[2, 0], [0, 3]], [0, 0])
    return agent


# Transition A: Q(obs)[1] = 2. At next_obs (2, 1.8) the online net picks action 0 (2 > 1.8);
# the target net values it 2*2 = 4 (a plain max would take 3*1.8 = 5.4).
# Target 0.5 + 0.9*4 = 4.1, error -2.1, Huber |d| - 0.5 = 1.6.
# Transition B: Q(obs)[0] = 0.5, terminated: target = reward 1.0, error -0.5, Huber
# 0.5 * 0.25 = 0.125. Mean: 0.8625.
A = dict(obs=[1.0, 2.0], action=1, reward=0.5, next_obs=[2.0, 1.8])
B = dict(obs=[0.5, 0.25], action=0, reward=1.0, next_obs=[1.0, 3.0])


def two_transitions(b_terminated: bool) -> TransitionBatch:
    return batch(
        obs=[A["obs"], B["obs"]],  # type: ignore[list-item]
        actions=[A["action"], B["action"]],  # type: ignore[list-item]
        rewards=[A["reward"], B["reward"]],  # type: ignore[list-item]
        next_obs=[A["next_obs"], B["next_obs"]],  # type: ignore[list-item]
        terminated=[False, b_terminated],
    )


def test_double_dqn_huber_loss_matches_hand_computation(linear_agent: DQNAgent) -> None:
    losses = linear_agent.losses(two_transitions(b_terminated=True))
    assert set(losses) == {"loss_td"}
    assert losses["loss_td"].item() == pytest.approx(0.8625, abs=1e-6)


def test_terminated_transitions_do_not_bootstrap(linear_agent: DQNAgent) -> None:
    terminated = linear_agent.losses(two_transitions(b_terminated=True))["loss_td"].item()
    # Not terminated, B bootstraps: online argmax at (1, 3) is action 1, target 3*3 = 9,
    # target 1 + 0.9*9 = 9.1, error -8.6, Huber 8.1; mean with A's 1.6 is 4.85.
    bootstrapped = linear_agent.losses(two_transitions(b_terminated=False))["loss_td"].item()
    assert bootstrapped == pytest.approx(4.85, abs=1e-5)
    # A terminated transition's loss ignores the target net entirely.
    set_linear(linear_agent.target_q.heads[0], [[50, 0], [0, 50]], [0, 0])
    only_b = batch([B["obs"]], [B["action"]], [B["reward"]], [B["next_obs"]], [True])  # type: ignore[list-item]
    assert linear_agent.losses(only_b)["loss_td"].item() == pytest.approx(0.125)
    assert terminated == pytest.approx(0.8625, abs=1e-6)


def test_loss_gradient_reaches_only_the_online_net(linear_agent: DQNAgent) -> None:
    linear_agent.losses(two_transitions(b_terminated=True))["loss_td"].backward()
    # d loss / d Q(s,a) = clip(error, -1, 1) / batch: -1/2 for A (action 1, obs (1, 2)),
    # -0.5/2 for B (action 0, obs (0.5, 0.25)). The weight gradient is that times obs.
    grad = linear_agent.q.heads[0].weight.grad
    assert grad is not None
    expected = torch.tensor([[-0.25 * 0.5, -0.25 * 0.25], [-0.5 * 1.0, -0.5 * 2.0]])
    assert torch.allclose(grad, expected)
    assert all(p.grad is None for p in linear_agent.target_q.parameters())


def test_hard_target_copy_every_n_optimiser_steps() -> None:
    agent = make_agent(target_update_every=3)
    with torch.no_grad():
        agent.q.heads[0].bias.add_(1.0)
    for _ in range(2):
        agent.after_optimizer_step()
    assert not torch.equal(agent.target_q.heads[0].bias, agent.q.heads[0].bias)
    agent.after_optimizer_step()
    for online, target in zip(agent.q.parameters(), agent.target_q.parameters(), strict=True):
        assert torch.equal(online, target)


def test_polyak_target_update() -> None:
    agent = make_agent(hidden_sizes=[], tau=0.25)
    set_linear(agent.q.heads[0], [[4, 0], [0, 4]], [8, 0])
    set_linear(agent.target_q.heads[0], [[0, 0], [0, 0]], [0, 4])
    agent.after_optimizer_step()
    assert agent.target_q.heads[0].weight.tolist() == [[1, 0], [0, 1]]
    assert agent.target_q.heads[0].bias.tolist() == [2, 3]


def test_linear_schedule_values() -> None:
    assert [linear_schedule(1.0, 0.1, 10, t) for t in (0, 5, 10, 20)] == pytest.approx(
        [1.0, 0.55, 0.1, 0.1]
    )


def test_epsilon_follows_observed_steps_and_restarts_at_task_start() -> None:
    agent = make_agent(epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=10)
    seen = []
    for _ in range(12):
        seen.append(agent.epsilon)
        agent.observe(step([0.0, 0.0]))
    assert seen[:3] == pytest.approx([1.0, 0.91, 0.82])
    assert seen[10:] == pytest.approx([0.1, 0.1])
    agent.on_task_start(TaskInfo(index=1, name="b", block=1, num_tasks=2))
    assert agent.epsilon == pytest.approx(1.0)


def test_exploring_actions_follow_epsilon() -> None:
    agent = make_agent(spec(num_actions=4), epsilon_start=0.0, epsilon_end=0.0)
    obs = np.array([0.3, -0.7], np.float32)
    greedy = agent.act(obs, 0, explore=False)
    assert {agent.act(obs, 0, explore=True) for _ in range(50)} == {greedy}
    random_agent = make_agent(spec(num_actions=4), epsilon_start=1.0, epsilon_end=1.0)
    counts = np.bincount([random_agent.act(obs, 0, explore=True) for _ in range(2000)], minlength=4)
    assert counts.min() > 400  # uniform: 500 each, sd ~19


def test_greedy_act_is_deterministic_and_is_the_argmax() -> None:
    agent = make_agent(spec(obs_dim=3, num_actions=5))
    obs = np.array([0.1, -2.0, 0.5], np.float32)
    actions = {agent.act(obs, 0, explore=False) for _ in range(20)}
    q = agent.q(torch.from_numpy(obs).unsqueeze(0))
    assert actions == {int(q.argmax())}


def test_same_seed_same_agent_different_seed_different() -> None:
    a, b, c = make_agent(seed=1), make_agent(seed=1), make_agent(seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.q.parameters(), b.q.parameters(), strict=True))
    assert not torch.equal(a.q.heads[0].weight, c.q.heads[0].weight)
    obs = np.zeros(2, np.float32)
    assert [a.act(obs, 0, True) for _ in range(30)] == [b.act(obs, 0, True) for _ in range(30)]


def test_initialisation_leaves_the_global_torch_stream_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_agent(seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_multi_head_loss_touches_only_the_heads_of_the_batch_tasks() -> None:
    agent = make_agent(spec(num_tasks=3), multi_head=True)
    assert len(agent.q.heads) == 3
    mixed = batch(
        obs=[[0.1, 0.2], [0.3, -0.4], [1.0, 0.5]],
        actions=[0, 1, 1],
        rewards=[1.0, -1.0, 0.5],
        next_obs=[[0.2, 0.2], [0.0, 0.1], [0.9, 0.4]],
        terminated=[False, True, False],
        task_ids=[0, 2, 0],
    )
    agent.losses(mixed)["loss_td"].backward()
    grads = [(h.weight.grad, h.bias.grad) for h in agent.q.heads]
    assert all(g is not None and g.abs().sum() > 0 for g in grads[0] + grads[2])
    assert all(g is not None and torch.all(g == 0) for g in grads[1])
    assert agent.q.torso[0].weight.grad.abs().sum() > 0  # the shared torso learns from all


def test_multi_head_refuses_rows_without_a_task() -> None:
    agent = make_agent(spec(num_tasks=2), multi_head=True)
    unknown = batch([[0.0, 0.0]], [0], [0.0], [[0.0, 0.0]], [True], task_ids=[-1])
    with pytest.raises(ValueError, match="head index"):
        agent.losses(unknown)


def test_multi_head_acts_with_the_head_of_the_given_task() -> None:
    agent = make_agent(spec(num_tasks=2), hidden_sizes=[], multi_head=True)
    set_linear(agent.q.heads[0], [[1, 0], [0, 0]], [0, 0])  # prefers action 0 on obs (1, 1)
    set_linear(agent.q.heads[1], [[0, 0], [0, 1]], [0, 0])  # prefers action 1
    obs = np.ones(2, np.float32)
    assert agent.act(obs, 0, explore=False) == 0
    assert agent.act(obs, 1, explore=False) == 1
    with pytest.raises(ValueError, match="task id"):
        agent.act(obs, None, explore=False)


def test_uint8_observations_are_scaled_to_unit_range() -> None:
    frames = EnvSpec(gym.spaces.Box(0, 255, (2, 2), np.uint8), gym.spaces.Discrete(2), 1, True)
    agent = make_agent(frames, hidden_sizes=[])
    set_linear(agent.q.heads[0], [[1, 1, 1, 1], [0, 0, 0, 0]], [0, 0.9])
    q = agent.q(torch.tensor([[[255, 0], [0, 0]]], dtype=torch.uint8))
    assert q[0].tolist() == pytest.approx([1.0, 0.9])


def test_batches_only_when_due_and_warm() -> None:
    agent = make_agent(learning_starts=5, train_every=2, gradient_steps=3, batch_size=7)
    for i in range(4):
        agent.replay.add(step([float(i), 0.0]))  # type: ignore[attr-defined]
    assert list(agent.batches(4)) == []  # 4 < learning_starts
    agent.replay.add(step([4.0, 0.0]))  # type: ignore[attr-defined]
    assert list(agent.batches(5)) == []  # not a multiple of train_every
    due = list(agent.batches(6))
    assert len(due) == 3 and all(len(b) == 7 for b in due)


def test_learns_exact_values_of_a_two_step_chain() -> None:
    """Tabular (one-hot, linear) Q on s0 -a0-> s1 -a1-> end (+1); s0 -a1-> end (+0.5).

    With gamma 0.9: Q(s1, a1) = 1, Q(s0, a0) = 0.9, Q(s0, a1) = 0.5.
    """
    agent = make_agent(hidden_sizes=[], gamma=0.9, lr=0.05, target_update_every=20)
    s0, s1, end = [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]
    data = batch(
        obs=[s0, s1, s0], actions=[0, 1, 1], rewards=[0.0, 1.0, 0.5],
        next_obs=[s1, end, end], terminated=[False, True, True],
    )  # fmt: skip
    for _ in range(1500):
        agent.optimizer.zero_grad()
        agent.losses(data)["loss_td"].backward()
        agent.optimizer.step()
        agent.after_optimizer_step()
    q = agent.q(torch.tensor([s0, s1]))
    assert q[0].tolist() == pytest.approx([0.9, 0.5], abs=0.02)
    assert q[1, 1].item() == pytest.approx(1.0, abs=0.02)
    assert agent.act(np.array(s0, np.float32), 0, explore=False) == 0


def test_state_dict_round_trip_restores_nets_schedule_and_exploration() -> None:
    source = make_agent(seed=3, epsilon_start=0.5, epsilon_end=0.5, target_update_every=1000)
    with torch.no_grad():
        source.q.heads[0].bias.add_(1.0)  # online and target now differ
    for _ in range(7):
        source.observe(step([0.0, 0.0]))
        source.after_optimizer_step()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    restored = make_agent(seed=99, epsilon_start=0.5, epsilon_end=0.5, target_update_every=1000)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for mine, theirs in ((restored.q, source.q), (restored.target_q, source.target_q)):
        assert all(
            torch.equal(x, y) for x, y in zip(mine.parameters(), theirs.parameters(), strict=True)
        )
    assert (restored.schedule_steps, restored.updates) == (7, 7)
    obs = np.array([0.2, 0.1], np.float32)
    assert [restored.act(obs, 0, True) for _ in range(30)] == [
        source.act(obs, 0, True) for _ in range(30)
    ]


def test_networks_is_the_online_q_net() -> None:
    agent = make_agent()
    assert agent.networks() is agent.q
    assert agent.max_grad_norm == 10.0


def test_refuses_a_missing_replay() -> None:
    with pytest.raises(ConfigError, match=r"replay component \(role replay\)"):
        DQNAgent(DQNAgent.Config(), spec(), AgentServices(replay=None), 0)


def test_refuses_continuous_actions() -> None:
    env_spec = EnvSpec(
        gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32), 1, True
    )
    with pytest.raises(ConfigError, match="Discrete action space"):
        make_agent(env_spec)


def test_refuses_non_box_observations() -> None:
    env_spec = EnvSpec(gym.spaces.Discrete(4), gym.spaces.Discrete(2), 1, True)
    with pytest.raises(ConfigError, match="Box observation space"):
        DQNAgent(DQNAgent.Config(), env_spec, AgentServices(replay=make_agent().replay), 0)


def test_refuses_multi_head_without_task_ids() -> None:
    with pytest.raises(ConfigError, match="task_aware"):
        make_agent(spec(num_tasks=3, task_aware=False), multi_head=True)


def test_speed_of_act_and_losses() -> None:
    """Measured, not asserted: prints per-call times (run with -s to see them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # DESIGN.md section 7: 2 threads make small-net timings noisy
    try:
        env_spec = spec(obs_dim=4)
        agent = make_agent(env_spec)
        obs = np.zeros(4, np.float32)
        for i in range(256):
            agent.replay.add(step([float(i)] * 4))  # type: ignore[attr-defined]
        start = time.perf_counter()
        for _ in range(2000):
            agent.act(obs, 0, explore=False)
        act_us = (time.perf_counter() - start) / 2000 * 1e6
        start = time.perf_counter()
        for _ in range(200):
            data = agent.replay.sample(128)
            agent.optimizer.zero_grad()
            agent.losses(data)["loss_td"].backward()
            agent.optimizer.step()
        update_us = (time.perf_counter() - start) / 200 * 1e6
    finally:
        torch.set_num_threads(threads)
    print(f"\nDQN greedy act {act_us:.1f} us; sample(128)+loss+backward+Adam {update_us:.0f} us")


def test_integer_frames_are_scaled_to_unit_range_by_their_own_bounds() -> None:
    import gymnasium as gym

    from l2rl.agents.networks import frame_scale

    assert frame_scale(gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)) == 1 / 255
    assert frame_scale(gym.spaces.Box(0, 1, (10, 10, 4), np.uint8)) == 1.0  # MinAtar
    assert frame_scale(gym.spaces.Box(-1.0, 1.0, (3,), np.float32)) == 1.0


def generated_agent(num_tasks: int = 2) -> tuple[DQNAgent, Any]:
    from l2rl.builder import services_from
    from l2rl.components.hypernetworks.hypercrl import HyperCRL

    env_spec = spec(num_tasks=num_tasks)
    replay = FIFOReplay(FIFOReplay.Config(capacity=1000), env_spec)
    hnet = HyperCRL(HyperCRL.Config(hidden=[8]), env_spec)
    replay.name, hnet.name = "fifo", "hypercrl"
    config = DQNAgent.Config(model="hypernetwork", hidden_sizes=[4])
    return DQNAgent(config, env_spec, services_from([replay, hnet]), seed=0), hnet


def test_generated_q_weights_train_the_hypernetwork_and_the_target_follows_the_task() -> None:
    agent, hnet = generated_agent()
    assert list(agent.networks().parameters()) == []
    ctx: Any = None
    agent.on_task_start(TaskInfo(0, "a", 0, 2))
    hnet.on_task_start(ctx, TaskInfo(0, "a", 0, 2))
    b = batch([[1.0, 0.0], [0.0, 1.0]], [0, 1], [1.0, 0.0], [[0.0, 1.0], [1.0, 0.0]], [False, True])
    agent.losses(b)["loss_td"].backward()
    assert all(p.grad is not None for p in hnet.network.theta.parameters())
    assert all(p.grad is None for p in agent.q.parameters())
    first = {n: w.clone() for n, w in agent.target_weights.items()}
    torch.testing.assert_close(first, {n: w.detach() for n, w in hnet.weights(0).items()})
    # A new task: the agent hears first, the hypernetwork switches after; the target network
    # takes the new task's generated weights at its first update.
    agent.on_task_start(TaskInfo(1, "b", 1, 2))
    hnet.on_task_start(ctx, TaskInfo(1, "b", 1, 2))
    agent.losses(b)
    second = {n: w.detach() for n, w in hnet.weights(1).items()}
    torch.testing.assert_close(agent.target_weights, second)
    assert any(not torch.equal(first[n], second[n]) for n in first)
    with pytest.raises(ConfigError, match="model=hypernetwork needs"):
        make_agent(model="hypernetwork")


def test_dqn_with_a_generated_q_network_conforms() -> None:
    from l2rl.components.hypernetworks.hypercrl import HyperCRL
    from l2rl.testing.conformance import check_agent

    def replay(env_spec: EnvSpec) -> Any:
        return FIFOReplay(FIFOReplay.Config(capacity=500), env_spec)

    def hnet(env_spec: EnvSpec) -> Any:
        return HyperCRL(HyperCRL.Config(hidden=[8]), env_spec)

    options = {"model": "hypernetwork", "learning_starts": 16, "batch_size": 8, "hidden_sizes": [8]}
    report = check_agent(DQNAgent, options, companions=[replay, hnet])
    assert "state_dict" in report.passed
