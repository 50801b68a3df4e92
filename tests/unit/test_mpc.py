"""The MPC agent: its checks before training, HyperCRL's loss, the input features and
statistics, the training schedule, generated models, conformance and a learned model."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.mpc import InputStats, MPCAgent
from l2rl.builder import services_from
from l2rl.components.hypernetworks.hypercrl import HyperCRL
from l2rl.components.replay.current_task import CurrentTaskReplay
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices, Component
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.scenarios.pendulum_gravity import pendulum_gravity, pendulum_reward
from l2rl.testing.conformance import check_agent
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch

BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTION = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def spec(reward_fns: tuple[Any, ...], task_aware: bool = True) -> EnvSpec:
    return EnvSpec(BOX, ACTION, len(reward_fns), task_aware, reward_fns=reward_fns)


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=2000, chunk_steps=10), env_spec)


def hypercrl(env_spec: EnvSpec) -> Component:
    return HyperCRL(HyperCRL.Config(hidden=[8]), env_spec)


SMALL = {
    "planner": "mppi",
    "hidden": [16],
    "batch_size": 8,
    "train_every": 16,
    "gradient_steps": 2,
    "random_steps": 8,
    "samples": 16,
    "horizon": 3,
}


def agent(env_spec: EnvSpec, components: list[Component] | None = None, **options: Any) -> MPCAgent:
    components = components if components is not None else [fifo(env_spec)]
    services = services_from(components)
    return MPCAgent(MPCAgent.Config(**(SMALL | options)), env_spec, services, seed=0)


def pendulum(steps: int, gravities: list[float], episode: int = 20) -> Scenario:
    tasks = pendulum_gravity.tasks(
        {
            "gravities": gravities,
            "max_episode_steps": episode,
            "return_low": [-320.0] * len(gravities),
            "return_high": [0.0] * len(gravities),
        },
        where="test",
    )
    return Scenario.sequence("pendulum", tasks, steps_per_task=steps)


def test_a_task_without_a_reward_function_is_an_error_before_training() -> None:
    with pytest.raises(ConfigError, match=r"tasks \[0\] have none"):
        agent(spec((None, pendulum_reward)))
    with pytest.raises(ConfigError, match="the scenario gives none"):
        agent(spec(()))
    other = lambda o, a, n: -a.pow(2).sum(-1)  # noqa: E731
    with pytest.raises(ConfigError, match="different reward functions"):
        agent(spec((pendulum_reward, other), task_aware=False))
    agent(spec((pendulum_reward, pendulum_reward), task_aware=False))  # one shared: fine


def test_other_bad_setups_fail_clearly() -> None:
    env_spec = spec((pendulum_reward,))
    with pytest.raises(ConfigError, match="needs a replay"):
        agent(env_spec, components=[])
    with pytest.raises(ConfigError, match="needs a component with role hypernetwork"):
        agent(env_spec, model="hypernetwork")
    with pytest.raises(ConfigError, match="angle_dims"):
        agent(env_spec, angle_dims=[3])
    discrete = EnvSpec(BOX, gym.spaces.Discrete(2), 1, True, reward_fns=(pendulum_reward,))
    with pytest.raises(ConfigError, match="1-D Box action"):
        agent(discrete)


def batch(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> TransitionBatch:
    n = obs.shape[0]
    return TransitionBatch(
        obs, actions, torch.zeros(n), next_obs, torch.zeros(n, dtype=torch.bool), torch.zeros(n)
    )


def test_the_loss_is_hypercrls_sum_over_the_batch_divided_by_the_state_size() -> None:
    mpc = agent(spec((pendulum_reward,)), normalize_inputs=False)
    torch.manual_seed(0)
    obs, actions, next_obs = torch.randn(5, 3), torch.randn(5, 1), torch.randn(5, 3)
    with torch.no_grad():
        pred = mpc.model(torch.cat([obs, actions], dim=1))
    expected = ((pred - (next_obs - obs)) ** 2).sum() / 3
    loss = mpc.losses(batch(obs, actions, next_obs))["loss_dynamics"]
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_a_multi_head_model_sends_each_row_through_its_tasks_head() -> None:
    env_spec = spec((pendulum_reward, pendulum_reward, pendulum_reward))
    mpc = agent(env_spec, multi_head=True, normalize_inputs=False)
    assert mpc.untrained_task_heads and len(mpc.model.heads) == 3
    obs, actions = torch.randn(4, 3), torch.randn(4, 1)
    tasks = torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        features = mpc.model.torso(torch.cat([obs, actions], dim=1))
        expected = torch.stack(
            [mpc.model.heads[int(t)](f) for t, f in zip(tasks, features, strict=True)]
        )
        torch.testing.assert_close(mpc.predict(obs, actions, tasks), expected)
        torch.testing.assert_close(mpc.predict(obs, actions, 1), mpc.model.heads[1](features))
    # The loss takes each replayed row through the head of the task it came from.
    b = TransitionBatch(
        obs, actions, torch.zeros(4), obs + 1, torch.zeros(4, dtype=torch.bool), tasks
    )
    loss = mpc.losses(b)["loss_dynamics"]
    assert float(loss.detach()) == pytest.approx(float(((expected - 1) ** 2).sum() / 3), rel=1e-5)
    with pytest.raises(ConfigError, match="multi_head needs task ids"):
        agent(spec((pendulum_reward,), task_aware=False), multi_head=True)


def test_angles_enter_the_model_as_cosine_and_sine() -> None:
    mpc = agent(spec((pendulum_reward,)), angle_dims=[1])
    x = mpc.features(torch.tensor([[0.5, np.pi / 2, -1.0]]), torch.tensor([[2.0]]))
    torch.testing.assert_close(x, torch.tensor([[0.5, -1.0, 0.0, 1.0, 2.0]]), atol=1e-6, rtol=0)


def test_input_statistics_are_each_tasks_mean_and_sample_std() -> None:
    stats = InputStats(2)
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 2)).astype(np.float32)
    data[:, 1] = 7.0  # a constant input: std 0 -> 1
    for row in data:
        stats.add(0, torch.as_tensor(row))
    stats.add(1, torch.tensor([100.0, 100.0]))
    stats.freeze(0)
    mean, std = stats.frozen[0]
    np.testing.assert_allclose(mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), [data[:, 0].std(ddof=1), 1.0], rtol=1e-4)
    x = torch.tensor([5.0, 7.0])
    torch.testing.assert_close(stats.normalize(0, x, 0), (x - mean) / std)
    # A task without frozen statistics uses the fallback's; none at all: unchanged.
    torch.testing.assert_close(stats.normalize(3, x, 0), (x - mean) / std)
    torch.testing.assert_close(stats.normalize(3, x, 4), x)


def step(i: int) -> Step:
    obs = np.full(3, 0.1 * i, np.float32)
    return Step(obs, np.zeros(1, np.float32), 0.0, obs, False, False, 0, i)


def test_training_rounds_follow_the_random_steps_then_every_train_every() -> None:
    env_spec = spec((pendulum_reward,))
    replay = fifo(env_spec)
    mpc = agent(env_spec, components=[replay])
    mpc.on_task_start(TaskInfo(0, "t", 0, 1))
    rounds = []
    for i in range(1, 60):
        s = step(i)
        replay.on_step(None, s)  # type: ignore[arg-type]
        mpc.observe(s)
        got = list(mpc.batches(i))
        if got:
            rounds.append((i, len(got)))
    # random_steps 8, then every 16: after 8, 24, 40, 56 steps, 2 minibatches each.
    assert rounds == [(8, 2), (24, 2), (40, 2), (56, 2)]
    mpc.on_task_start(TaskInfo(1, "u", 1, 2))  # a new window: random steps again
    assert mpc.window_steps == 0
    assert all(mpc.act(np.zeros(3, np.float32), 1, explore=True).shape == (1,) for _ in range(3))


def test_a_generated_model_trains_the_hypernetwork_and_owns_no_parameter() -> None:
    env_spec = spec((pendulum_reward,))
    generator = hypercrl(env_spec)
    generator.name = "hypercrl"
    mpc = agent(env_spec, components=[fifo(env_spec), generator], model="hypernetwork")
    assert list(mpc.networks().parameters()) == []
    assert isinstance(generator, HyperCRL) and generator.network is not None
    assert set(generator.network.target_shapes) == {n for n, _ in mpc.model.named_parameters()}
    obs, actions = torch.randn(4, 3), torch.randn(4, 1)
    mpc.losses(batch(obs, actions, obs + 0.1))["loss_dynamics"].backward()
    assert all(p.grad is not None for p in generator.network.theta.parameters())
    assert generator.embeddings[0].grad is not None
    assert all(p.grad is None for p in mpc.model.parameters())


def test_mpc_conforms_with_a_plain_and_a_generated_model() -> None:
    scenario = pendulum(48, [10.0, 12.0])
    check_agent(MPCAgent, SMALL, scenario=scenario, companions=[fifo])
    check_agent(
        MPCAgent, SMALL | {"model": "hypernetwork"}, scenario=scenario, companions=[fifo, hypercrl]
    )
    check_agent(
        MPCAgent, SMALL | {"planner": "cem", "elites": 4}, scenario=scenario, companions=[fifo]
    )
    check_agent(MPCAgent, SMALL | {"model": "ensemble"}, scenario=scenario, companions=[fifo])


def prediction_error(mpc: MPCAgent, replay: Any) -> tuple[float, float]:
    sample = replay.sample(256)
    with torch.no_grad():
        pred = mpc.predict(sample.obs, sample.actions, 0)
    delta = sample.next_obs - sample.obs
    return float((pred - delta).pow(2).mean()), float(delta.pow(2).mean())


@pytest.mark.parametrize("model", ["mlp", "ensemble", "hypernetwork"])
def test_the_learned_model_predicts_pendulum_state_changes(model: str) -> None:
    scenario = pendulum(600, [10.0], episode=200)
    env_spec = scenario.env_spec()
    replay = CurrentTaskReplay(CurrentTaskReplay.Config(capacity=2000), env_spec)
    replay.name = "current-task"
    components: list[Component] = [replay]
    options: dict[str, Any] = {"model": model, "random_steps": 600, "train_every": 200}
    options |= {"gradient_steps": 300, "batch_size": 32, "hidden": [32, 32]}
    options |= {"normalize_inputs": False}
    if model == "hypernetwork":
        generator = HyperCRL(HyperCRL.Config(lr=1e-3), env_spec)
        generator.name = "hypercrl"
        components.append(generator)
    services: AgentServices = services_from(components)
    mpc = MPCAgent(MPCAgent.Config(**(SMALL | options)), env_spec, services, seed=0)
    evaluation = EvalConfig(every=600, episodes=1, max_episode_steps=1)
    Runner(scenario, mpc, components, evaluation, seed=0).run()
    error, scale = prediction_error(mpc, replay)
    assert error < 0.05 * scale, (error, scale)


def test_ewc_with_the_empirical_fisher_and_si_protect_the_dynamics_model() -> None:
    from l2rl.components.regularizers.ewc import EWCRegularizer
    from l2rl.components.regularizers.si import SIRegularizer

    scenario = pendulum(48, [10.0, 12.0])
    env_spec = scenario.env_spec()
    for regularizer in (
        EWCRegularizer(EWCRegularizer.Config(fisher="empirical", fisher_samples=16), env_spec),
        SIRegularizer(SIRegularizer.Config(), env_spec),
    ):
        regularizer.name = "reg"
        replay = fifo(env_spec)
        replay.name = "fifo"
        components = [replay, regularizer]
        mpc = agent(env_spec, components=components, multi_head=True)
        Runner(scenario, mpc, components, EvalConfig(every=48, episodes=1), seed=0).run()
        assert regularizer.penalty.active
        if isinstance(regularizer, EWCRegularizer):
            # The first task's term: the second task's training moved the model off it.
            assert float(regularizer.penalty(mpc.networks()).detach()) > 0.0
        else:  # SI re-anchors at every task end; its importances are what it learned
            assert regularizer.penalty.omega is not None
            assert float(regularizer.penalty.omega.abs().sum()) > 0.0
