"""Continual-learning metrics of one run as pure functions of its evaluation records.

Nothing here runs inside the training loop: every function reads a sequence of
:class:`~l2rl.types.EvalRecord` and the training schedule and returns numbers. Cross-seed
summaries live in :mod:`l2rl.aggregate`.

Each headline metric's key names the convention it follows; they differ on purpose, so the
same records give different numbers under different names:

========================== ===========================================================
key                        convention
========================== ===========================================================
``cw_average_performance`` Continual World (``results_processing/tables.py``)
``cw_forgetting``          Continual World
``cw_forward_transfer``    Continual World (one seed; across seeds see
                           :func:`l2rl.aggregate.cw_forward_transfer_interval`)
``gem_backward_transfer``  GEM's code (``metrics/metrics.py``, ``confusion_matrix``)
``gem_forward_transfer``   GEM's code
``cora_isolated_forgetting`` CORA's isolated forgetting (``USE_ISOLATED_FORGETTING``)
``cora_zero_shot_transfer``  CORA's isolated zero-shot transfer (``USE_ISOLATED_ZSFT``)
``l2rl_average_performance`` l2rl: last ``end_window`` evaluations
``l2rl_forgetting``        l2rl: per window, ``end_window`` evaluations, ``N - 1`` tasks
``l2rl_forward_transfer``  l2rl: trapezoid AUC, ratio per seed
========================== ===========================================================

Records
-------
* ``schedule`` is the task index trained in each block (training window), in order:
  ``[0, 1, 2]`` for a plain sequence, ``[0, 1, 0, 1]`` for a cycle; ``B = len(schedule)``.
* An *evaluation round* is one moment at which the runner evaluated every task: a block, a
  step and whether it closes the block. Rounds are ordered by step (ties: earlier block
  first, a block's closing round last). Block ``-1`` holds the round before any training;
  every block has exactly one closing round (``block_end``), at most one record per task.
* A record's ``trained_task`` must equal ``schedule[block]`` (this catches a wrong schedule).

Missing evaluations
-------------------
Every metric treats a gap the same way: a value that reads an evaluation round at which the
task has no record is NaN (undefined), never filled from another round. The gaps are listed
by :func:`missing_evaluations` (and in ``RunMetrics.to_dict()["missing_evaluations"]``): a
task without a record at a round where others have one, and a task without the closing
evaluation of a block (or of the round before training). Continual World's pandas code would
instead average the values that exist; on complete records the two agree exactly.

Continual World
---------------
Their ``tables.py`` reads rows logged while a task trains (no row before training):

* ``p_j(T)``: mean of task ``j``'s last 5 rounds of the run (blocks ``>= 0``);
  ``cw_average_performance = mean_j p_j(T)`` over all tasks.
* ``p_i(end)``: mean of task ``i``'s last 5 rounds among the blocks that train ``i`` (every
  window of ``i``: their filter is ``train/active_env == i``). ``F_i = p_i(end) - p_i(T)`` for
  every trained task, the final block's task included (it contributes 0), and
  ``cw_forgetting`` is the mean over the trained tasks: over all ``N`` in a plain sequence.
* ``AUC_i``: plain mean of task ``i``'s scores over every round of the blocks that train it;
  ``AUC_i^ref`` the same over the single-task reference run's rounds (block 0).
  ``FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``; across seeds Continual World takes the
  ratio of seed means, not the mean of per-seed ratios (:mod:`l2rl.aggregate`).

GEM
---
``gem_backward_transfer = (1/N) sum_i (R[N, i] - R[i + 1, i])`` and
``gem_forward_transfer = (1/N) sum_{i >= 1} (R[i, i] - R[0, i])`` on the performance matrix
``R`` below, as GEM's ``confusion_matrix`` computes them: the means run over all ``N`` tasks
(the final task's BWT term and the first task's FWT term are 0), although the paper's
equations divide by ``N - 1``. GEM's code assumes that block ``i`` trains task ``i``, once:
under any other schedule both are not applicable.

CORA
----
``cora_isolated_forgetting``: ``F_{i<-j} = p_i(start of W_j) - p_i(end of W_j)`` for each
block ``j`` and each task ``i`` other than block ``j``'s task that some block before ``j``
trained; ``cora_zero_shot_transfer``: ``Z_{k<-j} = p_k(end of W_j) - p_k(end of W_{j-1})``
for each block ``j`` and each task ``k`` first trained after ``j`` (or never). ``start of
W_j`` is the closing round of block ``j - 1``; ``end of W_j`` the mean of the last
``end_window`` rounds of block ``j``; ``end of W_{-1}`` the round before training. These are
CORA's isolated definitions; unlike CORA's plotting code, l2rl does not smooth curves with a
causal moving average first, scores are normalised by each task's declared range rather
than by the largest return seen, and every block (every cycle) is counted.

l2rl's own
----------
* ``p_j(T)``: mean of the last ``end_window`` rounds of the run;
  ``l2rl_average_performance = mean_j p_j(T)``.
* ``l2rl_forgetting``: ``F_i = p_i(end of W_{b_i}) - p_i(T)``, ``b_i`` the last block of
  task ``i``, over trained tasks other than the final block's task (``N - 1`` in a plain
  sequence). With ``end_window=1`` it is exactly minus GEM's paper BWT.
* ``l2rl_forward_transfer``: ``AUC_i`` integrates task ``i``'s curve with the trapezoidal
  rule over its *first* window, from the start-of-window round to the closing one, divided
  by the window's length; ``FT_i`` as above; the per-seed ratios are averaged across seeds.

The performance matrix ``R`` has ``B + 1`` rows: row 0 holds the scores before training and
row ``k`` the closing scores of block ``k - 1`` (single evaluations, no averaging).

Not applicable
--------------
A headline metric that cannot be measured is NaN here and ``null`` in JSON, with its reason
in ``RunMetrics.not_applicable``: forward transfer without reference runs; GEM's metrics off
their schedule; zero-shot transfer (CORA's, and GEM's forward transfer) when each task acts
through a head of its own that stays untrained until its task trains, since such a head's
scores before training say nothing about transfer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    # Annotations only: l2rl.types imports torch, and metrics must stay importable (and fast
    # to import) in analysis scripts that never touch torch.
    from l2rl.types import EvalRecord

FloatArray = npt.NDArray[np.float64]

HEADLINE_METRICS: tuple[str, ...] = (
    "cw_average_performance",
    "cw_forgetting",
    "cw_forward_transfer",
    "gem_backward_transfer",
    "gem_forward_transfer",
    "cora_isolated_forgetting",
    "cora_zero_shot_transfer",
    "l2rl_average_performance",
    "l2rl_forgetting",
    "l2rl_forward_transfer",
)
"""The scalar figures of a run, in report order; keys of :meth:`RunMetrics.to_dict`."""

CW_END_EVALUATIONS = 5
"""Evaluations Continual World averages at a window's end and at the run's end (``tail(5)``)."""

UNTRAINED_HEADS_REASON = (
    "each task acts through a head of its own that is untrained until its task trains, so "
    "scores before training measure an initial head, not transfer"
)
NO_REFERENCE_REASON = "no single-task reference runs (metrics.reference_runs is false)"
GEM_SCHEDULE_REASON = (
    "GEM's code assumes block i trains task i, each task once; schedule is {schedule}"
)

# An AUC_ref this close to 1 leaves no headroom to normalise by: FT is undefined there.
_AUC_REF_ONE_TOL = 1e-12


class MetricResult(NamedTuple):
    """A metric's values (per task, or tasks x blocks) and their NaN-ignoring mean."""

    values: FloatArray
    mean: float


class MissingEvaluation(NamedTuple):
    """A task without a record at an evaluation round; ``global_step`` None: no such round."""

    task: int
    block: int
    global_step: int | None
    block_end: bool


def nan_mean(values: npt.ArrayLike) -> float:
    """Mean of the non-NaN entries; NaN (and no ``RuntimeWarning``) when there are none."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[~np.isnan(array)]
    return float(defined.mean()) if defined.size else math.nan


_Round = tuple[int, int, bool]  # (block, global_step, block_end)


class _Curves:
    """Records of one run indexed by task and evaluation round, validated once."""

    def __init__(
        self,
        records: Iterable[EvalRecord],
        num_blocks: int,
        num_tasks: int,
        schedule: Sequence[int] | None = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_blocks = num_blocks
        self.num_tasks = num_tasks
        self.scores: dict[tuple[int, _Round], float] = {}
        self.closing: dict[tuple[int, int], EvalRecord] = {}
        rounds: set[_Round] = set()
        for record in records:
            if not 0 <= record.eval_task < num_tasks:
                raise ValueError(
                    f"record evaluates task {record.eval_task}, outside 0..{num_tasks - 1}"
                )
            if not -1 <= record.block < num_blocks:
                raise ValueError(f"record has block {record.block}, outside -1..{num_blocks - 1}")
            # Catches a schedule that does not belong to these records.
            if schedule is not None and record.block >= 0:
                expected = schedule[record.block]
                if record.trained_task != expected:
                    raise ValueError(
                        f"record of block {record.block} trained task {record.trained_task}, "
                        f"but schedule[{record.block}] = {expected}"
                    )
            key: _Round = (record.block, record.global_step, record.block_end)
            if (record.eval_task, key) in self.scores:
                kind = "closing evaluations" if record.block_end else "evaluations"
                raise ValueError(
                    f"two {kind} of task {record.eval_task} in block {record.block} "
                    f"at step {record.global_step}"
                )
            if record.block_end:
                if (record.eval_task, record.block) in self.closing:
                    raise ValueError(
                        f"two closing evaluations of task {record.eval_task} "
                        f"in block {record.block}"
                    )
                self.closing[(record.eval_task, record.block)] = record
            self.scores[(record.eval_task, key)] = record.score
            rounds.add(key)
        # block_end sorts last so a closing round ends its block at a tied step.
        self.rounds: list[_Round] = sorted(rounds, key=lambda r: (r[1], r[0], r[2]))

    def closing_round(self, block: int) -> _Round | None:
        """The round closing ``block`` (``-1``: before training), None if no task has it."""
        for round_ in self.rounds:
            if round_[0] == block and round_[2]:
                return round_
        return None

    def mean_over(self, task: int, rounds: Sequence[_Round]) -> float:
        """Mean of ``task``'s scores at ``rounds``; NaN if it misses one or there are none."""
        scores = [self.scores.get((task, r), math.nan) for r in rounds]
        return float(np.mean(scores)) if scores else math.nan

    def block_rounds(self, block: int) -> list[_Round]:
        """Rounds of ``block`` up to its closing round (all of them if it has none)."""
        return [r for r in self.rounds if r[0] == block]

    def closing_score(self, task: int, block: int) -> float:
        """Score of the evaluation closing ``block`` for ``task`` (NaN if missing)."""
        record = self.closing.get((task, block))
        return math.nan if record is None else record.score

    def end_of_window(self, task: int, block: int, end_window: int) -> float:
        """``p_task(end of W_block)``: mean of the block's last ``end_window`` rounds.

        NaN when the block has no closing round or the task misses one of those rounds.
        """
        rounds = self.block_rounds(block)
        if not rounds or not rounds[-1][2]:
            return math.nan
        return self.mean_over(task, rounds[-end_window:])

    def window_auc(self, task: int, block: int) -> float:
        """Trapezoidal area under ``task``'s curve over window ``block``, per step of window.

        Runs from the start-of-window round (closing ``block - 1``) to the closing one; NaN
        when the task misses one of those rounds or the window has no length.
        """
        start, rounds = self.closing_round(block - 1), self.block_rounds(block)
        if start is None or not rounds or not rounds[-1][2] or rounds[-1][1] <= start[1]:
            return math.nan
        points = [start, *rounds]
        scores = np.array([self.scores.get((task, r), math.nan) for r in points])
        steps = np.array([r[1] for r in points], dtype=np.float64)
        area = float(np.sum(np.diff(steps) * (scores[1:] + scores[:-1]) / 2.0))
        return area / (rounds[-1][1] - start[1])

    def missing(self) -> list[MissingEvaluation]:
        """Every round a task has no record at, and every closing round nobody has."""
        gaps = [
            MissingEvaluation(task, block, step, end)
            for block, step, end in self.rounds
            for task in range(self.num_tasks)
            if (task, (block, step, end)) not in self.scores
        ]
        present = {r[0] for r in self.rounds if r[2]}
        for block in range(-1, self.num_blocks):
            if block not in present:
                gaps.extend(
                    MissingEvaluation(task, block, None, True) for task in range(self.num_tasks)
                )
        return gaps


class _Schedule:
    """The training schedule with each task's first and last training block."""

    def __init__(self, schedule: Sequence[int], num_tasks: int) -> None:
        if len(schedule) == 0:
            raise ValueError("schedule is empty: a run has at least one training block")
        for block, task in enumerate(schedule):
            if not 0 <= task < num_tasks:
                raise ValueError(
                    f"schedule[{block}] = {task}, outside task indices 0..{num_tasks - 1}"
                )
        self.blocks = tuple(int(t) for t in schedule)
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        for block, task in enumerate(self.blocks):
            self.first.setdefault(task, block)
            self.last[task] = block

    @property
    def final_task(self) -> int:
        """The task of the last block."""
        return self.blocks[-1]

    def first_block(self, task: int) -> float:
        """First block training ``task``; ``inf`` for a task never trained."""
        return self.first.get(task, math.inf)

    def blocks_of(self, task: int) -> list[int]:
        """Every block that trains ``task``."""
        return [b for b, t in enumerate(self.blocks) if t == task]


def _prepare(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> tuple[_Curves, _Schedule]:
    """Validate the schedule, then the records against it."""
    sched = _Schedule(schedule, num_tasks)
    return _Curves(records, len(sched.blocks), num_tasks, sched.blocks), sched


def _nan_vector(num_tasks: int) -> FloatArray:
    return np.full(num_tasks, np.nan, dtype=np.float64)


def _check_window(end_window: int) -> None:
    if end_window < 1:
        raise ValueError(f"end_window must be >= 1, got {end_window}")


# --- Continual World ------------------------------------------------------------------
def _trained_rounds(curves: _Curves) -> list[_Round]:
    """Rounds logged while some task trains (Continual World logs no row before training)."""
    return [r for r in curves.rounds if r[0] >= 0]


def _cw_final(curves: _Curves) -> FloatArray:
    last = _trained_rounds(curves)[-CW_END_EVALUATIONS:]
    return np.array([curves.mean_over(j, last) for j in range(curves.num_tasks)])


def _cw_active_rounds(curves: _Curves, sched: _Schedule, task: int) -> list[_Round]:
    blocks = set(sched.blocks_of(task))
    return [r for r in curves.rounds if r[0] in blocks]


def _cw_forgetting(curves: _Curves, sched: _Schedule, final: FloatArray) -> MetricResult:
    values = _nan_vector(curves.num_tasks)
    for task in sched.last:
        active = _cw_active_rounds(curves, sched, task)[-CW_END_EVALUATIONS:]
        values[task] = curves.mean_over(task, active) - final[task]
    return MetricResult(values, nan_mean(values))


def _cw_auc(curves: _Curves, sched: _Schedule) -> FloatArray:
    values = _nan_vector(curves.num_tasks)
    for task in sched.last:
        values[task] = curves.mean_over(task, _cw_active_rounds(curves, sched, task))
    return values


# --- GEM --------------------------------------------------------------------------------
def _gem_applies(sched: _Schedule, num_tasks: int) -> bool:
    return sched.blocks == tuple(range(num_tasks))


def _gem_transfer(matrix: FloatArray) -> tuple[MetricResult, MetricResult]:
    """GEM's ``bwt`` and ``fwt`` per task from ``R`` (block ``i`` trains task ``i``)."""
    n = matrix.shape[1]
    bwt = np.array([matrix[n, i] - matrix[i + 1, i] for i in range(n)])
    fwt = np.array([0.0] + [matrix[i, i] - matrix[0, i] for i in range(1, n)])
    # GEM divides by all N tasks; a NaN anywhere makes its torch mean NaN too.
    return MetricResult(bwt, float(bwt.mean())), MetricResult(fwt, float(fwt.mean()))


# --- CORA -------------------------------------------------------------------------------
def _cora_isolated_forgetting(curves: _Curves, sched: _Schedule, end_window: int) -> MetricResult:
    values = np.full((curves.num_tasks, curves.num_blocks), np.nan, dtype=np.float64)
    for block, trained in enumerate(sched.blocks):
        for task in range(curves.num_tasks):
            if task != trained and sched.first_block(task) < block:
                start = curves.closing_score(task, block - 1)
                values[task, block] = start - curves.end_of_window(task, block, end_window)
    return MetricResult(values, nan_mean(values))


def _cora_zero_shot_transfer(curves: _Curves, sched: _Schedule, end_window: int) -> MetricResult:
    values = np.full((curves.num_tasks, curves.num_blocks), np.nan, dtype=np.float64)
    for block in range(curves.num_blocks):
        for task in range(curves.num_tasks):
            if sched.first_block(task) > block:
                before = curves.end_of_window(task, block - 1, end_window)
                values[task, block] = curves.end_of_window(task, block, end_window) - before
    return MetricResult(values, nan_mean(values))


# --- l2rl's own -------------------------------------------------------------------------
def _l2rl_final(curves: _Curves, end_window: int) -> FloatArray:
    last = curves.rounds[-end_window:]
    return np.array([curves.mean_over(j, last) for j in range(curves.num_tasks)])


def _l2rl_forgetting(
    curves: _Curves, sched: _Schedule, final: FloatArray, end_window: int
) -> MetricResult:
    values = _nan_vector(curves.num_tasks)
    for task, last in sched.last.items():
        if task != sched.final_task:
            values[task] = curves.end_of_window(task, last, end_window) - final[task]
    return MetricResult(values, nan_mean(values))


def _first_window_auc(curves: _Curves, sched: _Schedule) -> FloatArray:
    values = _nan_vector(curves.num_tasks)
    for task, first in sched.first.items():
        values[task] = curves.window_auc(task, first)
    return values


def _matrix(curves: _Curves) -> FloatArray:
    matrix = np.full((curves.num_blocks + 1, curves.num_tasks), np.nan, dtype=np.float64)
    for (task, block), record in curves.closing.items():
        matrix[block + 1, task] = record.score
    return matrix


def _transfer_from_auc(auc: FloatArray, auc_ref: FloatArray) -> FloatArray:
    values = _nan_vector(auc.shape[0])
    for task, (own, ref) in enumerate(zip(auc, auc_ref, strict=True)):
        if not math.isnan(own) and not math.isnan(ref) and 1.0 - ref > _AUC_REF_ONE_TOL:
            values[task] = (own - ref) / (1.0 - ref)
    return values


def _reference_curves(
    reference: Mapping[int, Sequence[EvalRecord]], num_tasks: int
) -> dict[int, _Curves]:
    """Each task's single-task reference run as validated curves."""
    curves: dict[int, _Curves] = {}
    for task, records in reference.items():
        if not 0 <= task < num_tasks:
            raise ValueError(f"reference given for task {task}, outside 0..{num_tasks - 1}")
        try:
            curves[task] = _Curves(records, num_blocks=1, num_tasks=1, schedule=(0,))
        except ValueError as error:
            raise ValueError(
                f"reference run for task {task} is not a single-task run: {error}"
            ) from error
    return curves


def reference_auc(
    reference: Mapping[int, Sequence[EvalRecord]], num_tasks: int
) -> tuple[FloatArray, FloatArray]:
    """``AUC^ref`` per task from single-task reference runs: ``(l2rl trapezoid, CW mean)``.

    ``reference[i]`` holds the records of the run that trained task ``i`` alone: one block,
    ``eval_task == 0``. Tasks without a reference get NaN.

    Raises:
        ValueError: a key is not a task index, or a reference run is not single-task.
    """
    trapezoid, plain = _nan_vector(num_tasks), _nan_vector(num_tasks)
    for task, curves in _reference_curves(reference, num_tasks).items():
        trapezoid[task] = curves.window_auc(0, 0)
        plain[task] = curves.mean_over(0, curves.block_rounds(0))
    return trapezoid, plain


# --- public functions -------------------------------------------------------------------
def performance_matrix(
    records: Iterable[EvalRecord], num_blocks: int, num_tasks: int
) -> FloatArray:
    """The performance matrix ``R``, shape ``(num_blocks + 1, num_tasks)``.

    Row 0 holds the pre-training scores, row ``k`` the scores of the evaluations closing
    block ``k - 1``; NaN where an evaluation is missing.

    Raises:
        ValueError: a record's task or block is out of range, or a task has two closing
            evaluations in one block.
    """
    return _matrix(_Curves(records, num_blocks, num_tasks))


def missing_evaluations(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> list[MissingEvaluation]:
    """The evaluations a run lacks (see the module docstring), in round order."""
    return _prepare(records, schedule, num_tasks)[0].missing()


def cw_forgetting(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> MetricResult:
    """Continual World's ``F_i = p_i(end) - p_i(T)`` (5-round means) per task, and its mean.

    Defined for every trained task, the final one included; the mean is over trained tasks.
    """
    curves, sched = _prepare(records, schedule, num_tasks)
    return _cw_forgetting(curves, sched, _cw_final(curves))


def l2rl_forgetting(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """l2rl's ``F_i = p_i(end of W_{b_i}) - p_i(T)`` over trained tasks but the final one."""
    _check_window(end_window)
    curves, sched = _prepare(records, schedule, num_tasks)
    return _l2rl_forgetting(curves, sched, _l2rl_final(curves, end_window), end_window)


def gem_transfer(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> tuple[MetricResult, MetricResult]:
    """GEM's code: ``(backward transfer, forward transfer)`` per task and means over ``N``.

    Raises:
        ValueError: the schedule is not ``0, 1, ..., N - 1`` (GEM's code assumes it).
    """
    curves, sched = _prepare(records, schedule, num_tasks)
    if not _gem_applies(sched, num_tasks):
        raise ValueError(GEM_SCHEDULE_REASON.format(schedule=list(sched.blocks)))
    return _gem_transfer(_matrix(curves))


def cora_isolated_forgetting(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """CORA ``F_{i<-j} = p_i(start of W_j) - p_i(end of W_j)``, a tasks x blocks matrix."""
    _check_window(end_window)
    return _cora_isolated_forgetting(*_prepare(records, schedule, num_tasks), end_window)


def cora_zero_shot_transfer(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """CORA ``Z_{k<-j} = p_k(end of W_j) - p_k(end of W_{j-1})``, a tasks x blocks matrix."""
    _check_window(end_window)
    return _cora_zero_shot_transfer(*_prepare(records, schedule, num_tasks), end_window)


# --- one run ----------------------------------------------------------------------------
def _frozen(array: FloatArray) -> FloatArray:
    array.setflags(write=False)
    return array


def _json_ready(array: FloatArray) -> Any:
    """Nested lists of floats with NaN replaced by None (JSON has no NaN)."""
    return _none_for_nan(array.tolist())


def _none_for_nan(value: Any) -> Any:
    if isinstance(value, list):
        return [_none_for_nan(item) for item in value]
    return None if math.isnan(value) else value


def _json_scalar(value: float) -> float | None:
    return None if math.isnan(value) else value


class IdleWindow(NamedTuple):
    """A training window in which some learners made no optimiser step."""

    block: int
    task: str
    learners: tuple[str, ...]

    def describe(self) -> str:
        """One line for people: which window, which learners."""
        names = ", ".join(repr(n) for n in self.learners)
        return (
            f"no optimiser step of learner {names} in window {self.block} ({self.task}): "
            "its scores there are an untrained learner's"
        )


@dataclass(frozen=True, eq=False)
class RunMetrics:
    """Every metric of one run (one seed). Arrays are read-only; NaN marks undefined values.

    Attributes:
        schedule: the task trained in each block.
        num_tasks: number of distinct tasks.
        end_window: evaluations averaged by l2rl's and CORA's end-of-window scores.
        headline: each key of :data:`HEADLINE_METRICS` and its value (NaN if undefined).
        not_applicable: headline keys that cannot be measured in this run, with the reason.
        missing: the evaluations the run lacks (:func:`missing_evaluations`).
        performance_matrix: ``R``, shape ``(blocks + 1, tasks)``.
        per_task: per-task arrays by name: ``cw_final_score``, ``cw_forgetting``,
            ``cw_auc``, ``cw_auc_reference``, ``cw_forward_transfer``, ``gem_backward_transfer``,
            ``gem_forward_transfer``, ``l2rl_final_score``, ``l2rl_forgetting``, ``l2rl_auc``,
            ``l2rl_auc_reference``, ``l2rl_forward_transfer``.
        cora_isolated_forgetting_matrix: ``F_{i<-j}``, shape ``(tasks, blocks)``.
        cora_zero_shot_transfer_matrix: ``Z_{k<-j}``, shape ``(tasks, blocks)``.
        windows_without_updates: training windows in which some learner never updated
            (its scores there are an untrained learner's); filled from the run's files by
            :func:`l2rl.experiment.metrics_of_run`.
        detection: in a run whose detector inferred task changes, how well they match the
            true boundaries (:func:`l2rl.metrics_detection.detection_figures`); else None.
    """

    schedule: tuple[int, ...]
    num_tasks: int
    end_window: int
    headline: Mapping[str, float]
    not_applicable: Mapping[str, str]
    missing: tuple[MissingEvaluation, ...]
    performance_matrix: FloatArray
    per_task: Mapping[str, FloatArray]
    cora_isolated_forgetting_matrix: FloatArray
    cora_zero_shot_transfer_matrix: FloatArray
    windows_without_updates: tuple[IdleWindow, ...] = ()
    detection: Mapping[str, Any] | None = None

    def __getitem__(self, key: str) -> float:
        """The headline value ``key`` (NaN if undefined)."""
        return self.headline[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: headline scalars at top level, arrays as nested lists, NaN -> None."""
        data: dict[str, Any] = {key: _json_scalar(v) for key, v in self.headline.items()}
        data.update(
            not_applicable=dict(self.not_applicable),
            missing_evaluations={
                "count": len(self.missing),
                "evaluations": [m._asdict() for m in self.missing],
            },
            schedule=list(self.schedule),
            num_tasks=self.num_tasks,
            end_window=self.end_window,
            performance_matrix=_json_ready(self.performance_matrix),
            per_task={key: _json_ready(values) for key, values in self.per_task.items()},
            cora_isolated_forgetting_matrix=_json_ready(self.cora_isolated_forgetting_matrix),
            cora_zero_shot_transfer_matrix=_json_ready(self.cora_zero_shot_transfer_matrix),
            windows_without_updates=[
                {"block": w.block, "task": w.task, "learners": list(w.learners)}
                for w in self.windows_without_updates
            ],
        )
        if self.detection is not None:
            data["detection"] = {
                k: _json_scalar(v) if isinstance(v, float) else v for k, v in self.detection.items()
            }
        return data


def summarize_run(
    records: Iterable[EvalRecord],
    schedule: Sequence[int],
    num_tasks: int,
    reference: Mapping[int, Sequence[EvalRecord]] | None = None,
    end_window: int = 1,
    untrained_task_heads: bool = False,
) -> RunMetrics:
    """Compute every metric of one run.

    Args:
        records: the run's evaluation records.
        schedule: the task trained in each block.
        num_tasks: number of distinct tasks.
        reference: single-task reference records per task (forward transfer); None: not
            applicable.
        end_window: rounds averaged by l2rl's and CORA's end-of-window and final scores.
        untrained_task_heads: the agent acts on each task through a head of its own that is
            untrained until the task trains: zero-shot transfer is not applicable.

    Raises:
        ValueError: empty or out-of-range schedule, a record outside the tasks or blocks,
            duplicate evaluations, ``end_window < 1``, or a malformed reference run.
    """
    _check_window(end_window)
    curves, sched = _prepare(records, schedule, num_tasks)
    matrix = _matrix(curves)
    not_applicable: dict[str, str] = {}

    cw_final = _cw_final(curves)
    cw_forget = _cw_forgetting(curves, sched, cw_final)
    l2rl_final = _l2rl_final(curves, end_window)
    l2rl_forget = _l2rl_forgetting(curves, sched, l2rl_final, end_window)
    trapezoid_ref, plain_ref = reference_auc(reference or {}, num_tasks)
    cw_auc, l2rl_auc = _cw_auc(curves, sched), _first_window_auc(curves, sched)
    cw_transfer = _transfer_from_auc(cw_auc, plain_ref)
    l2rl_transfer = _transfer_from_auc(l2rl_auc, trapezoid_ref)
    if reference is None:
        not_applicable["cw_forward_transfer"] = NO_REFERENCE_REASON
        not_applicable["l2rl_forward_transfer"] = NO_REFERENCE_REASON
    if _gem_applies(sched, num_tasks):
        gem_bwt, gem_fwt = _gem_transfer(matrix)
    else:
        nan = MetricResult(_nan_vector(num_tasks), math.nan)
        gem_bwt = gem_fwt = nan
        reason = GEM_SCHEDULE_REASON.format(schedule=list(sched.blocks))
        not_applicable["gem_backward_transfer"] = not_applicable["gem_forward_transfer"] = reason
    isolated = _cora_isolated_forgetting(curves, sched, end_window)
    zero_shot = _cora_zero_shot_transfer(curves, sched, end_window)
    if untrained_task_heads:
        not_applicable["cora_zero_shot_transfer"] = UNTRAINED_HEADS_REASON
        not_applicable.setdefault("gem_forward_transfer", UNTRAINED_HEADS_REASON)
    headline = {
        "cw_average_performance": nan_mean(cw_final),
        "cw_forgetting": cw_forget.mean,
        "cw_forward_transfer": nan_mean(cw_transfer),
        "gem_backward_transfer": gem_bwt.mean,
        "gem_forward_transfer": gem_fwt.mean,
        "cora_isolated_forgetting": isolated.mean,
        "cora_zero_shot_transfer": zero_shot.mean,
        "l2rl_average_performance": nan_mean(l2rl_final),
        "l2rl_forgetting": l2rl_forget.mean,
        "l2rl_forward_transfer": nan_mean(l2rl_transfer),
    }
    for key in not_applicable:
        headline[key] = math.nan
    per_task = {
        "cw_final_score": cw_final,
        "cw_forgetting": cw_forget.values,
        "cw_auc": cw_auc,
        "cw_auc_reference": plain_ref,
        "cw_forward_transfer": cw_transfer,
        "gem_backward_transfer": gem_bwt.values,
        "gem_forward_transfer": gem_fwt.values,
        "l2rl_final_score": l2rl_final,
        "l2rl_forgetting": l2rl_forget.values,
        "l2rl_auc": l2rl_auc,
        "l2rl_auc_reference": trapezoid_ref,
        "l2rl_forward_transfer": l2rl_transfer,
    }
    return RunMetrics(
        schedule=sched.blocks,
        num_tasks=num_tasks,
        end_window=end_window,
        headline=headline,
        not_applicable=not_applicable,
        missing=tuple(curves.missing()),
        performance_matrix=_frozen(matrix),
        per_task={key: _frozen(values) for key, values in per_task.items()},
        cora_isolated_forgetting_matrix=_frozen(isolated.values),
        cora_zero_shot_transfer_matrix=_frozen(zero_shot.values),
    )
