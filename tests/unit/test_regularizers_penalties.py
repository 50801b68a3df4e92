"""L2, EWC, online EWC, the Fisher estimate and SI: penalties and gradients by hand;
and the flat parameter vectors they are computed on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from l2rl.components.regularizers.ewc import EWCPenalty, diagonal_fisher
from l2rl.components.regularizers.l2 import L2Penalty
from l2rl.components.regularizers.online_ewc import OnlineEWCPenalty
from l2rl.components.regularizers.params import (
    check_layout,
    flat_gradients,
    flat_parameters,
    flatten,
    layout_of,
    unflatten,
)
from l2rl.components.regularizers.si import SIPenalty


def linear(weight: list[float], bias: float) -> nn.Linear:
    """``nn.Linear(2, 1)`` in float64 with the given weights (exact hand arithmetic)."""
    layer = nn.Linear(2, 1).double()
    set_params(layer, weight, bias)
    return layer


def set_params(layer: nn.Linear, weight: list[float], bias: float) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight], dtype=torch.float64))
        layer.bias.fill_(bias)


def fisher(weight: list[float], bias: float) -> dict[str, torch.Tensor]:
    return {
        "weight": torch.tensor([weight], dtype=torch.float64),
        "bias": torch.tensor([bias], dtype=torch.float64),
    }


def grads(penalty: torch.Tensor, layer: nn.Linear) -> tuple[list[float], float]:
    layer.zero_grad()
    penalty.backward()  # type: ignore[no-untyped-call]
    assert layer.weight.grad is not None and layer.bias.grad is not None
    return layer.weight.grad[0].tolist(), float(layer.bias.grad[0])


# --- L2 ------------------------------------------------------------------------------------
def test_l2_penalty_and_gradient_by_hand() -> None:
    layer = linear([0.0, 0.0], 0.0)
    penalty = L2Penalty(strength=3.0)
    penalty.consolidate(layer)
    set_params(layer, [1.0, 2.0], 0.5)
    value = penalty(layer)
    # 3 * (1^2 + 2^2 + 0.5^2)
    assert value.item() == pytest.approx(15.75)
    # d/dtheta = 2 * 3 * (theta - theta*)
    assert grads(value, layer) == (pytest.approx([6.0, 12.0]), pytest.approx(3.0))


def test_l2_anchor_is_a_copy_and_needs_a_consolidation() -> None:
    layer = linear([1.0, 1.0], 1.0)
    penalty = L2Penalty(strength=1.0)
    with pytest.raises(RuntimeError, match="consolidate"):
        penalty(layer)
    penalty.consolidate(layer)
    set_params(layer, [2.0, 1.0], 1.0)  # moving the network must not move the anchor
    assert penalty(layer).item() == pytest.approx(1.0)


def test_l2_state_round_trip() -> None:
    layer = linear([1.0, -1.0], 0.0)
    penalty = L2Penalty(strength=2.0)
    penalty.consolidate(layer)
    restored = L2Penalty(strength=2.0)
    restored.load_state_dict(penalty.state_dict())
    set_params(layer, [0.0, 0.0], 1.0)
    assert restored(layer).item() == penalty(layer).item() == pytest.approx(2.0 * 3.0)


def test_a_penalty_refuses_a_network_with_other_parameters() -> None:
    penalty = L2Penalty(strength=1.0)
    penalty.consolidate(linear([0.0, 0.0], 0.0))
    with pytest.raises(KeyError, match="anchor"):
        penalty(nn.Linear(2, 1, bias=False).double())


# --- EWC -----------------------------------------------------------------------------------
def two_task_ewc(strength: float) -> tuple[EWCPenalty, nn.Linear]:
    """Task 0 ends at w=(0,0), b=0 with F=(1,0 | 2); task 1 at w=(1,1), b=1 with F=(.5,.5 | 0)."""
    layer = linear([0.0, 0.0], 0.0)
    penalty = EWCPenalty(strength, fisher_floor=1e-5)
    penalty.consolidate(0, layer, fisher([1.0, 0.0], 2.0))
    set_params(layer, [1.0, 1.0], 1.0)
    penalty.consolidate(1, layer, fisher([0.5, 0.5], 0.0))
    set_params(layer, [1.0, 2.0], 0.5)
    return penalty, layer


def test_ewc_sums_one_term_per_task_with_the_clipped_fisher() -> None:
    penalty, layer = two_task_ewc(strength=2.0)
    # Zero Fisher entries are clipped to 1e-5.
    # task 0: 1*(1-0)^2 + 1e-5*(2-0)^2 + 2*(0.5-0)^2 = 1.50004
    # task 1: .5*(1-1)^2 + .5*(2-1)^2 + 1e-5*(0.5-1)^2 = 0.5000025
    value = penalty(layer)
    assert value.item() == pytest.approx(2.0 / 2 * (1.50004 + 0.5000025), rel=1e-12)
    # d/dtheta = lambda * sum_t F_t (theta - theta*_t)
    weight, bias = grads(value, layer)
    assert weight == pytest.approx([2.0 * (1.0 + 0.0), 2.0 * (1e-5 * 2 + 0.5 * 1)], rel=1e-12)
    assert bias == pytest.approx(2.0 * (2 * 0.5 + 1e-5 * -0.5), rel=1e-12)


def test_ewc_revisited_task_replaces_its_own_term() -> None:
    penalty, layer = two_task_ewc(strength=2.0)
    penalty.consolidate(0, layer, fisher([1.0, 1.0], 1.0))  # task 0 again, at the current θ
    assert sorted(penalty.terms) == [0, 1]
    # Only task 1's term is left non-zero: 0.5000025.
    assert penalty(layer).item() == pytest.approx(0.5000025, rel=1e-12)


def test_ewc_state_round_trip() -> None:
    penalty, layer = two_task_ewc(strength=2.0)
    restored = EWCPenalty(2.0)
    restored.load_state_dict(penalty.state_dict())
    assert restored(layer).item() == penalty(layer).item()


# --- the Fisher ----------------------------------------------------------------------------
def categorical_policy(layer: nn.Linear):  # type: ignore[no-untyped-def]
    def policy(obs: torch.Tensor, task_ids: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=layer(obs))

    return policy


def test_fisher_of_a_uniform_softmax_policy_by_hand() -> None:
    # logits = W s with W = 0: pi = (1/2, 1/2) and d log pi(a|s)/dW = (e_a - pi) s^T, whose
    # square is (1/4) s^2 in every row whatever a is: the estimate is exact for any draw.
    layer = nn.Linear(2, 2, bias=False).double()
    nn.init.zeros_(layer.weight)
    obs = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    task_ids = torch.tensor([-1, -1])
    torch.manual_seed(0)
    estimate = diagonal_fisher(layer, categorical_policy(layer), obs, task_ids)
    expected = torch.tensor([[0.125, 0.625], [0.125, 0.625]], dtype=torch.float64)
    torch.testing.assert_close(estimate["weight"], expected)
    # Chunking the backward passes changes nothing.
    one_by_one = diagonal_fisher(layer, categorical_policy(layer), obs, task_ids, batch_size=1)
    torch.testing.assert_close(one_by_one["weight"], expected)


def test_fisher_averages_squared_gradients_at_actions_drawn_from_the_policy() -> None:
    # Non-uniform policy: with the draws a_i the estimate is mean_i ((e_{a_i} - pi) s^T)^2;
    # the same seed reproduces the draws, so the check is exact.
    layer = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))
    obs = torch.tensor([[0.5, 1.0]], dtype=torch.float64).repeat(200, 1)
    pi = torch.softmax(layer(obs[0]), 0).detach()
    torch.manual_seed(1)
    actions = torch.distributions.Categorical(probs=pi.expand(200, 2)).sample()
    per_action = [
        torch.outer(torch.eye(2, dtype=torch.float64)[a] - pi, obs[0]).pow(2) for a in (0, 1)
    ]
    share_of_1 = actions.double().mean()
    assert 0.0 < share_of_1 < 1.0  # both actions were drawn
    expected = (1 - share_of_1) * per_action[0] + share_of_1 * per_action[1]
    torch.manual_seed(1)
    estimate = diagonal_fisher(layer, categorical_policy(layer), obs, torch.full((200,), -1))
    torch.testing.assert_close(estimate["weight"], expected)


def test_fisher_is_per_sample_not_the_square_of_the_mean_gradient() -> None:
    # Two observations whose gradients cancel on average: the mean gradient is 0, the Fisher not.
    layer = nn.Linear(1, 2, bias=False).double()
    nn.init.zeros_(layer.weight)
    obs = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    estimate = diagonal_fisher(layer, categorical_policy(layer), obs, torch.tensor([-1, -1]))
    torch.testing.assert_close(estimate["weight"], torch.full((2, 1), 0.25, dtype=torch.float64))


# --- online EWC ----------------------------------------------------------------------------
def test_online_ewc_decays_the_running_fisher_and_moves_the_anchor() -> None:
    layer = linear([0.0, 0.0], 0.0)
    penalty = OnlineEWCPenalty(strength=2.0, gamma=0.5, fisher_floor=1e-5)
    penalty.consolidate(0, layer, fisher([1.0, 0.0], 2.0))
    set_params(layer, [1.0, 1.0], 1.0)
    penalty.consolidate(1, layer, fisher([0.5, 0.5], 0.0))
    saved = penalty.state_dict()  # the flat vectors, by parameter name
    # F* = 0.5 * (1, 1e-5 | 2) + (0.5, 0.5 | 1e-5)
    torch.testing.assert_close(saved["fisher"]["weight"], torch.tensor([[1.0, 0.500005]]).double())
    torch.testing.assert_close(saved["fisher"]["bias"], torch.tensor([1.00001]).double())
    torch.testing.assert_close(saved["anchor"]["weight"], torch.tensor([[1.0, 1.0]]).double())
    set_params(layer, [1.0, 2.0], 0.5)
    value = penalty(layer)
    # lambda/2 * (1*0^2 + 0.500005*1^2 + 1.00001*(-0.5)^2)
    assert value.item() == pytest.approx(0.500005 + 0.2500025, rel=1e-12)
    weight, bias = grads(value, layer)
    assert weight == pytest.approx([0.0, 2.0 * 0.500005], rel=1e-12)
    assert bias == pytest.approx(2.0 * 1.00001 * -0.5, rel=1e-12)


def test_online_ewc_with_gamma_one_sums_the_fishers_at_the_last_anchor() -> None:
    layer = linear([0.0, 0.0], 0.0)
    online = OnlineEWCPenalty(strength=1.0, gamma=1.0, fisher_floor=0.0)
    online.consolidate(0, layer, fisher([1.0, 2.0], 3.0))
    set_params(layer, [1.0, 1.0], 1.0)
    online.consolidate(1, layer, fisher([4.0, 5.0], 6.0))
    set_params(layer, [2.0, 0.0], -1.0)
    # 1/2 * (5 * (2-1)^2 + 7 * (0-1)^2 + 9 * (-1-1)^2)
    assert online(layer).item() == pytest.approx(0.5 * (5 + 7 + 36))


# --- SI ------------------------------------------------------------------------------------
def si_step(si: SIPenalty, layer: nn.Linear, grad: list[float], new_weight: list[float]) -> None:
    """One optimiser step as the hooks see it: .grad present, then the weights change."""
    layer.weight.grad = torch.tensor([grad], dtype=torch.float64)
    si.record_gradient(layer)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([new_weight], dtype=torch.float64))
    si.record_step(layer)


def test_si_accumulates_the_path_integral_over_two_steps_by_hand() -> None:
    layer = nn.Linear(2, 1, bias=False).double()
    nn.init.zeros_(layer.weight)
    si = SIPenalty(strength=2.0, damping=1e-3)
    si.begin(layer)
    si_step(si, layer, grad=[1.0, -2.0], new_weight=[-0.1, 0.2])  # w = -g*dθ = (0.1, 0.4)
    si_step(si, layer, grad=[0.5, -1.0], new_weight=[-0.15, 0.3])  # w += (0.025, 0.1)
    assert si.path is not None
    torch.testing.assert_close(si.path, torch.tensor([0.125, 0.5]).double())
    assert not si.active
    si.consolidate(layer)
    # Omega = w / (Delta^2 + xi), Delta = (-0.15, 0.3)
    omega = [0.125 / (0.0225 + 1e-3), 0.5 / (0.09 + 1e-3)]
    assert si.omega is not None and si.anchor is not None
    torch.testing.assert_close(si.omega, torch.tensor(omega).double())
    torch.testing.assert_close(si.anchor, torch.tensor([-0.15, 0.3]).double())
    torch.testing.assert_close(si.path, torch.zeros(2).double())  # the path restarts
    # penalty = c * sum Omega (theta - theta~)^2 at theta = theta~ + (0.1, -0.1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-0.05, 0.2]], dtype=torch.float64))
    value = si(layer)
    assert value.item() == pytest.approx(2.0 * (omega[0] * 0.01 + omega[1] * 0.01), rel=1e-12)
    layer.zero_grad()
    value.backward()  # type: ignore[no-untyped-call]
    assert layer.weight.grad is not None
    expected = [2 * 2.0 * omega[0] * 0.1, 2 * 2.0 * omega[1] * -0.1]
    assert layer.weight.grad[0].tolist() == pytest.approx(expected, rel=1e-12)


def test_si_omega_adds_up_over_tasks() -> None:
    layer = nn.Linear(1, 1, bias=False).double()
    nn.init.zeros_(layer.weight)
    si = SIPenalty(strength=1.0, damping=1e-3)
    si.begin(layer)
    layer.weight.grad = torch.tensor([[-1.0]], dtype=torch.float64)
    si.record_gradient(layer)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    si.record_step(layer)
    si.consolidate(layer)  # Omega = 1 / (1 + 1e-3)
    first = 1.0 / 1.001
    assert si.omega is not None
    assert float(si.omega) == pytest.approx(first)
    # Second task: the gradient read includes this penalty's share (zero here: theta = theta~).
    layer.weight.grad = torch.tensor([[-2.0]], dtype=torch.float64)
    si.record_gradient(layer)
    with torch.no_grad():
        layer.weight.fill_(1.5)
    si.record_step(layer)  # w = 2 * 0.5 = 1
    si.consolidate(layer)
    assert float(si.omega) == pytest.approx(first + 1.0 / (0.25 + 1e-3))


def test_si_reads_the_gradient_without_its_own_penalty() -> None:
    layer = nn.Linear(1, 1, bias=False).double()
    nn.init.zeros_(layer.weight)
    si = SIPenalty(strength=3.0, damping=1e-3)
    si.begin(layer)
    layer.weight.grad = torch.tensor([[-1.0]], dtype=torch.float64)
    si.record_gradient(layer)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    si.record_step(layer)
    si.consolidate(layer)  # anchor 1, Omega = 1/1.001
    omega = 1.0 / 1.001
    with torch.no_grad():
        layer.weight.fill_(1.2)
    # .grad = task gradient (-0.5) + the penalty's gradient 2 c Omega (theta - theta~)
    penalty_grad = 2 * 3.0 * omega * 0.2
    layer.weight.grad = torch.tensor([[-0.5 + penalty_grad]], dtype=torch.float64)
    si.record_gradient(layer)
    with torch.no_grad():
        layer.weight.fill_(1.4)
    si.record_step(layer)
    assert si.path is not None
    assert float(si.path) == pytest.approx(0.5 * 0.2)  # -g * dθ with g = -0.5


def test_si_state_round_trip_and_order_errors() -> None:
    layer = nn.Linear(1, 1, bias=False).double()
    si = SIPenalty(strength=1.0)
    with pytest.raises(RuntimeError, match="begin"):
        si.consolidate(layer)
    si.begin(layer)
    with pytest.raises(RuntimeError, match="record_gradient"):
        si.record_step(layer)
    si.consolidate(layer)
    restored = SIPenalty(strength=1.0)
    restored.load_state_dict(si.state_dict())
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert restored(layer).item() == si(layer).item()
    assert math.isfinite(si(layer).item())


# --- flat parameter vectors ----------------------------------------------------------------
def test_flat_vectors_follow_the_module_layout_and_map_back() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    layout = layout_of(net)
    assert layout == (
        ("0.weight", (3, 2)),
        ("0.bias", (3,)),
        ("1.weight", (1, 3)),
        ("1.bias", (1,)),
    )
    theta = flat_parameters(net)
    assert theta.shape == (13,) and theta.requires_grad
    named = unflatten(theta.detach(), layout)
    assert all(torch.equal(named[k], v.detach()) for k, v in net.named_parameters())
    torch.testing.assert_close(flatten(named, layout), theta.detach())
    net[1].weight.grad = torch.ones(1, 3)  # the other parameters have no .grad: zeros
    assert flat_gradients(net).tolist() == [0.0] * 9 + [1.0] * 3 + [0.0]
    with pytest.raises(KeyError, match="made for"):
        check_layout(nn.Linear(2, 3), layout, "the anchor")


def test_empirical_fisher_is_the_mean_squared_per_transition_gradient_by_hand() -> None:
    from l2rl.components.regularizers.ewc import empirical_fisher
    from l2rl.types import TransitionBatch

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
    obs = torch.tensor([[1.0, 0.0], [0.5, 1.0], [2.0, 1.0]])
    targets = torch.tensor([0.0, 1.0, -1.0])

    def loss(batch: TransitionBatch) -> torch.Tensor:
        return (model(batch.obs).squeeze(1) - batch.rewards).pow(2).sum()

    n = len(obs)
    rows = {
        "obs": obs,
        "actions": torch.zeros(n, dtype=torch.int64),
        "rewards": targets,
        "next_obs": obs,
        "terminated": torch.zeros(n, dtype=torch.bool),
        "task_ids": torch.zeros(n, dtype=torch.int64),
    }
    fisher = empirical_fisher(model, loss, rows)
    # d/dw (w.x - y)^2 = 2 (w.x - y) x: residuals 1, -2.5, 1 -> gradients (2, 0),
    # (-2.5, -5), (4, 2); mean of squares: ((4 + 6.25 + 16) / 3, (0 + 25 + 4) / 3).
    torch.testing.assert_close(fisher["weight"], torch.tensor([[26.25 / 3, 29.0 / 3]]))
