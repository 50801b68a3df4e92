"""Behaviour cloning (CLEAR): KL and value terms by hand, stored policies, the component;
and the Boltzmann policy and value DQN exposes to it."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import (
    Categorical,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from l2rl.agents.dqn import DQNAgent
from l2rl.components.regularizers.behavior_cloning import (
    BehaviorCloning,
    clone_losses,
    distribution_like,
    distribution_parameters,
    policy_kl,
)
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.core import AgentServices, PolicyAgent, RunContext
from l2rl.logging.recorder import Recorder
from l2rl.testing import FakeAgent, fake_scenario
from l2rl.types import EnvSpec, Step, TaskInfo


# --- the losses ----------------------------------------------------------------------------
def test_categorical_kl_and_its_gradient_by_hand() -> None:
    old = {"logits": torch.log(torch.tensor([[0.5, 0.5]]))}
    logits = torch.log(torch.tensor([[0.25, 0.75]])).requires_grad_()
    kl = policy_kl(old, Categorical(logits=logits))
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
    kl.sum().backward()  # type: ignore[no-untyped-call]
    # d KL(p_old || softmax(z)) / dz = softmax(z) - p_old
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.25, 0.25]]))


def test_gaussian_kl_by_hand_summed_over_action_dimensions() -> None:
    old = {"loc": torch.zeros(1, 2), "scale": torch.ones(1, 2)}
    new = Independent(Normal(torch.ones(1, 2), torch.full((1, 2), 2.0)), 1)
    # per dimension: ln(2/1) + (1 + 1)/(2*4) - 1/2
    assert policy_kl(old, new).item() == pytest.approx(2 * (math.log(2) - 0.25), rel=1e-6)
    plain = Normal(torch.ones(1, 2), torch.full((1, 2), 2.0))
    assert policy_kl(old, plain).item() == pytest.approx(2 * (math.log(2) - 0.25), rel=1e-6)


def test_a_squashed_policy_compares_by_its_base_distribution() -> None:
    base = Independent(Normal(torch.zeros(3, 2), torch.ones(3, 2)), 1)
    squashed = TransformedDistribution(base, [TanhTransform()])
    params = distribution_parameters(squashed)
    assert set(params) == {"loc", "scale"}
    rebuilt = distribution_like(squashed, params)
    assert isinstance(rebuilt, Independent) and rebuilt.reinterpreted_batch_ndims == 1
    torch.testing.assert_close(policy_kl(params, squashed), torch.zeros(3))


def test_unsupported_distributions_are_refused() -> None:
    with pytest.raises(TypeError, match="Bernoulli"):
        distribution_parameters(torch.distributions.Bernoulli(probs=torch.tensor([0.5])))


def test_clone_losses_apply_clears_weights() -> None:
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    same = {"logits": torch.zeros(2, 3)}
    kl, value = clone_losses(
        Categorical(logits=torch.zeros(2, 3)), values, same, torch.zeros(2), 0.01, 0.005
    )
    assert kl.item() == pytest.approx(0.0, abs=1e-7)
    assert value.item() == pytest.approx(0.005 * (1 + 4) / 2)
    value.backward()  # type: ignore[no-untyped-call]
    assert values.grad is not None  # 0.005 * 2 (v - v_old) / 2
    torch.testing.assert_close(values.grad, torch.tensor([0.005, 0.01]))


# --- DQN's policy and value ----------------------------------------------------------------
def dqn(temperature: float = 1.0, **options: Any) -> DQNAgent:
    env_spec = EnvSpec(gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(2), 2, True)
    replay = FIFOReplay(FIFOReplay.Config(capacity=1000), env_spec)
    agent = DQNAgent(
        DQNAgent.Config(hidden_sizes=[], policy_temperature=temperature, **options),
        env_spec,
        AgentServices(replay=replay),
        seed=0,
    )
    for head in agent.q.heads:  # Q(s) = W s with W = [[1, 0], [0, 2]]
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
            head.bias.zero_()
    return agent


def test_dqn_exposes_a_boltzmann_policy_and_its_value() -> None:
    agent = dqn(temperature=0.5)
    assert isinstance(agent, PolicyAgent)
    obs, ids = torch.tensor([[1.0, 1.0]]), torch.tensor([-1])
    # Q = (1, 2); pi = softmax(Q / 0.5) = softmax(2, 4)
    p1 = 1 / (1 + math.exp(-2))
    torch.testing.assert_close(
        agent.policy_distribution(obs, ids).probs, torch.tensor([[1 - p1, p1]])
    )
    assert agent.state_value(obs, ids).item() == pytest.approx((1 - p1) * 1 + p1 * 2)


def test_dqn_value_tends_to_the_greedy_value_as_the_temperature_falls() -> None:
    obs, ids = torch.tensor([[1.0, 1.0]]), torch.tensor([-1])
    assert dqn(temperature=1e-3).state_value(obs, ids).item() == pytest.approx(2.0)
    assert dqn(temperature=1e3).state_value(obs, ids).item() == pytest.approx(1.5, abs=1e-3)


def test_dqn_policy_uses_each_rows_head_when_multi_head() -> None:
    agent = dqn(multi_head=True)
    with torch.no_grad():
        agent.q.heads[1].bias.copy_(torch.tensor([10.0, 0.0]))
    probs = agent.policy_distribution(torch.ones(2, 2), torch.tensor([0, 1])).probs
    assert probs[0, 1] > 0.5 > probs[1, 1]


# --- the component -------------------------------------------------------------------------
def run_context(agent: Any, task_aware: bool = True) -> RunContext:
    scenario = fake_scenario(num_tasks=2, task_aware=task_aware)
    return RunContext(agent, scenario.env_spec(), scenario.tasks, seed=0, logger=Recorder())


def fill_and_record(component: BehaviorCloning, ctx: RunContext, steps: int) -> None:
    task = TaskInfo(0, "fake-0", 0, 2, start_step=0, steps=steps)
    component.on_run_start(ctx)
    component.on_task_start(ctx, task)
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs = rng.uniform(-1, 1, 4).astype(np.float32)
        component.on_step(ctx, Step(obs, 0, 0.0, obs, False, False, 0, t + 1))
    component.on_task_end(ctx, task)


def fake_dqn() -> DQNAgent:
    env_spec = fake_scenario(num_tasks=2).env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=1000), env_spec)
    return DQNAgent(DQNAgent.Config(hidden_sizes=[8]), env_spec, AgentServices(replay), seed=0)


def test_component_records_the_final_policy_and_clones_it() -> None:
    agent = fake_dqn()
    ctx = run_context(agent)
    component = BehaviorCloning(BehaviorCloning.Config(batch_size=16), ctx.env_spec)
    component.name = "bc"
    assert component.losses(ctx, None) == {}  # nothing recorded yet
    fill_and_record(component, ctx, steps=50)
    rows = component.memory.rows
    assert len(component.memory) == 50 and component.memory.tasks == [0]
    ids = rows["task_ids"]
    assert ids.tolist() == [0] * 50
    with torch.no_grad():
        torch.testing.assert_close(
            rows["policy.logits"], agent.policy_distribution(rows["obs"], ids).logits
        )
        torch.testing.assert_close(rows["value"], agent.state_value(rows["obs"], ids))
    # Unchanged network: both terms are zero; after a change they are positive.
    losses = component.losses(ctx, None)
    assert set(losses) == {"loss_bc_kl", "loss_bc_value"}
    assert losses["loss_bc_kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert losses["loss_bc_value"].item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        agent.q.heads[0].bias.add_(torch.tensor([1.0, -1.0]))
    losses = component.losses(ctx, None)
    assert losses["loss_bc_kl"].item() > 0 and losses["loss_bc_value"].item() > 0
    (losses["loss_bc_kl"] + losses["loss_bc_value"]).backward()  # type: ignore[no-untyped-call]
    assert agent.q.heads[0].bias.grad is not None


class NoPolicyAgent(FakeAgent):
    """The kit's agent with its two PolicyAgent methods hidden."""

    policy_distribution = None  # type: ignore[assignment]
    state_value = None  # type: ignore[assignment]


def test_component_needs_a_policy_agent() -> None:
    scenario = fake_scenario(num_tasks=2)
    agent = NoPolicyAgent(FakeAgent.Config(), scenario.env_spec(), AgentServices(), seed=0)
    component = BehaviorCloning(BehaviorCloning.Config(), scenario.env_spec())
    with pytest.raises(TypeError, match="policy_distribution"):
        component.on_run_start(run_context(agent))


def test_component_warns_that_a_task_agnostic_run_adds_nothing() -> None:
    agent = fake_dqn()
    ctx = run_context(agent, task_aware=False)
    component = BehaviorCloning(BehaviorCloning.Config(), ctx.env_spec)
    with pytest.warns(UserWarning, match="task-agnostic"):
        component.on_run_start(ctx)
