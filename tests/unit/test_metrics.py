"""Metrics on hand-built evaluation records, checked against hand-computed values.

The same conventions through the papers' own code: ``test_metrics_reference_code.py``.
"""

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
    NO_REFERENCE_REASON,
    UNTRAINED_HEADS_REASON,
    MissingEvaluation,
    cora_isolated_forgetting,
    cora_zero_shot_transfer,
    cw_forgetting,
    gem_transfer,
    l2rl_forgetting,
    missing_evaluations,
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


def test_continual_world_convention(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE)
    # p_j(T): last 5 rounds logged while training (steps 100..300; step 0 is not logged).
    # task 0: (0.8+0.6+0.5+0.4+0.3)/5 = 0.52; task 1: 3.4/5 = 0.68; task 2: 2.0/5 = 0.4
    np.testing.assert_allclose(m.per_task["cw_final_score"], [0.52, 0.68, 0.4])
    assert m["cw_average_performance"] == pytest.approx(1.6 / 3)
    # p_i(end): last 5 of task i's own rounds: task 0 (0.4+0.8)/2, task 1 (0.6+1.0)/2,
    # task 2 (0.5+0.9)/2. The final task counts too; with these few rounds it is not 0.
    np.testing.assert_allclose(m.per_task["cw_forgetting"], [0.08, 0.12, 0.3], atol=1e-12)
    assert m["cw_forgetting"] == pytest.approx(0.5 / 3)
    # AUC: plain mean of the task's own rounds; AUC_ref: plain mean of the reference's
    # rounds in its training block (steps 50 and 100).
    np.testing.assert_allclose(m.per_task["cw_auc"], [0.6, 0.8, 0.7])
    np.testing.assert_allclose(m.per_task["cw_auc_reference"], [0.4, 0.75, 0.1])
    # FT = (0.6-0.4)/0.6, (0.8-0.75)/0.25, (0.7-0.1)/0.9
    np.testing.assert_allclose(m.per_task["cw_forward_transfer"], [1 / 3, 0.2, 2 / 3])
    assert m["cw_forward_transfer"] == pytest.approx(0.4)


def test_gem_convention_divides_by_all_tasks(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    # bwt_i = R[3,i] - R[i+1,i]: 0.3-0.8, 0.7-1.0, 0.9-0.9; mean over all 3 tasks.
    np.testing.assert_allclose(m.per_task["gem_backward_transfer"], [-0.5, -0.3, 0.0])
    assert m["gem_backward_transfer"] == pytest.approx(-0.8 / 3)
    # fwt_i = R[i,i] - R[0,i]: 0 (task 0), 0.2-0.1, 0.3-0.0; mean over all 3 tasks.
    np.testing.assert_allclose(m.per_task["gem_forward_transfer"], [0.0, 0.1, 0.3])
    assert m["gem_forward_transfer"] == pytest.approx(0.4 / 3)


def test_l2rl_convention(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE)
    # A = (0.3 + 0.7 + 0.9) / 3: the last round only.
    assert m["l2rl_average_performance"] == pytest.approx(1.9 / 3)
    # F_0 = 0.8 - 0.3 = 0.5, F_1 = 1.0 - 0.7 = 0.3, task 2 is the final block's task.
    np.testing.assert_allclose(m.per_task["l2rl_forgetting"], [0.5, 0.3, nan])
    assert m["l2rl_forgetting"] == pytest.approx(0.4)
    # With end_window 1 it is exactly minus GEM's per-task backward transfer.
    np.testing.assert_array_equal(
        m.per_task["l2rl_forgetting"][:2], -m.per_task["gem_backward_transfer"][:2]
    )
    # AUC_0 over steps 0..100: 50*(0.0+0.4)/2 + 50*(0.4+0.8)/2 = 10 + 30 -> 0.4
    # AUC_1 over steps 100..200: 50*(0.2+0.6)/2 + 50*(0.6+1.0)/2 = 20 + 40 -> 0.6
    # AUC_2 over steps 200..300: 50*(0.3+0.5)/2 + 50*(0.5+0.9)/2 = 20 + 35 -> 0.55
    np.testing.assert_allclose(m.per_task["l2rl_auc"], [0.4, 0.6, 0.55])
    np.testing.assert_allclose(m.per_task["l2rl_auc_reference"], [0.25, 0.5, 0.1])
    # FT_0 = (0.4-0.25)/0.75 = 0.2, FT_1 = (0.6-0.5)/0.5 = 0.2, FT_2 = (0.55-0.1)/0.9 = 0.5
    np.testing.assert_allclose(m.per_task["l2rl_forward_transfer"], [0.2, 0.2, 0.5])
    assert m["l2rl_forward_transfer"] == pytest.approx(0.3)


def test_sequence_cora_matrices(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    # F_{0<-1} = p_0(step 100) - p_0(step 200) = 0.8 - 0.5 = 0.3
    # F_{0<-2} = 0.5 - 0.3 = 0.2; F_{1<-2} = 1.0 - 0.7 = 0.3; block 0 has no earlier task.
    np.testing.assert_allclose(
        m.cora_isolated_forgetting_matrix,
        [[nan, 0.3, 0.2], [nan, nan, 0.3], [nan, nan, nan]],
    )
    assert m["cora_isolated_forgetting"] == pytest.approx(0.8 / 3)
    # Z_{1<-0} = 0.2 - 0.1 = 0.1; Z_{2<-0} = 0.1 - 0.0 = 0.1; Z_{2<-1} = 0.3 - 0.1 = 0.2
    np.testing.assert_allclose(
        m.cora_zero_shot_transfer_matrix,
        [[nan, nan, nan], [0.1, nan, nan], [0.1, 0.2, nan]],
    )
    assert m["cora_zero_shot_transfer"] == pytest.approx(0.4 / 3)


def test_public_functions_agree_with_summary(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE, end_window=2)
    cw = cw_forgetting(seq_records, SEQ_SCHEDULE, 3)
    assert cw.mean == m["cw_forgetting"]
    np.testing.assert_array_equal(cw.values, m.per_task["cw_forgetting"])
    f = l2rl_forgetting(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    assert f.mean == m["l2rl_forgetting"]
    np.testing.assert_array_equal(f.values, m.per_task["l2rl_forgetting"])
    bwt, fwt = gem_transfer(seq_records, SEQ_SCHEDULE, 3)
    assert (bwt.mean, fwt.mean) == (m["gem_backward_transfer"], m["gem_forward_transfer"])
    trapezoid, plain = reference_auc(SEQ_REFERENCE, 3)
    np.testing.assert_array_equal(trapezoid, m.per_task["l2rl_auc_reference"])
    np.testing.assert_array_equal(plain, m.per_task["cw_auc_reference"])
    iso = cora_isolated_forgetting(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    np.testing.assert_array_equal(iso.values, m.cora_isolated_forgetting_matrix)
    zs = cora_zero_shot_transfer(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    assert zs.mean == m["cora_zero_shot_transfer"]


def test_end_window_two_averages_last_two_evaluations(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, end_window=2)
    # p(T): task 0 (0.4+0.3)/2 = 0.35, task 1 (0.9+0.7)/2 = 0.8, task 2 (0.5+0.9)/2 = 0.7
    np.testing.assert_allclose(m.per_task["l2rl_final_score"], [0.35, 0.8, 0.7])
    assert m["l2rl_average_performance"] == pytest.approx(1.85 / 3)
    # end of W_0 for task 0: steps 50, 100 -> (0.4+0.8)/2 = 0.6; F_0 = 0.6 - 0.35 = 0.25
    # end of W_1 for task 1: steps 150, 200 -> (0.6+1.0)/2 = 0.8; F_1 = 0.8 - 0.8 = 0
    np.testing.assert_allclose(m.per_task["l2rl_forgetting"], [0.25, 0.0, nan], atol=1e-12)
    assert m["l2rl_forgetting"] == pytest.approx(0.125)
    # GEM reads single closing evaluations and Continual World its fixed 5: unchanged.
    assert m["gem_backward_transfer"] == pytest.approx(-0.8 / 3)
    assert m["cw_forgetting"] == pytest.approx(0.5 / 3)
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
    assert m["cora_zero_shot_transfer"] == pytest.approx(0.1)


def test_missing_closing_evaluation_is_nan_wherever_it_is_read(
    seq_records: list[EvalRecord],
) -> None:
    # Drop task 0's evaluation that closes block 1 (step 200).
    records = [r for r in seq_records if not (r.eval_task == 0 and r.global_step == 200)]
    m = summarize_run(records, SEQ_SCHEDULE, 3)
    assert m.missing == (MissingEvaluation(task=0, block=1, global_step=200, block_end=True),)
    assert missing_evaluations(records, SEQ_SCHEDULE, 3) == list(m.missing)
    assert math.isnan(m.performance_matrix[2, 0])
    # Continual World's last 5 rounds include step 200: task 0's p(T) and F are undefined,
    # not averaged over the 4 that remain (nor filled from step 150).
    assert math.isnan(m.per_task["cw_final_score"][0])
    assert m["cw_average_performance"] == pytest.approx((0.68 + 0.4) / 2)
    np.testing.assert_allclose(m.per_task["cw_forgetting"], [nan, 0.12, 0.3], atol=1e-12)
    # GEM and l2rl (end_window 1) never read it.
    assert m["gem_backward_transfer"] == pytest.approx(-0.8 / 3)
    assert m["l2rl_forgetting"] == pytest.approx(0.4)
    # F_{0<-1} needs its end and F_{0<-2} its start: both undefined; F_{1<-2} = 0.3 remains.
    assert np.isnan(m.cora_isolated_forgetting_matrix[0]).all()
    assert m["cora_isolated_forgetting"] == pytest.approx(0.3)
    reported = m.to_dict()["missing_evaluations"]
    assert reported == {
        "count": 1,
        "evaluations": [{"task": 0, "block": 1, "global_step": 200, "block_end": True}],
    }


def test_missing_mid_window_evaluation_is_nan_wherever_it_is_read(
    seq_records: list[EvalRecord],
) -> None:
    # Drop task 2's mid-window evaluation at step 250.
    records = [r for r in seq_records if not (r.eval_task == 2 and r.global_step == 250)]
    m = summarize_run(records, SEQ_SCHEDULE, 3, reference=SEQ_REFERENCE)
    assert m.missing == (MissingEvaluation(task=2, block=2, global_step=250, block_end=False),)
    for key in ("cw_final_score", "cw_forgetting", "cw_auc", "l2rl_auc"):
        assert math.isnan(m.per_task[key][2]), key
    # The last round (step 300) and the closing rounds are all there.
    assert m["l2rl_average_performance"] == pytest.approx(1.9 / 3)
    assert m["gem_forward_transfer"] == pytest.approx(0.4 / 3)


def test_single_task_run() -> None:
    records = make_records([0], [0, 50, 100], [[0.2, 0.5, 0.9]], block_length=100)
    # Reference AUCs: trapezoid (12.5 + 25) / 100 = 0.375; plain mean of 0.5, 0.5 = 0.5
    reference = {0: reference_run([0, 50, 100], [0.0, 0.5, 0.5])}
    m = summarize_run(records, [0], 1, reference=reference)
    assert m["l2rl_average_performance"] == pytest.approx(0.9)
    assert m["cw_average_performance"] == pytest.approx(0.7)
    # Continual World counts the final task: F_0 = 0.7 - 0.7 = 0; l2rl leaves it out.
    assert m["cw_forgetting"] == pytest.approx(0.0)
    assert math.isnan(m["l2rl_forgetting"])
    # GEM's code: bwt_0 = R[1,0] - R[1,0] and fwt_0 = 0 by construction.
    assert (m["gem_backward_transfer"], m["gem_forward_transfer"]) == (0.0, 0.0)
    assert math.isnan(m["cora_isolated_forgetting"])
    assert math.isnan(m["cora_zero_shot_transfer"])
    # CW: (0.7 - 0.5) / 0.5; l2rl: AUC (17.5 + 35) / 100 = 0.525 -> 0.15 / 0.625
    assert m["cw_forward_transfer"] == pytest.approx(0.4)
    assert m["l2rl_forward_transfer"] == pytest.approx(0.24)
    data = m.to_dict()
    assert data["l2rl_forgetting"] is None
    assert data["not_applicable"] == {}


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
    # Averages count every task: (0.6 + 0.9 + 0.2) / 3; CW's over steps 100 and 200.
    assert m["l2rl_average_performance"] == pytest.approx(1.7 / 3)
    np.testing.assert_allclose(m.per_task["cw_final_score"], [0.7, 0.55, 0.25])
    # CW: F_0 = 0.8 - 0.7, F_1 = 0.9 - 0.55; task 2 was never trained.
    np.testing.assert_allclose(m.per_task["cw_forgetting"], [0.1, 0.35, nan])
    np.testing.assert_allclose(m.per_task["l2rl_forgetting"], [0.2, nan, nan])
    assert math.isnan(m.per_task["l2rl_auc"][2])
    # GEM's code needs block i to train task i for every task.
    assert "gem_backward_transfer" in m.not_applicable
    assert math.isnan(m["gem_backward_transfer"])
    # Only F_{0<-1} = 0.8 - 0.6 = 0.2; the untrained task cannot be forgotten.
    assert m["cora_isolated_forgetting"] == pytest.approx(0.2)
    # Untrained task 2 is unseen at every block:
    # Z_{1<-0} = 0.2 - 0.0 = 0.2; Z_{2<-0} = 0.3 - 0.1 = 0.2; Z_{2<-1} = 0.2 - 0.3 = -0.1
    np.testing.assert_allclose(
        m.cora_zero_shot_transfer_matrix, [[nan, nan], [0.2, nan], [0.2, -0.1]]
    )
    assert m["cora_zero_shot_transfer"] == pytest.approx(0.1)


def test_cycle_uses_every_window_for_cw_and_the_last_for_l2rl() -> None:
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
    # l2rl: F_0 from its last window (block 2): 0.9 - 0.5 = 0.4 (the first would give 0.1).
    np.testing.assert_allclose(m.per_task["l2rl_forgetting"], [0.4, nan])
    # CW: p_i(end) over the rounds of every window of task i (their train/active_env
    # filter): task 0 (0.6+0.9)/2, task 1 (0.7+0.8)/2; p(T) over the last 4 rounds.
    np.testing.assert_allclose(m.per_task["cw_final_score"], [0.575, 0.5])
    np.testing.assert_allclose(m.per_task["cw_forgetting"], [0.175, 0.25])
    # CW's AUC also spans every window: task 1 (0.7+0.8)/2 against AUC_ref 0.
    assert m.per_task["cw_forward_transfer"][1] == pytest.approx(0.75)
    # l2rl's first windows: task 0 (0.0+0.6)/2 = 0.3; task 1 (0.1+0.7)/2 = 0.4.
    np.testing.assert_allclose(m.per_task["l2rl_auc"], [0.3, 0.4])
    np.testing.assert_allclose(m.per_task["l2rl_forward_transfer"], [nan, 0.4])
    # GEM's code assumes each task once.
    assert m.not_applicable["gem_backward_transfer"].endswith("schedule is [0, 1, 0, 1]")
    # F_{0<-1} = 0.6-0.3; F_{1<-2} = 0.7-0.4; F_{0<-3} = 0.9-0.5; the trained task is skipped.
    np.testing.assert_allclose(
        m.cora_isolated_forgetting_matrix, [[nan, 0.3, nan, 0.4], [nan, nan, 0.3, nan]]
    )
    assert m["cora_isolated_forgetting"] == pytest.approx(1.0 / 3)
    # Only task 1 before block 1: Z_{1<-0} = 0.1 - 0.0.
    assert m["cora_zero_shot_transfer"] == pytest.approx(0.1)
    assert np.count_nonzero(~np.isnan(m.cora_zero_shot_transfer_matrix)) == 1


def test_gem_transfer_off_schedule_raises() -> None:
    records = make_records([0, 1, 0, 1], [0, 100, 200, 300, 400], [[0.0] * 5] * 2, 100)
    with pytest.raises(ValueError, match="GEM's code assumes block i trains task i"):
        gem_transfer(records, [0, 1, 0, 1], 2)


def test_untrained_task_heads_make_zero_shot_transfer_not_applicable(
    seq_records: list[EvalRecord],
) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, untrained_task_heads=True)
    assert m.not_applicable["cora_zero_shot_transfer"] == UNTRAINED_HEADS_REASON
    assert m.not_applicable["gem_forward_transfer"] == UNTRAINED_HEADS_REASON
    data = m.to_dict()
    assert data["cora_zero_shot_transfer"] is None
    assert data["gem_forward_transfer"] is None
    # Backward figures stay: the heads have trained by then.
    assert data["gem_backward_transfer"] == pytest.approx(-0.8 / 3)


def test_reference_auc_of_one_makes_forward_transfer_undefined(
    seq_records: list[EvalRecord],
) -> None:
    reference = {0: reference_run([0, 50, 100], [1.0, 1.0, 1.0])}
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3, reference=reference)
    assert m.per_task["l2rl_auc_reference"][0] == pytest.approx(1.0)
    for key in ("cw_forward_transfer", "l2rl_forward_transfer"):
        assert np.isnan(m.per_task[key]).all()
        assert m.to_dict()[key] is None


def test_to_dict_is_json_ready(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    data = m.to_dict()
    assert set(HEADLINE_METRICS) <= data.keys()
    assert list(m.headline) == list(HEADLINE_METRICS)
    # Without reference runs forward transfer is null, with its reason.
    assert data["cw_forward_transfer"] is None
    assert data["not_applicable"] == {
        "cw_forward_transfer": NO_REFERENCE_REASON,
        "l2rl_forward_transfer": NO_REFERENCE_REASON,
    }
    assert data["missing_evaluations"] == {"count": 0, "evaluations": []}
    assert data["l2rl_forgetting"] == pytest.approx(0.4)
    assert data["performance_matrix"][1] == pytest.approx([0.8, 0.2, 0.1])
    assert data["per_task"]["l2rl_forgetting"][2] is None
    json.dumps(data, allow_nan=False)  # raises on any NaN left behind


def test_run_metrics_arrays_are_read_only(seq_records: list[EvalRecord]) -> None:
    m = summarize_run(seq_records, SEQ_SCHEDULE, 3)
    with pytest.raises(ValueError, match="read-only"):
        m.performance_matrix[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        m.per_task["cw_final_score"][0] = 1.0


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


def test_metrics_module_does_not_import_torch() -> None:
    # A fresh interpreter: this test process has torch loaded already by other tests.
    code = "import sys, l2rl.metrics; sys.exit('torch' in sys.modules)"
    repo_root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0
