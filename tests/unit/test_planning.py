"""CEM and MPPI planners: the optimum of quadratic costs, box clipping, batching, seeding."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from l2rl.planning import (
    CEMPlanner,
    CEMSettings,
    MPPIPlanner,
    MPPISettings,
    rollout_returns,
)
from l2rl.types import RewardFn

LOW, HIGH = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0])
TARGET = torch.tensor([0.3, -1.2])


def move(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """A point mass in 2-D that moves by its action."""
    return obs + action


def stay_at(target: torch.Tensor) -> RewardFn:
    def reward(obs: torch.Tensor, action: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        return -((nxt - target) ** 2).sum(-1)

    return reward


def test_rollout_returns_are_discounted_sums_from_one_start() -> None:
    actions = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])
    got = rollout_returns(torch.zeros(2), actions, move, stay_at(torch.zeros(2)), 0.5)
    # first: next states (1,0) then (2,0): -1 - 0.5 * 4; second: (0,0) then (0,2): 0 - 0.5 * 4
    assert got.tolist() == [-3.0, -2.0]


def test_cem_finds_the_optimum_of_a_quadratic_cost() -> None:
    """From the origin the best sequence jumps to the target at once and then stays."""
    planner = CEMPlanner(CEMSettings(horizon=3, samples=400, elites=40, iterations=10), LOW, HIGH)
    plan = planner.plan(torch.zeros(2), move, stay_at(TARGET), torch.Generator().manual_seed(0))
    assert plan.shape == (3, 2)
    assert torch.allclose(plan[0], TARGET, atol=0.05)
    assert torch.allclose(plan[1:], torch.zeros(2, 2), atol=0.05)


def test_cem_keeps_plans_inside_the_box_and_reaches_its_edge() -> None:
    """A target beyond the box: the best first action is the bound itself."""
    planner = CEMPlanner(CEMSettings(horizon=1, samples=200, elites=20), LOW, HIGH)
    plan = planner.plan(
        torch.zeros(2), move, stay_at(torch.tensor([5.0, 0.0])), torch.Generator().manual_seed(1)
    )
    assert bool(torch.all(plan <= HIGH)) and bool(torch.all(plan >= LOW))
    assert float(plan[0, 0]) == pytest.approx(1.0, abs=0.02)


def test_planning_calls_the_model_once_per_horizon_step_for_all_samples() -> None:
    calls: list[int] = []

    def counted(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        calls.append(obs.shape[0])
        return move(obs, action)

    settings = CEMSettings(horizon=5, samples=30, elites=3, iterations=2)
    CEMPlanner(settings, LOW, HIGH).plan(
        torch.zeros(2), counted, stay_at(TARGET), torch.Generator().manual_seed(0)
    )
    assert calls == [30] * 5 * 3  # two refits and the final round
    calls.clear()
    MPPIPlanner(MPPISettings(horizon=5, samples=30), LOW, HIGH).plan(
        torch.zeros(2), counted, stay_at(TARGET), torch.Generator().manual_seed(0)
    )
    assert calls == [30] * 5


def test_plans_are_deterministic_given_the_generator() -> None:
    planner = CEMPlanner(CEMSettings(horizon=3, samples=50, elites=5), LOW, HIGH)
    a, b = (
        planner.plan(torch.zeros(2), move, stay_at(TARGET), torch.Generator().manual_seed(7))
        for _ in range(2)
    )
    assert torch.equal(a, b)


def test_mppi_warm_start_converges_to_the_optimum_and_reset_forgets_it() -> None:
    """Repeated decisions from the same state refine the nominal sequence toward the
    optimum; the weights follow exp(-(S - min S) / lambda)."""
    planner = MPPIPlanner(MPPISettings(horizon=1, samples=200, temperature=0.05), LOW, HIGH)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        plan = planner.plan(torch.zeros(2), move, stay_at(TARGET), generator)
    assert torch.allclose(plan[0], TARGET, atol=0.05)
    assert torch.allclose(planner.nominal, plan)  # horizon 1: the shift repeats the last row
    planner.reset()
    assert torch.equal(planner.nominal, torch.zeros(1, 2))


def test_mppi_update_is_the_weighted_mean_of_the_perturbations() -> None:
    """With one sample the weight is 1 and the plan is that sample; a huge temperature
    averages the perturbations uniformly."""
    generator = torch.Generator().manual_seed(3)
    one = MPPIPlanner(MPPISettings(horizon=2, samples=1), LOW, HIGH)
    plan = one.plan(torch.zeros(2), move, stay_at(TARGET), generator)
    generator = torch.Generator().manual_seed(3)
    sample = torch.clamp(
        0.5 * (HIGH - LOW) / 2 * torch.randn((1, 2, 2), generator=generator), LOW, HIGH
    )[0]
    assert torch.allclose(plan, sample)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (lambda: CEMSettings(samples=10, elites=11), "exceed samples"),
        (lambda: CEMSettings(horizon=0), "positive"),
        (lambda: MPPISettings(temperature=0.0), "temperature > 0"),
    ],
)
def test_bad_settings_are_refused(settings: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings()


def test_an_unbounded_action_box_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        CEMPlanner(CEMSettings(), torch.tensor([-float("inf")]), torch.tensor([1.0]))
