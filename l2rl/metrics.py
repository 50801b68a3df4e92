"""Continual-learning metrics as pure functions of evaluation records (DESIGN.md section 5).

Nothing here runs inside the training loop: every function reads a sequence of
:class:`~l2rl.types.EvalRecord` and the training schedule and returns numbers.

Conventions
-----------
* ``schedule`` is the task index trained in each block (training window), in order:
  ``[0, 1, 2]`` for a plain sequence, ``[0, 1, 0, 1]`` for a cycle. Block ``k`` is window
  ``W_k``; there are ``B = len(schedule)`` blocks.
* A task's curve ``p_j(t)`` is its records (``eval_task == j``) sorted by ``global_step``
  (ties: earlier block first, and a window's closing evaluation last within its block).
* Records with ``block == -1`` are the evaluation before any training. The record with
  ``block == k and block_end`` *closes* window ``k``; at most one per task and block. A
  record's ``trained_task`` must equal ``schedule[block]`` (this catches a wrong schedule).
* ``start of W_k`` is the closing evaluation of block ``k - 1`` (the pre-training
  evaluation for ``k = 0``); a single evaluation, never averaged.
* ``end of W_k`` is the mean of the task's last ``end_window`` evaluations among the records
  of block ``k`` whose step is at most the closing evaluation's step (the closing one
  included). With ``end_window=1`` it is the closing evaluation. If the closing evaluation
  is missing the value is NaN. ``end of W_{-1}`` is the pre-training evaluation.
* ``p_j(T)`` is the mean of the task's last ``end_window`` evaluations of the run.
* The performance matrix ``R`` has ``B + 1`` rows: row 0 holds the pre-training scores and
  row ``k`` the closing scores of block ``k - 1`` (single evaluations, no averaging).
* Means over tasks (or over matrix entries) ignore NaN, like ``np.nanmean``, but return NaN
  without a ``RuntimeWarning`` when nothing is defined. Per-task values are NaN where a metric
  is undefined for that task (never trained, excluded, or an evaluation it needs is missing).

Metrics
-------
* Average performance ``A = mean_j p_j(T)`` over all tasks, trained or not.
* Forgetting (Continual World) ``F_i = p_i(end of W_i) - p_i(T)`` for every trained task
  except the final block's task; a task trained in several windows uses its last one.
* Forward transfer (Continual World) ``FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``.
  ``AUC_i`` integrates task ``i``'s curve with the trapezoidal rule over its *first* window,
  from the start-of-window evaluation to the closing one, divided by the window's length in
  steps. ``AUC_i^ref`` is the same quantity on a single-task reference run (records with
  ``eval_task == 0`` and one block). NaN when ``AUC_i^ref == 1`` or no reference is given.
* Backward transfer (GEM) ``BWT = mean_i (R[B, i] - R[b_i + 1, i])`` over the trained tasks
  except the final block's task, where ``b_i`` is the last block that trained task ``i`` (so
  ``R[b_i + 1]`` is the row closing it). For a plain sequence this is GEM's
  ``mean_{i<N} (R[N, i] - R[i, i])`` in GEM's 1-based numbering.
* CORA isolated forgetting ``F_{i<-j} = p_i(start of W_j) - p_i(end of W_j)`` for each block
  ``j`` and each task ``i`` other than block ``j``'s task that some block before ``j`` trained.
* CORA zero-shot forward transfer ``Z_{k<-j} = p_k(end of W_j) - p_k(end of W_{j-1})`` for
  each block ``j`` and each task ``k`` whose first training block is after ``j`` (a task that
  is never trained counts as not yet seen at every block).

Across seeds, :func:`bootstrap_ci` gives a percentile bootstrap interval of the mean and
:func:`aggregate_seeds` applies it to each headline figure.
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
    "average_performance",
    "forgetting",
    "forward_transfer",
    "backward_transfer",
    "cora_isolated_forgetting",
    "cora_zero_shot_transfer",
)
"""The scalar figures of a run, in report order; keys of :meth:`RunMetrics.to_dict`."""

# An AUC_ref this close to 1 leaves no headroom to normalise by: FT is undefined there.
_AUC_REF_ONE_TOL = 1e-12


class MetricResult(NamedTuple):
    """A metric's values (per task, or tasks x blocks) and their NaN-ignoring mean."""

    values: FloatArray
    mean: float


def nan_mean(values: npt.ArrayLike) -> float:
    """Mean of the non-NaN entries; NaN (and no ``RuntimeWarning``) when there are none."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[~np.isnan(array)]
    return float(defined.mean()) if defined.size else math.nan


class _Curves:
    """Records of one run grouped by evaluated task, validated and sorted once."""

    def __init__(
        self,
        records: Iterable[EvalRecord],
        num_blocks: int,
        num_tasks: int,
        end_window: int,
        schedule: Sequence[int] | None = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if end_window < 1:
            raise ValueError(f"end_window must be >= 1, got {end_window}")
        self.num_blocks = num_blocks
        self.num_tasks = num_tasks
        self.end_window = end_window
        self.curves: list[list[EvalRecord]] = [[] for _ in range(num_tasks)]
        self.closing: dict[tuple[int, int], EvalRecord] = {}
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
            self.curves[record.eval_task].append(record)
            if record.block_end:
                key = (record.eval_task, record.block)
                if key in self.closing:
                    raise ValueError(
                        f"two closing evaluations of task {record.eval_task} "
                        f"in block {record.block}"
                    )
                self.closing[key] = record
        for curve in self.curves:
            # block_end sorts last so the closing evaluation ends its block at a tied step.
            curve.sort(key=lambda r: (r.global_step, r.block, r.block_end))

    def closing_score(self, task: int, block: int) -> float:
        """Score of the evaluation closing ``block`` for ``task`` (NaN if missing)."""
        record = self.closing.get((task, block))
        return math.nan if record is None else record.score

    def end_of_window(self, task: int, block: int) -> float:
        """``p_task(end of W_block)``: mean of the last ``end_window`` evaluations up to closing."""
        closing = self.closing.get((task, block))
        if closing is None:
            return math.nan
        scores = [
            r.score
            for r in self.curves[task]
            if r.block == block and r.global_step <= closing.global_step
        ]
        return float(np.mean(scores[-self.end_window :]))

    def final(self, task: int) -> float:
        """``p_task(T)``: mean of the task's last ``end_window`` evaluations (NaN if none)."""
        scores = [r.score for r in self.curves[task][-self.end_window :]]
        return float(np.mean(scores)) if scores else math.nan

    def window_auc(self, task: int, block: int) -> float:
        """Trapezoidal area under ``task``'s curve over window ``block``, per step of window.

        Runs from the start-of-window evaluation to the closing one; NaN when either is
        missing or the window has no length.
        """
        start = self.closing.get((task, block - 1))
        end = self.closing.get((task, block))
        if start is None or end is None or end.global_step <= start.global_step:
            return math.nan
        points = [start] + [
            r for r in self.curves[task] if r.block == block and r.global_step <= end.global_step
        ]
        steps = np.array([r.global_step for r in points], dtype=np.float64)
        scores = np.array([r.score for r in points], dtype=np.float64)
        area = float(np.sum(np.diff(steps) * (scores[1:] + scores[:-1]) / 2.0))
        return area / (end.global_step - start.global_step)


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
        """The task of the last block, excluded from forgetting and BWT."""
        return self.blocks[-1]

    def first_block(self, task: int) -> float:
        """First block training ``task``; ``inf`` for a task never trained."""
        return self.first.get(task, math.inf)


def _prepare(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int
) -> tuple[_Curves, _Schedule]:
    """Validate the schedule, then the records against it."""
    sched = _Schedule(schedule, num_tasks)
    curves = _Curves(records, len(sched.blocks), num_tasks, end_window, sched.blocks)
    return curves, sched


def _nan_vector(num_tasks: int) -> FloatArray:
    return np.full(num_tasks, np.nan, dtype=np.float64)


def _final_scores(curves: _Curves) -> FloatArray:
    return np.array([curves.final(j) for j in range(curves.num_tasks)], dtype=np.float64)


def _forgetting(curves: _Curves, sched: _Schedule) -> MetricResult:
    values = _nan_vector(curves.num_tasks)
    for task, last in sched.last.items():
        if task != sched.final_task:
            values[task] = curves.end_of_window(task, last) - curves.final(task)
    return MetricResult(values, nan_mean(values))


def _matrix(curves: _Curves) -> FloatArray:
    matrix = np.full((curves.num_blocks + 1, curves.num_tasks), np.nan, dtype=np.float64)
    for (task, block), record in curves.closing.items():
        matrix[block + 1, task] = record.score
    return matrix


def _backward_transfer(curves: _Curves, sched: _Schedule) -> MetricResult:
    matrix = _matrix(curves)
    values = _nan_vector(curves.num_tasks)
    for task, last in sched.last.items():
        if task != sched.final_task:
            values[task] = matrix[-1, task] - matrix[last + 1, task]
    return MetricResult(values, nan_mean(values))


def _first_window_auc(curves: _Curves, sched: _Schedule) -> FloatArray:
    values = _nan_vector(curves.num_tasks)
    for task, first in sched.first.items():
        values[task] = curves.window_auc(task, first)
    return values


def _cora_isolated_forgetting(curves: _Curves, sched: _Schedule) -> MetricResult:
    values = np.full((curves.num_tasks, curves.num_blocks), np.nan, dtype=np.float64)
    for block, trained in enumerate(sched.blocks):
        for task in range(curves.num_tasks):
            if task != trained and sched.first_block(task) < block:
                start = curves.closing_score(task, block - 1)
                values[task, block] = start - curves.end_of_window(task, block)
    return MetricResult(values, nan_mean(values))


def _cora_zero_shot_transfer(curves: _Curves, sched: _Schedule) -> MetricResult:
    values = np.full((curves.num_tasks, curves.num_blocks), np.nan, dtype=np.float64)
    for block in range(curves.num_blocks):
        for task in range(curves.num_tasks):
            if sched.first_block(task) > block:
                before = curves.end_of_window(task, block - 1)
                values[task, block] = curves.end_of_window(task, block) - before
    return MetricResult(values, nan_mean(values))


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
    return _matrix(_Curves(records, num_blocks, num_tasks, end_window=1))


def final_scores(records: Iterable[EvalRecord], num_tasks: int, end_window: int = 1) -> FloatArray:
    """``p_j(T)`` for each task: mean of its last ``end_window`` evaluations (NaN if none)."""
    records = list(records)
    num_blocks = max((r.block for r in records), default=-1) + 1
    return _final_scores(_Curves(records, num_blocks, num_tasks, end_window))


def average_performance(
    records: Iterable[EvalRecord], num_tasks: int, end_window: int = 1
) -> float:
    """``A = mean_j p_j(T)`` over all tasks, ignoring tasks never evaluated (NaN)."""
    return nan_mean(final_scores(records, num_tasks, end_window))


def forgetting(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """Continual World forgetting ``F_i = p_i(end of W_i) - p_i(T)`` per task, and its mean.

    Defined for trained tasks other than the final block's task (last window for tasks
    trained several times); the mean ignores NaN.
    """
    return _forgetting(*_prepare(records, schedule, num_tasks, end_window))


def backward_transfer(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> MetricResult:
    """GEM backward transfer: per task ``R[B, i] - R[b_i + 1, i]``, and its NaN-ignoring mean.

    Defined for trained tasks other than the final block's task; ``b_i`` is the last block
    that trained task ``i``. Uses the performance matrix (single closing evaluations).
    """
    return _backward_transfer(*_prepare(records, schedule, num_tasks, 1))


def first_window_auc(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int
) -> FloatArray:
    """Each trained task's normalised AUC over its first window (NaN for untrained tasks)."""
    return _first_window_auc(*_prepare(records, schedule, num_tasks, 1))


def reference_auc(reference: Mapping[int, Sequence[EvalRecord]], num_tasks: int) -> FloatArray:
    """``AUC^ref`` per task of the main scenario from its single-task reference run.

    ``reference[i]`` holds the records of the run that trained task ``i`` alone: one block,
    ``eval_task == 0``. Tasks without a reference get NaN.

    Raises:
        ValueError: a key is not a task index, or a reference run is not single-task.
    """
    values = _nan_vector(num_tasks)
    for task, records in reference.items():
        if not 0 <= task < num_tasks:
            raise ValueError(f"reference given for task {task}, outside 0..{num_tasks - 1}")
        try:
            curves = _Curves(records, num_blocks=1, num_tasks=1, end_window=1, schedule=(0,))
        except ValueError as error:
            raise ValueError(
                f"reference run for task {task} is not a single-task run: {error}"
            ) from error
        values[task] = curves.window_auc(0, 0)
    return values


def _transfer_from_auc(auc: FloatArray, auc_ref: FloatArray) -> FloatArray:
    values = _nan_vector(auc.shape[0])
    for task, (own, ref) in enumerate(zip(auc, auc_ref, strict=True)):
        if not math.isnan(own) and not math.isnan(ref) and 1.0 - ref > _AUC_REF_ONE_TOL:
            values[task] = (own - ref) / (1.0 - ref)
    return values


def forward_transfer(
    records: Iterable[EvalRecord],
    schedule: Sequence[int],
    num_tasks: int,
    reference: Mapping[int, Sequence[EvalRecord]],
) -> MetricResult:
    """Continual World forward transfer ``FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref)``.

    NaN for a task that is untrained, has no reference, or whose ``AUC_i^ref`` is 1; the
    mean ignores NaN.
    """
    auc = first_window_auc(records, schedule, num_tasks)
    values = _transfer_from_auc(auc, reference_auc(reference, num_tasks))
    return MetricResult(values, nan_mean(values))


def cora_isolated_forgetting(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """CORA ``F_{i<-j} = p_i(start of W_j) - p_i(end of W_j)``, a tasks x blocks matrix.

    Defined where task ``i`` is not block ``j``'s task and was trained before block ``j``;
    the mean is over defined entries.
    """
    return _cora_isolated_forgetting(*_prepare(records, schedule, num_tasks, end_window))


def cora_zero_shot_transfer(
    records: Iterable[EvalRecord], schedule: Sequence[int], num_tasks: int, end_window: int = 1
) -> MetricResult:
    """CORA ``Z_{k<-j} = p_k(end of W_j) - p_k(end of W_{j-1})``, a tasks x blocks matrix.

    Defined where task ``k`` is first trained after block ``j`` (or never); the mean is over
    defined entries.
    """
    return _cora_zero_shot_transfer(*_prepare(records, schedule, num_tasks, end_window))


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


@dataclass(frozen=True, eq=False)
class RunMetrics:
    """Every metric of one run (one seed). Arrays are read-only; NaN marks undefined values.

    Attributes:
        schedule: the task trained in each block.
        num_tasks: number of distinct tasks.
        end_window: evaluations averaged for end-of-window and final scores.
        performance_matrix: ``R``, shape ``(blocks + 1, tasks)``.
        final_scores: ``p_j(T)`` per task.
        forgetting_per_task: ``F_i`` per task.
        auc: ``AUC_i`` over each task's first window.
        auc_reference: ``AUC_i^ref`` (all NaN without a reference).
        forward_transfer_per_task: ``FT_i`` per task.
        backward_transfer_per_task: ``R[B, i] - R[b_i + 1, i]`` per task.
        cora_isolated_forgetting_matrix: ``F_{i<-j}``, shape ``(tasks, blocks)``.
        cora_zero_shot_transfer_matrix: ``Z_{k<-j}``, shape ``(tasks, blocks)``.
        average_performance, forgetting, forward_transfer, backward_transfer,
        cora_isolated_forgetting, cora_zero_shot_transfer: the headline scalars (NaN-ignoring
            means of the arrays above).
    """

    schedule: tuple[int, ...]
    num_tasks: int
    end_window: int
    performance_matrix: FloatArray
    final_scores: FloatArray
    forgetting_per_task: FloatArray
    auc: FloatArray
    auc_reference: FloatArray
    forward_transfer_per_task: FloatArray
    backward_transfer_per_task: FloatArray
    cora_isolated_forgetting_matrix: FloatArray
    cora_zero_shot_transfer_matrix: FloatArray
    average_performance: float
    forgetting: float
    forward_transfer: float
    backward_transfer: float
    cora_isolated_forgetting: float
    cora_zero_shot_transfer: float

    def headline(self) -> dict[str, float]:
        """The scalars named in :data:`HEADLINE_METRICS` (NaN where undefined)."""
        return {key: float(getattr(self, key)) for key in HEADLINE_METRICS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: headline scalars at top level, arrays as nested lists, NaN -> None."""
        data: dict[str, Any] = {key: _json_scalar(v) for key, v in self.headline().items()}
        data.update(
            schedule=list(self.schedule),
            num_tasks=self.num_tasks,
            end_window=self.end_window,
            performance_matrix=_json_ready(self.performance_matrix),
            per_task={
                "final_score": _json_ready(self.final_scores),
                "forgetting": _json_ready(self.forgetting_per_task),
                "auc": _json_ready(self.auc),
                "auc_reference": _json_ready(self.auc_reference),
                "forward_transfer": _json_ready(self.forward_transfer_per_task),
                "backward_transfer": _json_ready(self.backward_transfer_per_task),
            },
            cora_isolated_forgetting_matrix=_json_ready(self.cora_isolated_forgetting_matrix),
            cora_zero_shot_transfer_matrix=_json_ready(self.cora_zero_shot_transfer_matrix),
        )
        return data


def summarize_run(
    records: Iterable[EvalRecord],
    schedule: Sequence[int],
    num_tasks: int,
    reference: Mapping[int, Sequence[EvalRecord]] | None = None,
    end_window: int = 1,
) -> RunMetrics:
    """Compute every metric of one run; ``forward_transfer`` is NaN without ``reference``.

    Raises:
        ValueError: empty or out-of-range schedule, a record outside the tasks or blocks,
            duplicate closing evaluations, ``end_window < 1``, or a malformed reference run.
    """
    curves, sched = _prepare(records, schedule, num_tasks, end_window)
    auc = _first_window_auc(curves, sched)
    auc_ref = reference_auc(reference or {}, num_tasks)
    transfer = _transfer_from_auc(auc, auc_ref)
    final = _final_scores(curves)
    forget = _forgetting(curves, sched)
    bwt = _backward_transfer(curves, sched)
    isolated = _cora_isolated_forgetting(curves, sched)
    zero_shot = _cora_zero_shot_transfer(curves, sched)
    return RunMetrics(
        schedule=sched.blocks,
        num_tasks=num_tasks,
        end_window=end_window,
        performance_matrix=_frozen(_matrix(curves)),
        final_scores=_frozen(final),
        forgetting_per_task=_frozen(forget.values),
        auc=_frozen(auc),
        auc_reference=_frozen(auc_ref),
        forward_transfer_per_task=_frozen(transfer),
        backward_transfer_per_task=_frozen(bwt.values),
        cora_isolated_forgetting_matrix=_frozen(isolated.values),
        cora_zero_shot_transfer_matrix=_frozen(zero_shot.values),
        average_performance=nan_mean(final),
        forgetting=forget.mean,
        forward_transfer=nan_mean(transfer),
        backward_transfer=bwt.mean,
        cora_isolated_forgetting=isolated.mean,
        cora_zero_shot_transfer=zero_shot.mean,
    )


def bootstrap_ci(
    values: Iterable[float | None],
    confidence: float = 0.9,
    resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean: ``(mean, low, high)``.

    NaN and None are dropped first. No defined value gives ``(nan, nan, nan)``; a single
    value ``v`` gives ``(v, v, v)``. Deterministic for a given ``seed``.

    Raises:
        ValueError: ``confidence`` not in (0, 1) or ``resamples < 1``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    array = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if array.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(resamples, array.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return mean, float(low), float(high)


def aggregate_seeds(
    per_seed: Sequence[Mapping[str, float | None]],
    keys: Iterable[str] = HEADLINE_METRICS,
    confidence: float = 0.9,
    resamples: int = 4000,
    seed: int = 0,
) -> dict[str, dict[str, float | int | None]]:
    """Mean and bootstrap interval of each key across seeds (e.g. ``RunMetrics.to_dict()``s).

    Returns ``{key: {"mean", "ci_low", "ci_high", "n"}}`` where ``n`` counts the seeds with a
    defined (non-None, non-NaN) value; undefined statistics are None so the result is
    JSON-ready.

    Raises:
        ValueError: a seed's mapping lacks one of ``keys``.
    """
    result: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        column: list[float | None] = []
        for index, metrics in enumerate(per_seed):
            if key not in metrics:
                raise ValueError(f"seed #{index} has no metric {key!r}")
            column.append(metrics[key])
        mean, low, high = bootstrap_ci(column, confidence, resamples, seed)
        defined = sum(v is not None and not math.isnan(v) for v in column)
        result[key] = {
            "mean": _json_scalar(mean),
            "ci_low": _json_scalar(low),
            "ci_high": _json_scalar(high),
            "n": defined,
        }
    return result
