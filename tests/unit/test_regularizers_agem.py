"""A-GEM: the projection by hand, and the component's memory and reference gradient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from l2rl.components.regularizers.agem import AGEM, project_gradient
from l2rl.core import AgentServices, RunContext
from l2rl.logging.recorder import Recorder
from l2rl.testing import FakeAgent, fake_scenario
from l2rl.types import Losses, Step, TaskInfo


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))


def test_a_conflicting_gradient_is_projected_onto_the_reference_normal_plane() -> None:
    g, ref = [torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])]
    projected, changed = project_gradient(g, ref)
    # g . ref = -1, |ref|^2 = 2: g - (-1/2) ref = (0.5, 0.5)
    assert changed
    torch.testing.assert_close(projected[0], torch.tensor([0.5, 0.5]))
    assert dot(projected, ref) == pytest.approx(0.0)


def test_the_dot_product_runs_over_all_parameters_together() -> None:
    g = [torch.tensor([1.0]), torch.tensor([2.0, 0.0])]
    ref = [torch.tensor([-3.0]), torch.tensor([1.0, 1.0])]
    # g . ref = -3 + 2 = -1 over both tensors (each alone would disagree); |ref|^2 = 11
    projected, changed = project_gradient(g, ref)
    assert changed
    torch.testing.assert_close(projected[0], torch.tensor([1.0 - 3.0 / 11]))
    torch.testing.assert_close(projected[1], torch.tensor([2.0 + 1.0 / 11, 1.0 / 11]))
    assert dot(projected, ref) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("g", [[1.0, 1.0], [0.0, 5.0]])
def test_a_gradient_that_agrees_or_is_orthogonal_is_unchanged(g: list[float]) -> None:
    grads = [torch.tensor(g)]
    projected, changed = project_gradient(grads, [torch.tensor([1.0, 0.0])])
    assert not changed and projected[0] is grads[0]


def linear_agent() -> tuple[FakeAgent, RunContext]:
    """A FakeAgent (q = W s + b, loss (q(s)[a] - r)^2) with W = 0, b = 0."""
    scenario = fake_scenario(num_tasks=2)
    env_spec = scenario.env_spec()
    agent = FakeAgent(FakeAgent.Config(), env_spec, AgentServices(), seed=0)
    with torch.no_grad():
        agent.q.weight.zero_()
        agent.q.bias.zero_()
    return agent, RunContext(agent, env_spec, scenario.tasks, seed=0, logger=Recorder())


def remember_one_transition(component: AGEM, ctx: RunContext) -> None:
    """Task 0 sees one transition: s = e_0, a = 1, r = 1; it becomes the memory."""
    task = TaskInfo(0, "fake-0", 0, 2, start_step=0, steps=1)
    component.on_run_start(ctx)
    component.on_task_start(ctx, task)
    obs = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    component.on_step(ctx, Step(obs, 1, 1.0, obs, False, False, 0, 1))
    component.on_task_end(ctx, task)


def test_the_component_projects_against_the_agents_own_loss_on_memory() -> None:
    agent, ctx = linear_agent()
    component = AGEM(AGEM.Config(memory_per_task=1, batch_size=1), ctx.env_spec)
    component.name = "agem"
    remember_one_transition(component, ctx)
    assert len(component.memory) == 1
    # On the memory: q = 0, so d loss/dW[1] = 2 (q - r) s = (-2, 0, 0, 0), d loss/db[1] = -2.
    weight_grad = torch.zeros(2, 4)
    weight_grad[1, 0], weight_grad[0, 1] = 1.0, 3.0
    agent.q.weight.grad = weight_grad
    agent.q.bias.grad = torch.zeros(2)
    component.after_backward(ctx)
    # g . g_ref = -2, |g_ref|^2 = 8: g + (1/4) g_ref
    expected_weight = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(agent.q.weight.grad, expected_weight)
    torch.testing.assert_close(agent.q.bias.grad, torch.tensor([0.0, -0.5]))
    assert (component.checked, component.projected) == (1, 1)


def test_an_agreeing_gradient_is_left_untouched() -> None:
    agent, ctx = linear_agent()
    component = AGEM(AGEM.Config(memory_per_task=1, batch_size=1), ctx.env_spec)
    remember_one_transition(component, ctx)
    weight_grad = torch.zeros(2, 4)
    weight_grad[1, 0] = -1.0  # same direction as the memory's descent direction
    agent.q.weight.grad = weight_grad.clone()
    agent.q.bias.grad = None  # a parameter without gradient counts as zero
    component.after_backward(ctx)
    torch.testing.assert_close(agent.q.weight.grad, weight_grad)
    assert agent.q.bias.grad is None
    assert (component.checked, component.projected) == (1, 0)


def test_nothing_is_checked_before_a_task_has_ended() -> None:
    agent, ctx = linear_agent()
    component = AGEM(AGEM.Config(), ctx.env_spec)
    component.on_run_start(ctx)
    agent.q.weight.grad = torch.ones(2, 4)
    component.after_backward(ctx)
    torch.testing.assert_close(agent.q.weight.grad, torch.ones(2, 4))
    assert component.checked == 0


class RolloutAgent(FakeAgent):
    """An agent whose loss needs rollout statistics a stored transition does not have."""

    def losses(self, batch: Any) -> Losses:
        return {"loss_pg": (batch.log_probs * batch.advantages).mean()}


def test_an_agent_whose_loss_cannot_take_transitions_gets_a_clear_error() -> None:
    _, ctx = linear_agent()
    ctx.agent = RolloutAgent(FakeAgent.Config(), ctx.env_spec, AgentServices(), seed=0)
    component = AGEM(AGEM.Config(memory_per_task=1, batch_size=1), ctx.env_spec)
    remember_one_transition(component, ctx)
    with pytest.raises(TypeError, match="cannot take a TransitionBatch"):
        component.after_backward(ctx)


@dataclass(frozen=True)
class RolloutBatch:
    """A batch type that is not a TransitionBatch."""

    log_probs: torch.Tensor


class DeclaredRolloutAgent(FakeAgent):
    """An agent whose loss declares a rollout batch: refused before training starts."""

    def losses(self, batch: RolloutBatch) -> Losses:  # type: ignore[override]
        return {"loss_pg": batch.log_probs.mean()}


def test_an_agent_declaring_another_batch_type_is_refused_at_run_start() -> None:
    _, ctx = linear_agent()
    ctx.agent = DeclaredRolloutAgent(FakeAgent.Config(), ctx.env_spec, AgentServices(), seed=0)
    component = AGEM(AGEM.Config(), ctx.env_spec)
    with pytest.raises(TypeError, match="it takes RolloutBatch"):
        component.on_run_start(ctx)
