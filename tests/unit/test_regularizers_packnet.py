"""PackNet: pruning rule and fraction, freezing through Adam, evaluation views, the component."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from l2rl.components.regularizers.packnet import PackNet, PackNetMasks
from l2rl.config import ConfigError
from l2rl.core import AgentServices, RunContext
from l2rl.logging.recorder import Recorder
from l2rl.testing import FakeAgent, fake_scenario
from l2rl.types import Step, TaskInfo


def layer_with(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


WEIGHT = [[0.1, -0.8, 0.3, -0.05], [0.6, -0.2, 0.7, 0.4]]


def test_equal_share_fraction_gives_every_task_one_nth() -> None:
    masks = PackNetMasks(num_tasks=4)
    assert [masks.fraction_for(t) for t in range(4)] == [3 / 4, 2 / 3, 1 / 2, 0.0]
    assert PackNetMasks(num_tasks=4, prune_fraction=0.5).fraction_for(3) == 0.5


def test_prune_removes_the_smallest_magnitudes_and_hands_them_on() -> None:
    layer = layer_with(WEIGHT, [1.0, 2.0])
    masks = PackNetMasks(num_tasks=2)
    masks.bind(layer)
    assert set(masks.owner) == {"weight"}  # biases are never pruned
    masks.start_task(0, layer)
    assert masks.prune(layer) == {"weight": 4}  # floor(8 * 1/2)
    # The four smallest |w| (0.05, 0.1, 0.2, 0.3) are zeroed and owned by task 1.
    expected = torch.tensor([[0.0, -0.8, 0.0, 0.0], [0.6, 0.0, 0.7, 0.4]])
    torch.testing.assert_close(layer.weight.detach(), expected)
    assert masks.owner["weight"].tolist() == [[1, 0, 1, 1], [0, 1, 0, 0]]
    torch.testing.assert_close(layer.bias.detach(), torch.tensor([1.0, 2.0]))


def test_three_tasks_end_with_a_third_of_the_layer_each() -> None:
    layer = nn.Linear(10, 10)
    masks = PackNetMasks(num_tasks=3)
    masks.bind(layer)
    for position in range(3):
        masks.start_task(position, layer)
        masks.prune(layer)
    counts = [int((masks.owner["weight"] == t).sum()) for t in range(3)]
    assert counts == [34, 33, 33]  # 100 - floor(100*2/3); 66 - floor(66/2); the rest
    assert masks.owned_fraction(0) == {"weight": pytest.approx(0.34)}


def adam_steps(layer: nn.Linear, masks: PackNetMasks | None, steps: int) -> None:
    """Adam steps on a loss that pulls every parameter; optionally PackNet's two hooks."""
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        (layer.weight.sum() + layer.bias.sum()).backward()  # type: ignore[no-untyped-call]
        if masks is not None:
            masks.mask_gradients_(layer)
        optimizer.step()
        if masks is not None:
            masks.restore_frozen_(layer)


def test_old_tasks_weights_survive_adam_steps_of_the_next_task() -> None:
    layer = layer_with(WEIGHT, [1.0, 2.0])
    masks = PackNetMasks(num_tasks=2)
    masks.bind(layer)
    masks.start_task(0, layer)
    masks.prune(layer)
    pruned = masks.owner["weight"] == 1
    before = layer.weight.detach().clone()
    # Retraining within task 0: its kept weights move, the pruned stay at zero.
    adam_steps(layer, masks, steps=3)
    assert torch.all(layer.weight[pruned] == 0.0)
    assert torch.all(layer.weight[~pruned] != before[~pruned])
    # Task 1: task 0's weights and the biases are frozen, task 1's (the pruned) train.
    masks.start_task(1, layer)
    task0, bias0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    adam_steps(layer, masks, steps=3)
    torch.testing.assert_close(layer.weight[~pruned], task0[~pruned], rtol=0, atol=0)
    torch.testing.assert_close(layer.bias.detach(), bias0, rtol=0, atol=0)
    assert torch.all(layer.weight[pruned] != 0.0)


def test_zeroed_gradients_alone_would_let_adam_momentum_move_frozen_weights() -> None:
    # Why restore_frozen_ exists: one optimiser across both tasks keeps momentum.
    layer = layer_with(WEIGHT, [1.0, 2.0])
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    optimizer.zero_grad()
    layer.weight.sum().backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    frozen = layer.weight.detach().clone()
    optimizer.zero_grad()
    layer.weight.sum().backward()  # type: ignore[no-untyped-call]
    assert layer.weight.grad is not None
    layer.weight.grad.zero_()  # PackNet's gradient mask, without the restore
    optimizer.step()
    assert torch.all(layer.weight.detach() != frozen)


def test_evaluation_view_keeps_only_earlier_tasks_weights_and_restores() -> None:
    layer = layer_with(WEIGHT, [1.0, 2.0])
    masks = PackNetMasks(num_tasks=2)
    masks.bind(layer)
    masks.start_task(0, layer)
    masks.prune(layer)
    masks.start_task(1, layer)
    with torch.no_grad():  # task 1 learns its weights
        layer.weight.add_(torch.where(masks.owner["weight"] == 1, 5.0, 0.0))
    training = layer.weight.detach().clone()
    masks.apply_view_(layer, 0)
    torch.testing.assert_close(
        layer.weight.detach(), torch.where(masks.owner["weight"] == 0, training, 0.0)
    )
    with pytest.raises(RuntimeError, match="already applied"):
        masks.apply_view_(layer, 0)
    masks.restore_view_(layer)
    torch.testing.assert_close(layer.weight.detach(), training, rtol=0, atol=0)
    masks.apply_view_(layer, 1)  # the last task sees everything
    torch.testing.assert_close(layer.weight.detach(), training, rtol=0, atol=0)
    masks.restore_view_(layer)


def test_excluded_parameters_are_left_alone() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    masks = PackNetMasks(num_tasks=2, exclude=["1."])
    masks.bind(net)
    assert set(masks.owner) == {"0.weight"}
    assert set(masks.managed(net)) == {"0.weight", "0.bias"}


def test_state_round_trip() -> None:
    layer = layer_with(WEIGHT, [1.0, 2.0])
    masks = PackNetMasks(num_tasks=2)
    masks.bind(layer)
    masks.start_task(0, layer)
    masks.prune(layer)
    restored = PackNetMasks(num_tasks=2)
    restored.load_state_dict(masks.state_dict())
    assert restored.position == 0
    assert torch.equal(restored.owner["weight"], masks.owner["weight"])
    assert torch.equal(restored.frozen["weight"], masks.frozen["weight"])


# --- the component -------------------------------------------------------------------------
def context(task_aware: bool = True) -> tuple[FakeAgent, RunContext]:
    scenario = fake_scenario(num_tasks=2, task_aware=task_aware)
    env_spec = scenario.env_spec()
    agent = FakeAgent(FakeAgent.Config(), env_spec, AgentServices(), seed=0)
    return agent, RunContext(agent, env_spec, scenario.tasks, seed=0, logger=Recorder())


def env_step(global_step: int) -> Step:
    obs = np.zeros(4, dtype=np.float32)
    return Step(obs, 0, 0.0, obs, False, False, 0, global_step)


def test_component_prunes_at_the_configured_fraction_of_the_window() -> None:
    agent, ctx = context()
    component = PackNet(PackNet.Config(prune_at=0.8), ctx.env_spec)
    component.on_run_start(ctx)
    # The second window: 100 steps from global step 100; pruning is due at step 180.
    component.on_task_start(ctx, TaskInfo(0, "fake-0", 1, 2, start_step=100, steps=100))
    assert component.prune_step == 180
    before = agent.q.weight.detach().clone()
    for step in (150, 179):
        ctx.global_step = step
        component.on_step(ctx, env_step(step))
    assert not component.pruned and torch.equal(agent.q.weight.detach(), before)
    ctx.global_step = 180
    component.on_step(ctx, env_step(180))
    assert component.pruned
    assert int((agent.q.weight == 0).sum()) == 4  # floor(8 * 1/2) of the 2x4 weights


def test_component_prunes_at_task_end_if_the_window_never_reached_it() -> None:
    agent, ctx = context()
    component = PackNet(PackNet.Config(), ctx.env_spec)
    component.on_run_start(ctx)
    task = TaskInfo(0, "fake-0", 0, 2, start_step=0, steps=10)
    component.on_task_start(ctx, task)
    component.on_task_end(ctx, task)
    assert component.pruned and int((agent.q.weight == 0).sum()) == 4


def test_component_views_trained_tasks_only() -> None:
    agent, ctx = context()
    component = PackNet(PackNet.Config(), ctx.env_spec)
    component.on_run_start(ctx)
    first = TaskInfo(0, "fake-0", 0, 2, start_step=0, steps=10)
    component.on_task_start(ctx, first)
    component.on_task_end(ctx, first)
    component.on_task_start(ctx, TaskInfo(1, "fake-1", 1, 2, start_step=10, steps=10))
    with torch.no_grad():
        agent.q.weight.fill_(1.0)
    component.on_eval_task_start(ctx, TaskInfo(0, "fake-0", 1, 2))
    assert int((agent.q.weight == 0).sum()) == 4  # task 1's half hidden
    component.on_eval_task_end(ctx, TaskInfo(0, "fake-0", 1, 2))
    assert torch.all(agent.q.weight == 1.0)


def test_component_needs_task_ids_and_trains_each_task_once() -> None:
    _, ctx = context(task_aware=False)
    with pytest.raises(ConfigError, match="task_aware"):
        PackNet(PackNet.Config(), ctx.env_spec)
    _, ctx = context()
    component = PackNet(PackNet.Config(), ctx.env_spec)
    component.on_run_start(ctx)
    task = TaskInfo(0, "fake-0", 0, 2, start_step=0, steps=10)
    component.on_task_start(ctx, task)
    component.on_task_end(ctx, task)
    with pytest.raises(ValueError, match="once"):
        component.on_task_start(ctx, TaskInfo(0, "fake-0", 2, 2, start_step=20, steps=10))


def test_only_layer_weights_are_pruned_other_parameters_belong_to_the_first_task() -> None:
    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(3, 2)
            self.log_std = nn.Parameter(torch.zeros(2, 2))  # 2-D, yet not a layer weight

    net = Policy()
    masks = PackNetMasks(num_tasks=2)
    masks.bind(net)
    assert set(masks.owner) == {"body.weight"}
    masks.start_task(1, net)
    assert not masks.trainable("log_std", net.log_std).any()
