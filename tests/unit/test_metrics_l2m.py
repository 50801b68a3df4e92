"""L2M metrics (l2rl.metrics_l2m) on hand-built logs, every expected value worked out by hand
from the definitions in the module's docstrings (l2metrics 3.1.0's, preprocessing off)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from l2rl import metrics_l2m as l2m
from l2rl.metrics_l2m import TEST, TRAIN, Regime
from l2rl.types import EpisodeRecord, EvalRecord


def log(*blocks: tuple[str, str, Sequence[float]], subtypes: Sequence[str] = ()) -> list[Regime]:
    """Regimes from (type, task, values); a new block number whenever the type changes."""
    regimes, block, exp = [], 0, 0
    for n, (kind, task, values) in enumerate(blocks):
        if n and kind != blocks[n - 1][0]:
            block += 1
        subtype = subtypes[n] if subtypes else l2m.WAKE
        exps = tuple(range(exp, exp + len(values)))
        exp += len(values)
        regimes.append(Regime(block, kind, subtype, task, exps, tuple(float(v) for v in values)))
    return regimes


# Two tasks, a learned, then b, then a again; terminal performances (TP) in comments.
TWO_TASKS = log(
    (TEST, "a", [2, 4]),  # 0: TP 3
    (TEST, "b", [1]),  # 1: TP 1
    (TRAIN, "a", range(10)),  # 2: TP = mean(values[9:]) = 9
    (TEST, "a", [6]),  # 3: TP 6
    (TEST, "b", [2]),  # 4: TP 2
    (TRAIN, "b", [1, 2, 3, 4]),  # 5: TP = mean(values[3:]) = 4
    (TEST, "a", [3]),  # 6: TP 3
    (TEST, "b", [5]),  # 7: TP 5
    (TRAIN, "a", [4, 5, 6]),  # 8: TP = mean(values[2:]) = 6
    (TEST, "a", [5]),  # 9: TP 5
    (TEST, "b", [4]),  # 10: TP 4
)


def test_terminal_performance() -> None:
    assert [l2m.terminal_performance(r) for r in TWO_TASKS] == [3, 1, 9, 6, 2, 4, 3, 5, 6, 5, 4]
    # 20 learning values: the last 10% is the last 2
    (long,) = log((TRAIN, "a", range(20)))
    assert l2m.terminal_performance(long) == 18.5
    assert math.isnan(l2m.terminal_performance(Regime(0, TRAIN, "wake", "a", (), ())))


def test_performance_maintenance_against_the_last_post_learning_evaluation() -> None:
    # a: post-learning evaluations 3 and 9; 6 counts: TP(6) - TP(3) = 3 - 6.
    # b: post-learning evaluation 7; 10 counts: TP(10) - TP(7) = 4 - 5.
    assert l2m.maintenance_values(TWO_TASKS, "mrlep") == {6: -3.0, 10: -1.0}
    assert l2m.performance_maintenance(TWO_TASKS, "mrlep") == {"a": -3.0, "b": -1.0}
    # against the last learning regime before: TP(6) - TP(2) = 3 - 9, TP(10) - TP(5) = 4 - 4
    assert l2m.performance_maintenance(TWO_TASKS, "mrtlp") == {"a": -6.0, "b": 0.0}
    with pytest.raises(ValueError, match="mrlep"):
        l2m.maintenance_values(TWO_TASKS, "last")


def test_performance_maintenance_averages_every_later_evaluation() -> None:
    regimes = log(
        (TRAIN, "a", [10]),  # 0: TP 10
        (TEST, "a", [8]),  # 1: post-learning
        (TRAIN, "b", [0]),
        (TEST, "a", [6]),  # 3: 6 - 8
        (TRAIN, "b", [0]),
        (TEST, "a", [2]),  # 5: 2 - 8
    )
    assert l2m.performance_maintenance(regimes, "mrlep") == {"a": -4.0}
    assert l2m.performance_maintenance(regimes, "mrtlp") == {"a": -6.0}
    # no evaluation after the post-learning one: nothing to maintain
    assert l2m.performance_maintenance(regimes[:2], "mrlep") == {}


def test_transfer_ratio_and_contrast() -> None:
    # forward (a -> b): a's regime 2 lies between b's evaluations 1 and 4: TP 1 -> 2.
    # backward (a -> b): a's regime 8, after b is learned, between b's 7 and 10: 5 -> 4.
    # backward (b -> a): b's regime 5 between a's 3 and 6: 6 -> 3. b never precedes a.
    assert l2m.transfer_values(TWO_TASKS, "forward", "ratio") == {("a", "b"): (2.0,)}
    assert l2m.transfer_values(TWO_TASKS, "backward", "ratio") == {
        ("b", "a"): (0.5,),
        ("a", "b"): (0.8,),
    }
    forward = l2m.transfer_values(TWO_TASKS, "forward", "contrast")
    assert forward[("a", "b")] == pytest.approx((1 / 3,))
    backward = l2m.transfer_values(TWO_TASKS, "backward", "contrast")
    assert backward[("b", "a")] == pytest.approx((-3 / 9,))
    assert backward[("a", "b")] == pytest.approx((-1 / 9,))
    with pytest.raises(ValueError, match="unknown transfer"):
        l2m.transfer_values(TWO_TASKS, "sideways", "ratio")


def test_transfer_skips_a_zero_denominator() -> None:
    regimes = log((TEST, "b", [0]), (TRAIN, "a", [1]), (TEST, "b", [3]))
    assert l2m.transfer_values(regimes, "forward", "ratio") == {}  # TP(t1) = 0
    assert l2m.transfer_values(regimes, "forward", "contrast") == {("a", "b"): (1.0,)}
    zero = log((TEST, "b", [0]), (TRAIN, "a", [1]), (TEST, "b", [0]))
    assert l2m.transfer_values(zero, "forward", "contrast") == {}  # TP(t1) + TP(t2) = 0


def test_sleep_evaluations_replace_wake_ones() -> None:
    # With sleep regimes in the log, the wake evaluation (TP 100) is ignored.
    regimes = log(
        (TEST, "b", [2]),
        (TRAIN, "a", [1]),
        (TEST, "b", [100]),
        (TEST, "b", [4]),
        subtypes=["sleep", "wake", "wake", "sleep"],
    )
    assert l2m.transfer_values(regimes, "forward", "ratio") == {("a", "b"): (2.0,)}


def test_recovery_times_and_performance_recovery() -> None:
    regimes = log(
        (TRAIN, "a", range(10)),  # TP 9
        (TEST, "a", [0]),
        (TRAIN, "a", [5, 9, 9]),  # first >= 9 at index 1; TP 9
        (TEST, "a", [0]),
        (TRAIN, "a", [9, 1, 1]),  # first >= 9 at index 0; TP 1
        (TEST, "a", [0]),
        (TRAIN, "a", [0, 0]),  # none >= 1: length + 1 = 3
    )
    assert l2m.recovery_times(regimes) == {2: 1, 4: 0, 6: 3}
    # Theil-Sen slope of [1, 0, 3]: median of -1, 1, 3 = 1
    assert l2m.performance_recovery(regimes) == {"a": -1.0}
    # one recovery time in the run: not enough for any task
    assert l2m.performance_recovery(regimes[:3]) == {}


def test_theil_sen_slope_is_the_median_pairwise_slope() -> None:
    # slopes 2, 1/2, 5/3, -1, 3/2, 4: median (3/2 + 5/3) / 2
    assert l2m.theil_sen_slope([0, 2, 1, 5]) == pytest.approx((1.5 + 5 / 3) / 2)


def test_smoothing_is_l2metrics_flat_window() -> None:
    # fewer than 15 values: width int(0.2 n) < 3, unchanged
    assert np.array_equal(l2m.smoothed(np.arange(14.0)), np.arange(14.0))
    # 15 values, width 3: value i is the mean of x[i-2..i], reflected at the start
    # (x[-1] = x[1], x[-2] = x[2]): [mean(2,1,0), mean(1,0,1), mean(0,1,2), 2, 3, ..., 13]
    expected = [1.0, 2 / 3, *range(1, 14)]
    np.testing.assert_allclose(l2m.smoothed(np.arange(15.0)), expected, rtol=0, atol=1e-12)
    # 20 values, width 4: value i is the mean of x[i-2..i+1]; at the end x[20] = x[18]
    smooth = l2m.smoothed(np.arange(20.0))
    assert smooth.size == 20
    assert smooth[5] == pytest.approx(4.5)
    assert smooth[19] == pytest.approx((17 + 18 + 19 + 18) / 4)
    # the width stops at 100: value i is the mean of x[i-50..i+49]
    ramp = l2m.smoothed(np.arange(1000.0))
    assert ramp[500] == pytest.approx(499.5)


def test_saturation_is_the_first_maximum_of_the_smoothed_curve() -> None:
    value, experiences = l2m.saturation(np.arange(15.0))
    assert (value, experiences) == (pytest.approx(13.0), 14)
    assert l2m.saturation([1.0, 3.0, 3.0, 2.0]) == (3.0, 1)
    empty = l2m.saturation([])
    assert math.isnan(empty.value) and empty.experiences is None


def test_ste_relative_performance() -> None:
    # a's wake learning values: 0..9 then 4, 5, 6 (13 values, sum 60)
    experts = {"a": [[1.0] * 20, [2.0] * 5]}
    relative = l2m.ste_relative_performance(TWO_TASKS, experts)
    # first expert: 13 values each, 60 / 13; second: 5 values, (0+1+2+3+4) / 10
    assert relative == {"a": pytest.approx((60 / 13 + 1.0) / 2)}
    with pytest.raises(ValueError, match="empty"):
        l2m.ste_relative_performance(TWO_TASKS, {"a": [[]]})


def test_sample_efficiency() -> None:
    regimes = log((TRAIN, "a", range(15)))  # smoothed: saturation 13 at 14
    # expert 2 * (0..14): saturation 26 at 14: (13 / 26) * (14 / 14)
    assert l2m.sample_efficiency(regimes, {"a": [2.0 * np.arange(15)]}) == {"a": pytest.approx(0.5)}
    # saturating below 20% of the expert's: 0
    assert l2m.sample_efficiency(regimes, {"a": [100.0 * np.arange(15)]}) == {"a": 0.0}
    # an expert peaking at once is skipped: no value left
    skipped = l2m.sample_efficiency(regimes, {"a": [[5.0, 1.0, 1.0]]})
    assert math.isnan(skipped["a"])
    # a falling learning curve: 0
    falling = log((TRAIN, "a", [3.0, 4.0, 1.0, 0.0]))  # peaks at 1, line falls
    assert l2m.sample_efficiency(falling, {"a": [[0.0, 1.0, 2.0, 3.0]]}) == {"a": 0.0}
    # a curve peaking at its first experience has none
    assert l2m.sample_efficiency(log((TRAIN, "a", [5.0, 1.0])), {"a": [[0.0, 1.0]]}) == {}


def test_summary_means_over_tasks_and_flags_missing_experts() -> None:
    summary = l2m.summarize_l2m(TWO_TASKS)
    assert set(summary.lifetime) == set(l2m.L2M_METRICS)
    assert summary.lifetime["perf_maintenance_mrlep"] == -2.0
    assert summary.lifetime["perf_maintenance_mrtlp"] == -3.0
    assert summary.lifetime["forward_transfer_ratio"] == 2.0
    assert summary.lifetime["backward_transfer_ratio"] == pytest.approx(0.65)
    assert summary.lifetime["backward_transfer_contrast"] == pytest.approx(-2 / 9)
    assert math.isnan(summary.lifetime["perf_recovery"])  # a is relearned once only
    assert set(summary.not_applicable) == {"ste_rel_perf", "sample_efficiency"}
    assert math.isnan(summary.lifetime["ste_rel_perf"])
    with_experts = l2m.summarize_l2m(TWO_TASKS, {"a": [[1.0] * 13]})
    assert with_experts.lifetime["ste_rel_perf"] == pytest.approx(60 / 13)
    assert not with_experts.not_applicable


def record(block: int, task: int, name: str, returns: tuple[float, ...], end: bool) -> EvalRecord:
    mean = float(np.mean(returns)) if returns else 0.0
    return EvalRecord(
        10 * (block + 1), block, max(block, -1), task, name, mean, 0.5, 2, end, returns
    )


def test_run_regimes_builds_the_blocks_of_a_run() -> None:
    records = [
        record(-1, 0, "Base", (1.0, 2.0), True),
        record(-1, 1, "Long", (3.0, 4.0), True),
        record(0, 0, "Base", (9.0, 9.0), False),  # inside the window: left out
        record(0, 1, "Long", (5.0, 6.0), True),
        record(0, 0, "Base", (7.0, 8.0), True),
        record(1, 0, "Base", (), True),  # no per-episode returns: one experience, the mean
    ]
    episodes = [
        EpisodeRecord(0, 0, "Base", 7, 11.0),
        EpisodeRecord(0, 0, "Base", 3, 10.0),  # ended first
    ]
    regimes = l2m.run_regimes(records, episodes)
    assert regimes == [
        Regime(0, TEST, "wake", "base", (0, 1), (1.0, 2.0)),
        Regime(0, TEST, "wake", "long", (2, 3), (3.0, 4.0)),
        Regime(1, TRAIN, "wake", "base", (4, 5), (10.0, 11.0)),
        Regime(2, TEST, "wake", "base", (6, 7), (7.0, 8.0)),
        Regime(2, TEST, "wake", "long", (8, 9), (5.0, 6.0)),
        # window 1 finished no episode: no learning regime, only its closing evaluation
        Regime(4, TEST, "wake", "base", (10,), (0.0,)),
    ]
    with pytest.raises(ValueError, match="differ only in case"):
        l2m.run_regimes([*records, record(1, 2, "BASE", (1.0,), True)], [])
    # a window's round after its sleep joins the window's evaluation block, after the wake
    slept = l2m.run_regimes(records, episodes, [record(0, 1, "Long", (2.5,), True)])
    assert slept[:5] == regimes[:5]
    assert slept[5] == Regime(2, TEST, "sleep", "long", (10,), (2.5,))
    assert slept[6] == Regime(4, TEST, "wake", "base", (11,), (0.0,))
