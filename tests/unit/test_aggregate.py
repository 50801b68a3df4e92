"""Cross-seed summaries: Continual World's bootstrap and rliable's robust aggregates."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from l2rl.aggregate import (
    Interval,
    aggregate_seeds,
    cw_forward_transfer_interval,
    cw_mean_interval,
    iqm_interval,
    performance_profiles,
    probability_of_improvement,
)
from l2rl.metrics import HEADLINE_METRICS

nan = math.nan


def test_cw_mean_interval_drops_undefined_seeds() -> None:
    assert cw_mean_interval([nan, 1.0, None, 3.0]) == Interval(2.0, 1.0, 3.0, 2)
    assert cw_mean_interval([0.25]) == Interval(0.25, 0.25, 0.25, 1)
    undefined = cw_mean_interval([nan, None])
    assert undefined.n == 0
    assert all(math.isnan(v) for v in undefined[:3])


def test_cw_mean_interval_on_known_sample() -> None:
    values = [0.12, 0.47, 0.33, 0.91, 0.05, 0.68, 0.29, 0.74, 0.56, 0.18]
    interval = cw_mean_interval(values)
    assert interval.estimate == pytest.approx(0.433, abs=1e-12)
    # Close to the normal interval mean +- 1.645 * s / sqrt(n) = (0.2915, 0.5745).
    assert interval.low == pytest.approx(0.2915, abs=0.02)
    assert interval.high == pytest.approx(0.5745, abs=0.02)
    assert cw_mean_interval(values) == interval  # seeded: the same every time


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    # 8 seeds: the middle half is 3, 4, 5, 6.
    interval = iqm_interval([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0])
    assert interval.estimate == pytest.approx(4.5)
    assert interval.low < 4.5 < interval.high
    assert interval.n == 8
    # An outlier moves the mean but not the IQM.
    assert iqm_interval([800.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0]).estimate == pytest.approx(4.5)
    assert iqm_interval([0.5]) == Interval(0.5, 0.5, 0.5, 1)
    assert iqm_interval([None, nan]).n == 0


def test_probability_of_improvement_counts_pairs_and_ties() -> None:
    # Pairs (x, y): (2, 2) tie 0.5, (2, 1) 1, (3, 2) 1, (3, 1) 1 -> 3.5 / 4
    x, y = np.array([[2.0], [3.0]]), np.array([[2.0], [1.0]])
    assert probability_of_improvement(x, y).estimate == pytest.approx(0.875)
    # Averaged over tasks: task 1 reversed gives 1 - 0.875.
    x2, y2 = np.array([[2.0, 2.0], [3.0, 1.0]]), np.array([[2.0, 2.0], [1.0, 3.0]])
    assert probability_of_improvement(x2, y2).estimate == pytest.approx(0.5)
    better = probability_of_improvement(np.ones((5, 2)), np.zeros((5, 2)))
    assert better == Interval(1.0, 1.0, 1.0, 5)


def test_performance_profiles_are_fractions_above_each_threshold() -> None:
    scores = {"m": np.array([[0.2, 0.8], [0.6, 1.0]])}
    profile = performance_profiles(scores, np.array([0.0, 0.5, 0.9, 1.0]))
    np.testing.assert_allclose(profile["m"], [1.0, 0.75, 0.25, 0.0])


def test_cw_forward_transfer_interval_is_a_ratio_of_seed_means() -> None:
    # Task 0: seed means 0.75 and 0.5 -> (0.75 - 0.5) / 0.5 = 0.5; the mean of the per-seed
    # ratios would be ((1.0 - 0.5) / 0.5 + (0.5 - 0.5) / 0.5) / 2 = 0.5 too, so use task 1:
    # seeds 0.9, 0.3 against references 0.2, 0.6 -> (0.6 - 0.4) / 0.6 = 1/3, whereas the
    # per-seed ratios (0.7 / 0.8 and -0.3 / 0.4) average to 0.0625.
    auc = [[1.0, 0.9], [0.5, 0.3]]
    reference = [[0.5, 0.2], [0.5, 0.6]]
    interval = cw_forward_transfer_interval(auc, reference)
    assert interval.estimate == pytest.approx((0.5 + 1 / 3) / 2)
    assert interval.n == 2
    assert interval.low <= interval.estimate <= interval.high


def test_cw_forward_transfer_interval_leaves_out_undefined_tasks_then_seeds() -> None:
    # Task 2 is undefined everywhere (never trained); seed 1 lacks task 1.
    auc = [[0.75, 0.75, None], [0.75, None, None], [0.75, 0.75, None]]
    reference = [[0.5, 0.5, None], [0.5, 0.5, None]]
    assert cw_forward_transfer_interval(auc, reference) == Interval(0.5, 0.5, 0.5, 2)
    assert cw_forward_transfer_interval([], reference).n == 0


def test_cw_forward_transfer_interval_is_undefined_where_a_reference_scores_one() -> None:
    # every reference seed at 1: the estimate divides by zero
    perfect = cw_forward_transfer_interval([[0.5], [0.7]], [[1.0], [1.0]])
    assert perfect.n == 0 and math.isnan(perfect.estimate)
    # one reference seed at 1: some resamples hold only that seed, so the interval is too
    some = cw_forward_transfer_interval([[0.5], [0.7]], [[1.0], [0.5]])
    assert some.n == 0 and math.isnan(some.low)


def test_aggregate_seeds_summarises_every_headline_key() -> None:
    per_seed = [
        {**dict.fromkeys(HEADLINE_METRICS, 1.0), "cw_forward_transfer": None},
        {**dict.fromkeys(HEADLINE_METRICS, 3.0), "cw_forward_transfer": None},
    ]
    result = aggregate_seeds(per_seed)
    assert list(result) == list(HEADLINE_METRICS)
    # Resamples of {1, 3} have means 1, 2 or 3; a 90% interval spans the extremes.
    assert result["cw_forgetting"] == {
        "mean": 2.0,
        "ci_low": 1.0,
        "ci_high": 3.0,
        "iqm": 2.0,
        "iqm_low": result["cw_forgetting"]["iqm_low"],
        "iqm_high": result["cw_forgetting"]["iqm_high"],
        "n": 2,
    }
    assert 1.0 <= result["cw_forgetting"]["iqm_low"] <= 2.0 <= result["cw_forgetting"]["iqm_high"]
    # Only IQM_KEYS get an IQM by default (rliable's bootstrap is slow).
    assert result["l2rl_forgetting"]["iqm"] is None
    assert result["l2rl_forgetting"]["mean"] == 2.0
    assert aggregate_seeds(per_seed, ["l2rl_forgetting"], iqm_keys=["l2rl_forgetting"])[
        "l2rl_forgetting"
    ]["iqm"] == pytest.approx(2.0)
    assert result["cw_forward_transfer"]["mean"] is None
    assert result["cw_forward_transfer"]["n"] == 0
    json.dumps(result, allow_nan=False)


def test_aggregate_seeds_missing_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="seed #1 has no metric 'cw_forgetting'"):
        aggregate_seeds([{"cw_forgetting": 1.0}, {}], ["cw_forgetting"])


def test_rliable_intervals_do_not_depend_on_numpys_global_generator() -> None:
    # rliable 1.2 resamples with np.random.choice whatever random_state says.
    values = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.4, 0.8, 0.6, 0.55]
    x, y = (
        np.array([[0.2, 0.4], [0.6, 0.1], [0.5, 0.5]]),
        np.array([[0.3, 0.2], [0.1, 0.6], [0.4, 0.4]]),
    )
    np.random.seed(1)
    first = iqm_interval(values), probability_of_improvement(x, y)
    np.random.seed(2)
    np.random.rand(17)
    state = np.random.get_state()
    assert (iqm_interval(values), probability_of_improvement(x, y)) == first
    # ... and they leave the caller's stream where it was.
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])
    assert np.random.get_state()[2] == state[2]
