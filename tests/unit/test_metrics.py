"""Metrics on hand-built evaluation records, checked against hand-computed values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from l2rl.metrics import (
    HEADLINE_METRICS,
    aggregate_seeds,
    average_performance,
    backward_transfer,
    bootstrap_ci,
    cora_isolated_forgetting,
    cora_zero_shot_transfer,
    final_scores,
    first_window_auc,
    forgetting,
    forward_transfer,
    performance_matrix,
    reference_auc,
    summarize_run,
)
from l2rl.types import EvalRecord

# A metric that took a mean over nothing would warn; the module promises it never does.
pytestmark = pytest.mark.filterwarnings("error")

nan = math.nan


def make_records(
    schedule: Sequence[int],
    steps: Sequence[int],
    scores: Sequence[Sequence[float]],
    block_length: int,
) -> list[EvalRecord]:
    """Records for every task at every step; ``scores[task][i]`` is the score at ``steps[i]``.

    Step 0 is the pre-training evaluation; a step that is a multiple of ``block_length``
    closes the block it ends; other steps are mid-window evaluations.
    """
    records = []
    for task, row in enumerate(scores):
        for step, score in zip(steps, row, strict=True):
            if step == 0:
                block, block_end = -1, True
            else:
                block = (step - 1) // block_length
                block_end = step % block_length == 0
            records.append(
                EvalRecord(
                    global_step=step,
                    block=block,
                    trained_task=schedule[block] if block >= 0 else -1,
                    eval_task=task,
                    eval_task_name=f"task{task}",
                    mean_return=10.0 * score,
                    score=score,
                    episodes=5,
                    block_end=block_end,
                )
            )
    return records


def reference_run(steps: Sequence[int], scores: Sequence[float]) -> list[EvalRecord]:
    """A single-task reference run over one window ending at ``steps[-1]``."""
    return make_records([0], steps, [scores], block_length=steps[-1])


# Three tasks, three blocks of 100 steps, evaluations every 50 steps.
SEQ_SCHEDULE = [0, 1, 2]
SEQ_STEPS = [0, 50, 100, 150, 200, 250, 300]
SEQ_SCORES = [
    # step: 0    50   100  150  200  250  300
    [0.0, 0.4, 0.8, 0.6, 0.5, 0.4, 0.3],  # task 0, trained in block 0 (steps 1..100)
    [0.1, 0.1, 0.2, 0.6, 1.0, 0.9, 0.7],  # task 1, trained in block 1 (steps 101..200)
    [0.0, 0.0, 0.1, 0.2, 0.3, 0.5, 0.9],  # task 2, trained in block 2 (steps 201..300)
]
SEQ_REFERENCE = {
    # AUC_ref: 50*(0.0+0.2)/2 + 50*(0.2+0.6)/2 = 5 + 20 = 25, / 100 = 0.25
    0: reference_run([0, 50, 100], [0.0, 0.2, 0.6]),
    # AUC_ref: 50*(0.0+0.5)/2 + 50*(0.5+1.0)/2 = 12.5 + 37.5 = 50, / 100 = 0.5
    1: reference_run([0, 50, 100], [0.0, 0.5, 1.0]),
    # AUC_ref: constant 0.1 -> 0.1
    2: reference_run([0, 50, 100], [0.1, 0.1, 0.1]),
}


@pytest.fixture
def seq_records() -> list[EvalRecord]:
    return make_records(SEQ_SCHEDULE, SEQ_STEPS, SEQ_SCORES, block_length=100)


def test_performance_matrix_rows_are_pretraining_then_block_ends(
    seq_records: list[EvalRecord],
) -> None:
    matrix = performance_matrix(seq_records, num_blocks=3, num_tasks=3)
    expected = [
        [0.0, 0.1, 0.0],  # step 0, before training
        [0.8, 0.2, 0.1],  # step 100, end of block 0
        [0.5, 1.0, 0.3],  # step 200, end of block 1
        [0.3, 0.7, 0.9],  # step 300, end of block 2
    ]
    np.testing.assert_allclose(matrix, expected)


def test_sequence_headline_metrics(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE)
    # A = (0.3 + 0.7 + 0.9) / 3
    assert m.average_performance == pytest.approx(1.9 / 3)
    # F_0 = 0.8 - 0.3 = 0.5, F_1 = 1.0 - 0.7 = 0.3, task 2 is the final block's task.
    np.testing.assert_allclose(m.forgetting_per_task, [0.5, 0.3, nan])
    assert m.forgetting == pytest.approx(0.4)
    # AUC_0 over steps 0..100: 50*(0.0+0.4)/2 + 50*(0.4+0.8)/2 = 10 + 30 -> 0.4
    # AUC_1 over steps 100..200: 50*(0.2+0.6)/2 + 50*(0.6+1.0)/2 = 20 + 40 -> 0.6
    # AUC_2 over steps 200..300: 50*(0.3+0.5)/2 + 50*(0.5+0.9)/2 = 20 + 35 -> 0.55
    np.testing.assert_allclose(m.auc, [0.4, 0.6, 0.55])
    np.testing.assert_allclose(m.auc_reference, [0.25, 0.5, 0.1])
    # FT_0 = (0.4-0.25)/0.75 = 0.2, FT_1 = (0.6-0.5)/0.5 = 0.2, FT_2 = (0.55-0.1)/0.9 = 0.5
    np.testing.assert_allclose(m.forward_transfer_per_task, [0.2, 0.2, 0.5])
    assert m.forward_transfer == pytest.approx(0.3)
    # BWT: R[3,0]-R[1,0] = 0.3-0.8 = -0.5, R[3,1]-R[2,1] = 0.7-1.0 = -0.3 -> mean -0.4
    np.testing.assert_allclose(m.backward_transfer_per_task, [-0.5, -0.3, nan])
    assert m.backward_transfer == pytest.approx(-0.4)


def test_sequence_cora_matrices(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    # F_{0<-1} = p_0(step 100) - p_0(step 200) = 0.8 - 0.5 = 0.3
    # F_{0<-2} = 0.5 - 0.3 = 0.2; F_{1<-2} = 1.0 - 0.7 = 0.3; block 0 has no earlier task.
    np.testing.assert_allclose(
        m.cora_isolated_forgetting_matrix,
        [[nan, 0.3, 0.2], [nan, nan, 0.3], [nan, nan, nan]],
    )
    assert m.cora_isolated_forgetting == pytest.approx(0.8 / 3)
    # Z_{1<-0} = 0.2 - 0.1 = 0.1; Z_{2<-0} = 0.1 - 0.0 = 0.1; Z_{2<-1} = 0.3 - 0.1 = 0.2
    np.testing.assert_allclose(
        m.cora_zero_shot_transfer_matrix,
        [[nan, nan, nan], [0.1, nan, nan], [0.1, 0.2, nan]],
    )
    assert m.cora_zero_shot_transfer == pytest.approx(0.4 / 3)


def test_public_functions_agree_with_summary(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE, end_window=2)
    assert average_performance(seq_records, 3, end_window=2) == m.average_performance
    np.testing.assert_array_equal(final_scores(seq_records, 3, end_window=2), m.final_scores)
    f = forgetting(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    assert f.mean == m.forgetting
    np.testing.assert_array_equal(f.values, m.forgetting_per_task)
    assert backward_transfer(seq_records, SEQ_SCHEDULE, 3).mean == m.backward_transfer
    np.testing.assert_array_equal(first_window_auc(seq_records, SEQ_SCHEDULE, 3), m.auc)
    np.testing.assert_array_equal(reference_auc(SEQ_REFERENCE, 3), m.auc_reference)
    ft = forward_transfer(seq_records, SEQ_SCHEDULE, 3, SEQ_REFERENCE)
    assert ft.mean == m.forward_transfer
    iso = cora_isolated_forgetting(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    np.testing.assert_array_equal(iso.values, m.cora_isolated_forgetting_matrix)
    zs = cora_zero_shot_transfer(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    assert zs.mean == m.cora_zero_shot_transfer


def test_end_window_two_averages_last_two_evaluations(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    # p(T): task 0 (0.4+0.3)/2 = 0.35, task 1 (0.9+0.7)/2 = 0.8, task 2 (0.5+0.9)/2 = 0.7
    np.testing.assert_allclose(m.final_scores, [0.35, 0.8, 0.7])
    assert m.average_performance == pytest.approx(1.85 / 3)
    # end of W_0 for task 0: steps 50, 100 -> (0.4+0.8)/2 = 0.6; F_0 = 0.6 - 0.35 = 0.25
    # end of W_1 for task 1: steps 150, 200 -> (0.6+1.0)/2 = 0.8; F_1 = 0.8 - 0.8 = 0
    np.testing.assert_allclose(m.forgetting_per_task, [0.25, 0.0, nan], atol=1e-12)
    assert m.forgetting == pytest.approx(0.125)
    # BWT reads the performance matrix (single closing evaluations): unchanged.
    assert m.backward_transfer == pytest.approx(-0.4)
    # Start of a window stays one evaluation; ends average two within the block:
    # F_{0<-1} = 0.8 - (0.6+0.5)/2 = 0.25; F_{0<-2} = 0.5 - (0.4+0.3)/2 = 0.15;
    # F_{1<-2} = 1.0 - (0.9+0.7)/2 = 0.2
    np.testing.assert_allclose(
        m.cora_isolated_forgetting_matrix,
        [[nan, 0.25, 0.15], [nan, nan, 0.2], [nan, nan, nan]],
    )
    # End of W_{-1} is the single pre-training evaluation:
    # Z_{1<-0} = (0.1+0.2)/2 - 0.1 = 0.05; Z_{2<-0} = (0.0+0.1)/2 - 0.0 = 0.05;
    # Z_{2<-1} = (0.2+0.3)/2 - 0.05 = 0.2
    np.testing.assert_allclose(
        m.cora_zero_shot_transfer_matrix,
        [[nan, nan, nan], [0.05, nan, nan], [0.05, 0.2, nan]],
    )
    assert m.cora_zero_shot_transfer == pytest.approx(0.1)


def test_missing_closing_evaluation_is_nan_and_metrics_use_the_rest(
    seq_records: list[EvalRecord],
) -> None:
    # Drop task 0's evaluation that closes block 1 (step 200).
    records = [r for r in seq_records if not (r.eval_task == 0 and r.global_step == 200)]
    m = summarize_run(records, SEQ_SCHEDULE, 3)
    assert math.isnan(m.performance_matrix[2, 0])
    assert m.performance_matrix[2, 1] == pytest.approx(1.0)
    # Forgetting, BWT and A never needed that evaluation.
    assert m.forgetting == pytest.approx(0.4)
    assert m.backward_transfer == pytest.approx(-0.4)
    assert m.average_performance == pytest.approx(1.9 / 3)
    # F_{0<-1} needs its end and F_{0<-2} its start: both undefined; F_{1<-2} = 0.3 remains.
    assert np.isnan(m.cora_isolated_forgetting_matrix[0]).all()
    assert m.cora_isolated_forgetting == pytest.approx(0.3)


def test_single_task_run_has_no_forgetting_or_backward_transfer() -> None:
    records = make_records([0], [0, 50, 100], [[0.2, 0.5, 0.9]], block_length=100)
    reference = {0: reference_run([0, 100], [0.0, 1.0])}  # AUC_ref = 0.5
    m = summarize_run(records, [0], 1, reference=reference)
    assert m.average_performance == pytest.approx(0.9)
    assert math.isnan(m.forgetting)
    assert math.isnan(m.backward_transfer)
    assert math.isnan(m.cora_isolated_forgetting)
    assert math.isnan(m.cora_zero_shot_transfer)
    # AUC = (50*(0.2+0.5)/2 + 50*(0.5+0.9)/2) / 100 = (17.5 + 35) / 100 = 0.525
    # FT = (0.525 - 0.5) / (1 - 0.5) = 0.05
    assert m.forward_transfer == pytest.approx(0.05)
    data = m.to_dict()
    assert data["forgetting"] is None
    assert data["backward_transfer"] is None
    assert data["forward_transfer"] == pytest.approx(0.05)


def test_task_never_trained() -> None:
    schedule = [0, 1]
    scores = [
        # step: 0  100  200
        [0.0, 0.8, 0.6],  # task 0, trained in block 0
        [0.0, 0.2, 0.9],  # task 1, trained in block 1
        [0.1, 0.3, 0.2],  # task 2, never trained
    ]
    m = summarize_run(make_records(schedule, [0, 100, 200], scores, 100), schedule, 3)
    assert m.performance_matrix.shape == (3, 3)
    # A counts every task: (0.6 + 0.9 + 0.2) / 3
    assert m.average_performance == pytest.approx(1.7 / 3)
    # F_0 = 0.8 - 0.6; task 1 is final; task 2 was never trained.
    np.testing.assert_allclose(m.forgetting_per_task, [0.2, nan, nan])
    np.testing.assert_allclose(m.backward_transfer_per_task, [-0.2, nan, nan])
    assert math.isnan(m.auc[2])
    # Only F_{0<-1} = 0.8 - 0.6 = 0.2; the untrained task cannot be forgotten.
    assert m.cora_isolated_forgetting == pytest.approx(0.2)
    # Untrained task 2 is unseen at every block:
    # Z_{1<-0} = 0.2 - 0.0 = 0.2; Z_{2<-0} = 0.3 - 0.1 = 0.2; Z_{2<-1} = 0.2 - 0.3 = -0.1
    np.testing.assert_allclose(
        m.cora_zero_shot_transfer_matrix, [[nan, nan], [0.2, nan], [0.2, -0.1]]
    )
    assert m.cora_zero_shot_transfer == pytest.approx(0.1)
    assert math.isnan(m.forward_transfer)  # no reference given


def test_cycle_uses_last_window_for_forgetting_and_first_for_auc() -> None:
    schedule = [0, 1, 0, 1]
    scores = [
        # step: 0  100  200  300  400
        [0.0, 0.6, 0.3, 0.9, 0.5],  # task 0, trained in blocks 0 and 2
        [0.0, 0.1, 0.7, 0.4, 0.8],  # task 1, trained in blocks 1 and 3
    ]
    records = make_records(schedule, [0, 100, 200, 300, 400], scores, 100)
    # Task 1's reference: AUC_ref = 0. Task 0 has none.
    reference = {1: reference_run([0, 100], [0.0, 0.0])}
    m = summarize_run(records, schedule, 2, reference=reference)
    # F_0 from its last window (block 2): 0.9 - 0.5 = 0.4 (first window would give 0.1).
    np.testing.assert_allclose(m.forgetting_per_task, [0.4, nan])
    # BWT_0 = R[4,0] - R[3,0] = 0.5 - 0.9
    assert m.backward_transfer == pytest.approx(-0.4)
    # First windows: task 0 (0.0+0.6)/2 = 0.3; task 1 (0.1+0.7)/2 = 0.4 (last would be 0.6).
    np.testing.assert_allclose(m.auc, [0.3, 0.4])
    np.testing.assert_allclose(m.forward_transfer_per_task, [nan, 0.4])
    assert m.forward_transfer == pytest.approx(0.4)
    # F_{0<-1} = 0.6-0.3; F_{1<-2} = 0.7-0.4; F_{0<-3} = 0.9-0.5; the trained task is skipped.
    np.testing.assert_allclose(
        m.cora_isolated_forgetting_matrix, [[nan, 0.3, nan, 0.4], [nan, nan, 0.3, nan]]
    )
    assert m.cora_isolated_forgetting == pytest.approx(1.0 / 3)
    # Only task 1 before block 1: Z_{1<-0} = 0.1 - 0.0.
    assert m.cora_zero_shot_transfer == pytest.approx(0.1)
    assert np.count_nonzero(~np.isnan(m.cora_zero_shot_transfer_matrix)) == 1


def test_reference_auc_of_one_makes_forward_transfer_undefined(
    seq_records: list[EvalRecord],
) -> None:
    reference = {0: reference_run([0, 50, 100], [1.0, 1.0, 1.0])}
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=reference)
    assert m.auc_reference[0] == pytest.approx(1.0)
    assert np.isnan(m.forward_transfer_per_task).all()
    assert math.isnan(m.forward_transfer)
    assert m.to_dict()["forward_transfer"] is None


def test_to_dict_is_json_ready(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    data = m.to_dict()
    assert set(HEADLINE_METRICS) <= data.keys()
    assert data["forward_transfer"] is None  # no reference
    assert data["forgetting"] == pytest.approx(0.4)
    assert data["performance_matrix"][1] == pytest.approx([0.8, 0.2, 0.1])
    assert data["per_task"]["forgetting"][2] is None
    json.dumps(data, allow_nan=False)  # raises on any NaN left behind


def test_run_metrics_arrays_are_read_only(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    with pytest.raises(ValueError, match="read-only"):
        m.performance_matrix[0, 0] = 1.0


def test_bootstrap_on_known_sample() -> None:
    values = [0.12, 0.47, 0.33, 0.91, 0.05, 0.68, 0.29, 0.74, 0.56, 0.18]
    mean, low, high = bootstrap_ci(values, confidence=0.9, seed=0)
    assert mean == pytest.approx(0.433, abs=1e-12)  # 4.33 / 10: the plain sample mean
    assert low < mean < high
    # The bootstrap interval of a mean is close to the normal one, mean +- z * s / sqrt(n):
    # population s = 0.2720, n = 10, z(95%) = 1.645 -> +-0.1415 -> (0.2915, 0.5745).
    assert low == pytest.approx(0.2915, abs=0.02)
    assert high == pytest.approx(0.5745, abs=0.02)
    # At 50%, z(75%) = 0.674 -> +-0.058 -> (0.375, 0.491): strictly inside the 90% one.
    _, low50, high50 = bootstrap_ci(values, confidence=0.5, seed=0)
    assert low50 == pytest.approx(0.375, abs=0.02)
    assert high50 == pytest.approx(0.491, abs=0.02)
    assert low < low50 < mean < high50 < high
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_degenerate_inputs() -> None:
    assert bootstrap_ci([nan, 1.0, None, 3.0])[0] == 2.0
    assert all(math.isnan(v) for v in bootstrap_ci([nan, None]))
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_aggregate_seeds() -> None:
    per_seed: list[dict[str, float | None]] = [
        {"forgetting": 1.0, "forward_transfer": None, "a": None},
        {"forgetting": 3.0, "forward_transfer": 2.0, "a": nan},
    ]
    result = aggregate_seeds(per_seed, ["forgetting", "forward_transfer", "a"])
    assert result["forgetting"]["mean"] == 2.0
    assert result["forgetting"]["n"] == 2
    # Resamples of {1, 3} have means 1, 2 or 3; a 90% interval spans the extremes.
    assert result["forgetting"]["ci_low"] == 1.0
    assert result["forgetting"]["ci_high"] == 3.0
    assert result["forward_transfer"] == {"mean": 2.0, "ci_low": 2.0, "ci_high": 2.0, "n": 1}
    assert result["a"] == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    json.dumps(result, allow_nan=False)


def test_aggregate_seeds_over_run_metrics(seq_records: list[EvalRecord]) -> None:
    runs = [summarize_run(seq_records, SEQ_SCHEDULE, 3, end_window=w).to_dict() for w in (1, 2)]
    result = aggregate_seeds(runs)
    assert set(result) == set(HEADLINE_METRICS)
    # Forgetting 0.4 (end_window 1) and 0.125 (end_window 2).
    assert result["forgetting"]["mean"] == pytest.approx(0.2625)
    assert result["forward_transfer"]["n"] == 0


def test_aggregate_seeds_missing_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="seed #1 has no metric 'forgetting'"):
        aggregate_seeds([{"forgetting": 1.0}, {}], ["forgetting"])


def _record(eval_task: int = 0, block: int = 0, step: int = 10) -> EvalRecord:
    return EvalRecord(step, block, 0, eval_task, "t", 0.0, 0.5, 1, block_end=True)


@pytest.mark.parametrize(
    ("records", "schedule", "num_tasks", "end_window", "message"),
    [
        ([_record(eval_task=3)], [0], 3, 1, "evaluates task 3"),
        ([_record(eval_task=-1)], [0], 3, 1, "evaluates task -1"),
        ([_record(block=2)], [0, 1], 2, 1, "block 2"),
        ([_record(), _record(step=20)], [0], 1, 1, "two closing evaluations"),
        ([_record(block=1)], [0, 1], 2, 1, r"trained task 0, but schedule\[1\] = 1"),
        ([], [0, 3], 3, 1, r"schedule\[1\] = 3"),
        ([], [-1], 3, 1, r"schedule\[0\] = -1"),
        ([], [], 3, 1, "schedule is empty"),
        ([], [0], 1, 0, "end_window must be >= 1"),
    ],
)
def test_bad_input_raises(
    records: list[EvalRecord],
    schedule: list[int],
    num_tasks: int,
    end_window: int,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        summarize_run(records, schedule, num_tasks, end_window=end_window)


def test_bad_reference_raises(seq_records: list[EvalRecord]) -> None:
    with pytest.raises(ValueError, match="reference given for task 5"):
        summarize_run(seq_records, SEQ_SCHEDULE, 3, reference={5: SEQ_REFERENCE[0]})
    multi_task = [_record(eval_task=1)]
    with pytest.raises(ValueError, match="reference run for task 0 is not a single-task run"):
        summarize_run(seq_records, SEQ_SCHEDULE, 3, reference={0: multi_task})


def test_bad_bootstrap_arguments_raise() -> None:
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0, 2.0], resamples=0)


def test_metrics_module_does_not_import_torch() -> None:
    # A fresh interpreter: this test process has torch loaded already by other tests.
    code = "import sys, l2rl.metrics; sys.exit('torch' in sys.modules)"
    repo_root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0
