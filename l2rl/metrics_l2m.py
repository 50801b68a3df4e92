"""L2M lifelong-learning metrics of one run as pure functions of its log.

The spec is New et al., *Lifelong Learning Metrics* (arXiv 2201.08278, DARPA L2M); JHU APL's
``l2metrics`` 3.1.0 is its reference implementation, and where the two differ this module
follows ``l2metrics`` (each function says where). Every figure here equals what
``l2metrics`` computes on the same log with its preprocessing off (``--smoothing-method none
--normalization-method none``, no outlier clamping; ``tests/extras/test_l2metrics_crosscheck.py``
checks this to 1e-9).

The log
-------
An L2M log is a sequence of *experiences* (for RL, episodes), each in a *block*: a learning
block (``train``) or an evaluation block (``test``), of subtype ``wake`` or ``sleep``. A
:class:`Regime` is a maximal run of consecutive experiences sharing block number, block type,
subtype and task (``l2logger.util.fill_regime_num``); metrics index regimes by their position.
:func:`run_regimes` builds the log of an l2rl run, the one :mod:`l2rl.logging.l2logger`
writes in the l2logger format:

* before training, an evaluation block: the round before training, one regime per task;
* per training window ``k``: a learning block ``2k + 1`` holding the window's finished
  training episodes, then an evaluation block ``2k + 2`` holding the round closing window
  ``k``, one regime per task, each of its evaluation episodes one experience; in a
  task-aware run with a sleep phase, the round after the window's sleep follows in the
  same block as ``sleep`` regimes (a sleep at a detected change, inside a window, has no
  round of its own).

The performance of an experience is its undiscounted return (l2metrics' default ``reward``
column), not l2rl's normalised score, which single episodes do not have. Evaluation rounds
inside a window are left out: L2M's evaluation blocks sit between learning blocks, and
splitting a window at them would make one window look like several learning blocks.

Per-regime quantities
---------------------
* Terminal performance ``TP(r)``: the mean of an evaluation regime's values; of a learning
  regime, the mean of its last 10% (values from index ``int(0.9 n)`` on).
* Saturation ``(S(r), E(r))``: the maximum of the smoothed learning curve and the first index
  that reaches it. l2metrics smooths here even with preprocessing off: a flat moving average
  of width ``w = min(int(0.2 n), 100)`` (none when ``w < 3``) over the curve extended by
  reflection at both ends, value ``i`` being the mean of the ``w`` values ending ``w // 2 - 1``
  after index ``i`` (:func:`smoothed`).

Sleep
-----
When any regime is a ``sleep`` one, performance maintenance and transfer ignore the ``wake``
evaluation regimes (L2RLCF logs its post-sleep evaluations as ``sleep``, l2metrics' rule).

Task-level values are aggregated into a *lifetime* value by the mean over tasks (l2metrics'
default ``--aggregation-method mean``), NaN values left out; the keys of
:attr:`L2MMetrics.lifetime` are l2metrics' own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise, permutations
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from l2rl.metrics import nan_mean

if TYPE_CHECKING:
    from l2rl.types import EpisodeRecord, EvalRecord

FloatArray = npt.NDArray[np.float64]

TRAIN = "train"
TEST = "test"
WAKE = "wake"
SLEEP = "sleep"

TERMINAL_FRACTION = 0.1
"""Share of a learning regime's last values averaged by its terminal performance."""

SATURATION_FLOOR = 0.2
"""Sample efficiency is 0 when a task saturates below this fraction of its expert's."""

PERFORMANCE_MAINTENANCE = ("perf_maintenance_mrlep", "perf_maintenance_mrtlp")
TRANSFER = (
    "forward_transfer_ratio",
    "backward_transfer_ratio",
    "forward_transfer_contrast",
    "backward_transfer_contrast",
)
L2M_METRICS: tuple[str, ...] = (
    *PERFORMANCE_MAINTENANCE,
    *TRANSFER,
    "perf_recovery",
    "ste_rel_perf",
    "sample_efficiency",
)
"""The lifetime figures of :class:`L2MMetrics`, in report order (l2metrics' names)."""

NO_STE_REASON = "no single-task expert learning curves (reference runs' training episodes)"


class Regime(NamedTuple):
    """Consecutive experiences of one block, block type, subtype and task.

    Attributes:
        block_num: the block's number in the log (non-decreasing).
        block_type: ``train`` (learning) or ``test`` (evaluation).
        block_subtype: ``wake`` or ``sleep``.
        task: the task's name as l2metrics reads it (lower case).
        exp_nums: each experience's number in the log (increasing).
        values: each experience's performance (its return).
    """

    block_num: int
    block_type: str
    block_subtype: str
    task: str
    exp_nums: tuple[int, ...]
    values: tuple[float, ...]


class Saturation(NamedTuple):
    """The maximum of a smoothed curve and the first experience reaching it (None: empty)."""

    value: float
    experiences: int | None


@dataclass(frozen=True)
class L2MMetrics:
    """The L2M metrics of one run. NaN marks an undefined value.

    Attributes:
        lifetime: each key of :data:`L2M_METRICS` and its mean over tasks.
        per_task: per metric of :data:`L2M_METRICS` but the transfers, each task's value.
        transfer: per transfer metric, ``(trained task, evaluated task)`` and its values in
            log order (the lifetime value averages each pair's first one).
        not_applicable: lifetime keys that cannot be measured in this run, with the reason.
    """

    lifetime: Mapping[str, float]
    per_task: Mapping[str, Mapping[str, float]]
    transfer: Mapping[str, Mapping[tuple[str, str], tuple[float, ...]]]
    not_applicable: Mapping[str, str]


def run_regimes(
    records: Iterable[EvalRecord],
    episodes: Iterable[EpisodeRecord],
    sleep_records: Iterable[EvalRecord] = (),
) -> list[Regime]:
    """The L2M log of a run (module docstring): evaluation blocks from the round before
    training and each window's closing round, learning blocks from its training episodes;
    a window's round after its sleep phase (``sleep_records``, ``sleep_evals.jsonl``) joins
    its evaluation block as ``sleep`` regimes, after the ``wake`` ones.

    Task names are lower-cased (l2metrics lower-cases them on reading). A window without
    finished episodes, or a task without a closing evaluation, has no regime. An evaluation
    record without per-episode returns (older runs) counts as one experience, its mean.

    Raises:
        ValueError: two tasks whose names differ only in case.
    """
    closing: dict[int, list[EvalRecord]] = {}
    names: dict[str, str] = {}
    for record in records:
        _check_name(names, record.eval_task_name)
        if record.block_end:
            closing.setdefault(record.block, []).append(record)
    slept: dict[int, list[EvalRecord]] = {}
    for record in sleep_records:
        _check_name(names, record.eval_task_name)
        slept.setdefault(record.block, []).append(record)
    trained: dict[int, list[EpisodeRecord]] = {}
    for episode in episodes:
        _check_name(names, episode.task)
        trained.setdefault(episode.block, []).append(episode)
    regimes: list[Regime] = []
    counter = iter(range(1 << 62))
    if -1 in closing:
        regimes.extend(_test_regimes(0, closing[-1], counter))
    for block in sorted((set(closing) | set(trained)) - {-1}):
        runs = sorted(trained.get(block, []), key=lambda e: e.global_step)
        if runs:
            values = tuple(float(e.episode_return) for e in runs)
            exps = tuple(next(counter) for _ in values)
            regimes.append(Regime(2 * block + 1, TRAIN, WAKE, runs[0].task.lower(), exps, values))
        regimes.extend(_test_regimes(2 * block + 2, closing.get(block, []), counter))
        regimes.extend(_test_regimes(2 * block + 2, slept.get(block, []), counter, SLEEP))
    return regimes


def _check_name(seen: dict[str, str], name: str) -> None:
    other = seen.setdefault(name.lower(), name)
    if other != name:
        raise ValueError(f"tasks {other!r} and {name!r} differ only in case: l2metrics merges them")


def _test_regimes(
    block_num: int, records: Sequence[EvalRecord], counter: Iterator[int], subtype: str = WAKE
) -> list[Regime]:
    regimes = []
    for record in sorted(records, key=lambda r: r.eval_task):
        values = tuple(record.episode_returns) or (float(record.mean_return),)
        exps = tuple(next(counter) for _ in values)
        regimes.append(
            Regime(block_num, TEST, subtype, record.eval_task_name.lower(), exps, values)
        )
    return regimes


def terminal_performance(regime: Regime) -> float:
    """``TP(r)``: mean of an evaluation regime; mean of a learning regime's last 10%."""
    values = np.asarray(regime.values, dtype=np.float64)
    if values.size == 0:
        return math.nan
    if regime.block_type == TEST:
        return float(np.mean(values))
    return float(np.mean(values[int((1 - TERMINAL_FRACTION) * values.size) :]))


def smoothed(values: Sequence[float]) -> FloatArray:
    """l2metrics' flat moving average (module docstring), same length as ``values``."""
    x = np.asarray(values, dtype=np.float64)
    width = min(int(x.size * 0.2), 100)
    if width < 3:
        return x
    extended = np.pad(x, width - 1, mode="reflect")
    means = np.convolve(extended, np.full(width, 1.0 / width), mode="valid")
    start = math.floor(width / 2 - 1)
    return means[start : start + x.size]


def saturation(values: Sequence[float]) -> Saturation:
    """``(S, E)``: the smoothed curve's maximum and the first index reaching it."""
    curve = smoothed(values)
    if curve.size == 0:
        return Saturation(math.nan, None)
    peak = float(np.max(curve))
    return Saturation(peak, int(np.flatnonzero(curve == peak)[0]))


def _tasks(regimes: Iterable[Regime]) -> list[str]:
    """Task names in order of first appearance."""
    return list(dict.fromkeys(r.task for r in regimes))


def _evaluation_view(regimes: Sequence[Regime]) -> list[tuple[int, Regime]]:
    """Numbered regimes, without the wake evaluations when the log has sleep regimes."""
    numbered = list(enumerate(regimes))
    if any(r.block_subtype == SLEEP for r in regimes):
        return [
            (n, r) for n, r in numbered if not (r.block_type == TEST and r.block_subtype == WAKE)
        ]
    return numbered


def _numbers(view: Sequence[tuple[int, Regime]], task: str, block_type: str) -> list[int]:
    return [n for n, r in view if r.task == task and r.block_type == block_type]


def maintenance_values(regimes: Sequence[Regime], reference: str) -> dict[int, float]:
    """Each evaluation regime's performance maintenance value, by regime number.

    A task's evaluation regime ``t`` counts once the task has been learned and evaluated
    after it (some *post-learning* evaluation regime, the first evaluation after a learning
    regime of the task, lies before ``t``) and ``t`` is not itself post-learning. Its value is
    ``TP(t) - TP(ref)``: ``reference="mrlep"`` takes the most recent post-learning evaluation
    (spec section on performance maintenance), ``"mrtlp"`` the most recent learning regime of
    the task (its terminal learning performance).

    Raises:
        ValueError: ``reference`` is neither ``mrlep`` nor ``mrtlp``.
    """
    if reference not in ("mrlep", "mrtlp"):
        raise ValueError(f"reference must be 'mrlep' or 'mrtlp', got {reference!r}")
    view = _evaluation_view(regimes)
    values: dict[int, float] = {}
    for task in _tasks(r for _, r in view):
        learning, tests = _numbers(view, task, TRAIN), _numbers(view, task, TEST)
        post = [next(t for t in tests if t > x) for x in learning if any(t > x for t in tests)]
        for t in tests:
            if t in post or not any(t > p for p in post):
                continue
            earlier = (
                [p for p in post if p < t]
                if reference == "mrlep"
                else [x for x in learning if x < t]
            )
            values[t] = terminal_performance(regimes[t]) - terminal_performance(
                regimes[earlier[-1]]
            )
    return dict(sorted(values.items()))


def performance_maintenance(regimes: Sequence[Regime], reference: str) -> dict[str, float]:
    """``PM_task``: the mean of the task's :func:`maintenance_values` (tasks that have some).

    Negative values mean forgetting. The spec averages ``TP(t) - TP(ref)`` over the
    evaluations after a task's last learning; l2metrics (followed here) takes every
    evaluation after the task's first post-learning one, relearning included.
    """
    per_regime = maintenance_values(regimes, reference)
    by_task: dict[str, list[float]] = {}
    for number, value in per_regime.items():
        by_task.setdefault(regimes[number].task, []).append(value)
    return {task: float(np.mean(v)) for task, v in by_task.items()}


def transfer_values(
    regimes: Sequence[Regime], direction: str, measure: str
) -> dict[tuple[str, str], tuple[float, ...]]:
    """Transfer from learning a task to another task's performance, per pair, in log order.

    For tasks ``a`` (learned) and ``b`` (evaluated), each learning regime ``x`` of ``a`` that
    lies between two consecutive evaluation regimes ``t1 < x < t2`` of ``b`` gives
    ``TP(t2) / TP(t1)`` (``measure="ratio"``, skipped when ``TP(t1) = 0``) or
    ``(TP(t2) - TP(t1)) / (TP(t1) + TP(t2))`` (``"contrast"``, skipped when the sum is 0).
    Forward transfer uses the learning regimes of ``a`` before ``b`` is first learned (all
    of them if ``b`` never is), backward transfer those after. As in l2metrics, a value is
    keyed by ``t2``: when several pairs reach the same ``t2`` the last pair (in the order of
    ``itertools.permutations`` of the tasks) keeps it.

    Raises:
        ValueError: unknown ``direction`` (``forward``/``backward``) or ``measure``.
    """
    if direction not in ("forward", "backward") or measure not in ("ratio", "contrast"):
        raise ValueError(f"unknown transfer {direction!r} / {measure!r}")
    view = _evaluation_view(regimes)
    by_end: dict[int, tuple[str, float]] = {}
    for task, other in permutations(_tasks(r for _, r in view), 2):
        learning = _numbers(view, task, TRAIN)
        other_learning = _numbers(view, other, TRAIN)
        first = min(other_learning) if other_learning else None
        if direction == "forward":
            chosen = [x for x in learning if first is None or x < first]
        else:
            chosen = [x for x in learning if first is not None and x > first]
        tests = _numbers(view, other, TEST)
        for x in chosen:
            for t1, t2 in pairwise(tests):
                if t1 < x < t2:
                    value = _transfer(
                        terminal_performance(regimes[t1]),
                        terminal_performance(regimes[t2]),
                        measure,
                    )
                    if value is not None:
                        by_end[t2] = (task, value)
    pairs: dict[tuple[str, str], list[float]] = {}
    for end in sorted(by_end):
        task, value = by_end[end]
        pairs.setdefault((task, regimes[end].task), []).append(value)
    return {pair: tuple(values) for pair, values in pairs.items()}


def _transfer(before: float, after: float, measure: str) -> float | None:
    if measure == "ratio":
        return None if before == 0 else after / before
    return None if before + after == 0 else (after - before) / (before + after)


def recovery_times(regimes: Sequence[Regime]) -> dict[int, int]:
    """Experiences each relearning needs to recover, by learning regime number.

    For each wake learning regime of a task after its first, the index of its first value
    at least the terminal performance of the task's previous wake learning regime; the
    regime's length + 1 when none is.
    """
    times: dict[int, int] = {}
    for task in _tasks(regimes):
        learning = [
            n
            for n, r in enumerate(regimes)
            if r.task == task and r.block_type == TRAIN and r.block_subtype == WAKE
        ]
        for previous, current in pairwise(learning):
            target = terminal_performance(regimes[previous])
            reached = np.flatnonzero(np.asarray(regimes[current].values) >= target)
            times[current] = int(reached[0]) if reached.size else len(regimes[current].values) + 1
    return dict(sorted(times.items()))


def performance_recovery(regimes: Sequence[Regime]) -> dict[str, float]:
    """``PR_task = -slope`` of the Theil-Sen line through the task's recovery times (in
    relearning order), for tasks with at least two; none unless the run has at least two
    recovery times. Positive: recovery gets faster."""
    times = recovery_times(regimes)
    if len(times) <= 1:
        return {}
    by_task: dict[str, list[int]] = {}
    for number, value in times.items():
        by_task.setdefault(regimes[number].task, []).append(value)
    return {task: -theil_sen_slope(y) for task, y in by_task.items() if len(y) > 1}


def theil_sen_slope(y: Sequence[float]) -> float:
    """The median of the slopes ``(y_j - y_i) / (j - i)`` over all pairs ``i < j``."""
    values = np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(values.size, k=1)
    return float(np.median((values[j] - values[i]) / (j - i)))


def _learning(regimes: Sequence[Regime], task: str) -> tuple[list[int], list[float]]:
    """The task's wake learning experiences, concatenated: experience numbers and values."""
    exps: list[int] = []
    values: list[float] = []
    for r in regimes:
        if r.task == task and r.block_type == TRAIN and r.block_subtype == WAKE:
            exps.extend(r.exp_nums)
            values.extend(r.values)
    return exps, values


def _check_experts(experts: Mapping[str, Sequence[Sequence[float]]]) -> None:
    for task, curves in experts.items():
        if any(len(curve) == 0 for curve in curves):
            raise ValueError(f"an expert learning curve of task {task!r} is empty")


def ste_relative_performance(
    regimes: Sequence[Regime], experts: Mapping[str, Sequence[Sequence[float]]]
) -> dict[str, float]:
    """``RP_task``: per single-task expert (STE) learning curve of the task, the sum of the
    task's wake learning values over the first ``m`` experiences divided by the expert's sum
    over its first ``m``, ``m`` the shorter length; the mean over experts.

    The spec compares areas under the two learning curves; l2metrics' default
    (``--ste-averaging-method metrics``, followed here) averages the per-expert ratios.
    """
    _check_experts(experts)
    result: dict[str, float] = {}
    for task in _tasks(regimes):
        _, values = _learning(regimes, task)
        if not values or not experts.get(task):
            continue
        ratios = []
        for curve in experts[task]:
            m = min(len(values), len(curve))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios.append(float(np.float64(np.sum(values[:m])) / np.float64(np.sum(curve[:m]))))
        result[task] = nan_mean(ratios)
    return result


def sample_efficiency(
    regimes: Sequence[Regime], experts: Mapping[str, Sequence[Sequence[float]]]
) -> dict[str, float]:
    """``SE_task = (S / S_ste) * (E_ste / E)``, the task's wake learning curve's saturation
    ``(S, E)`` against each expert's ``(S_ste, E_ste)`` (:func:`saturation`), mean over experts.

    As in l2metrics: a task whose curve peaks at its first experience (``E = 0``) has none;
    an expert with ``E_ste = 0`` is skipped (an empty curve is an error: l2metrics cannot
    store an expert without learning experiences); the value is 0 when ``S < 0.2 S_ste`` or the
    least-squares line through the task's (experience number, value) points falls.
    """
    _check_experts(experts)
    result: dict[str, float] = {}
    for task in _tasks(regimes):
        exps, values = _learning(regimes, task)
        if not values or not experts.get(task):
            continue
        task_sat = saturation(values)
        if not task_sat.experiences:  # peaks at once (a single value does too)
            continue
        # At least two values here, so the line is determined.
        falling = np.polyfit(np.asarray(exps, np.float64), np.asarray(values), 1)[0] < 0
        efficiencies = []
        for curve in experts[task]:
            expert = saturation(curve)
            if not expert.experiences:
                continue
            if task_sat.value < expert.value * SATURATION_FLOOR or falling:
                efficiencies.append(0.0)
            else:
                efficiencies.append(
                    (task_sat.value / expert.value) * (expert.experiences / task_sat.experiences)
                )
        result[task] = nan_mean(efficiencies)
    return result


def summarize_l2m(
    regimes: Sequence[Regime], experts: Mapping[str, Sequence[Sequence[float]]] | None = None
) -> L2MMetrics:
    """Every L2M metric of one run's log; ``experts``: each task's STE learning curves."""
    per_task: dict[str, Mapping[str, float]] = {
        "perf_maintenance_mrlep": performance_maintenance(regimes, "mrlep"),
        "perf_maintenance_mrtlp": performance_maintenance(regimes, "mrtlp"),
        "perf_recovery": performance_recovery(regimes),
        "ste_rel_perf": ste_relative_performance(regimes, experts or {}),
        "sample_efficiency": sample_efficiency(regimes, experts or {}),
    }
    transfer = {
        key: transfer_values(regimes, key.split("_")[0], key.split("_")[-1]) for key in TRANSFER
    }
    lifetime = {key: nan_mean(list(values.values())) for key, values in per_task.items()}
    lifetime.update(
        {key: nan_mean([v[0] for v in pairs.values()]) for key, pairs in transfer.items()}
    )
    not_applicable = {}
    if not any(experts.values() if experts else ()):
        not_applicable = {"ste_rel_perf": NO_STE_REASON, "sample_efficiency": NO_STE_REASON}
    return L2MMetrics(
        lifetime={key: lifetime[key] for key in L2M_METRICS},
        per_task=per_task,
        transfer=transfer,
        not_applicable=not_applicable,
    )
