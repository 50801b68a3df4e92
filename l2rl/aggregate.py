"""Summaries across seeds and methods: Continual World's bootstrap and ``rliable``'s.

Two families, side by side, because they answer different questions:

* **Means with Continual World's interval** (:func:`cw_mean_interval`,
  :func:`cw_forward_transfer_interval`): what Continual World's ``tables.py`` reports, so a
  ``cw_*`` figure can be compared with their tables: the mean over seeds and a 90% percentile
  bootstrap over seeds (4000 resamples drawn after ``np.random.seed(0)``, quantiles with
  midpoint interpolation). Forward transfer is the ratio of seed means per task, averaged
  over tasks, with the method's and the reference's seeds resampled independently.
* **Robust aggregates** from the ``rliable`` package (Agarwal et al., 2021, "Deep RL at the
  Edge of the Statistical Precipice"): the interquartile mean (IQM) over seeds with a
  stratified bootstrap interval, the probability that one method improves on another
  (:func:`probability_of_improvement`), and performance profiles
  (:func:`performance_profiles`). With few seeds a percentile bootstrap undercovers (5 seeds:
  about 78% for a nominal 90%), so tables say how many seeds and which interval they show.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from l2rl.metrics import HEADLINE_METRICS

FloatArray = npt.NDArray[np.float64]

CONFIDENCE = 0.9
"""Interval size of every summary here (Continual World's)."""
CW_RESAMPLES = 4000
"""Bootstrap resamples of Continual World's intervals."""
RLIABLE_RESAMPLES = 2000
"""Stratified bootstrap resamples of the ``rliable`` intervals."""
CW_INTERVAL = "90% percentile bootstrap over seeds (Continual World: 4000 resamples, seed 0)"
IQM_INTERVAL = "90% stratified bootstrap (rliable, 2000 resamples, global NumPy seed 0)"
IQM_KEYS: tuple[str, ...] = ("cw_average_performance", "cw_forgetting")
"""Headline keys :func:`aggregate_seeds` gives an IQM by default: rliable's bootstrap costs
about a second per key, so the summary of every run does not pay it for all ten."""


class Interval(NamedTuple):
    """A point estimate with its interval, and the number of seeds it rests on."""

    estimate: float
    low: float
    high: float
    n: int


_UNDEFINED = Interval(math.nan, math.nan, math.nan, 0)


def _cw_quantiles(statistic: FloatArray) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(statistic, [tail, 1.0 - tail], method="midpoint")
    return float(low), float(high)


def _defined(values: Iterable[float | None]) -> FloatArray:
    array = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[~np.isnan(array)]


def cw_mean_interval(values: Iterable[float | None]) -> Interval:
    """Mean over seeds with Continual World's bootstrap interval (``compute_mean_and_ci``).

    None and NaN values (seeds where the metric is undefined) are dropped first.

    >>> cw_mean_interval([0.5, 0.5, 0.5])
    Interval(estimate=0.5, low=0.5, high=0.5, n=3)
    """
    array = _defined(values)
    if array.size == 0:
        return _UNDEFINED
    rng = np.random.RandomState(0)  # the stream np.random.seed(0) gives their code
    resampled = array[rng.choice(array.size, (CW_RESAMPLES, array.size))].mean(axis=1)
    return Interval(float(array.mean()), *_cw_quantiles(resampled), int(array.size))


def _complete_rows(matrix: FloatArray) -> FloatArray:
    """Columns defined for some seed, then the seeds defined in all of them."""
    matrix = matrix[:, ~np.all(np.isnan(matrix), axis=0)]
    complete: FloatArray = matrix[~np.any(np.isnan(matrix), axis=1)]
    return complete


def _normalized_ft(x: FloatArray, y: FloatArray) -> FloatArray:
    """Continual World's ``normalized_ft`` per task, averaged over tasks (last axis)."""
    ref = y.mean(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):  # a reference at 1: the caller's
        transfer: FloatArray = ((x.mean(axis=-2) - ref) / (1.0 - ref)).mean(axis=-1)
    return transfer


def cw_forward_transfer_interval(
    auc: Sequence[Sequence[float | None]], auc_reference: Sequence[Sequence[float | None]]
) -> Interval:
    """Continual World's forward transfer over seeds and its bootstrap interval.

    ``auc[s][i]`` is seed ``s``'s plain-mean AUC of task ``i`` (``per_task["cw_auc"]``),
    ``auc_reference[r][i]`` the reference runs' (``per_task["cw_auc_reference"]``).
    ``FT_i = (mean_s AUC_si - mean_r AUC^ref_ri) / (1 - mean_r AUC^ref_ri)`` is averaged over
    tasks; the interval resamples method seeds and reference seeds independently. Tasks
    undefined in every seed (never trained) are left out, then seeds missing any task.
    Where the reference's AUC is 1 on a task (in the seeds, or in a bootstrap resample of
    them), the formula divides by zero and forward transfer is undefined (NaN).

    >>> cw_forward_transfer_interval([[0.75], [0.75]], [[0.5], [0.5]])
    Interval(estimate=0.5, low=0.5, high=0.5, n=2)
    """

    def as_matrix(rows: Sequence[Sequence[float | None]]) -> FloatArray:
        return np.array([[math.nan if v is None else v for v in r] for r in rows], np.float64)

    x, y = as_matrix(auc), as_matrix(auc_reference)
    if x.size == 0 or y.size == 0:
        return _UNDEFINED
    keep = ~np.all(np.isnan(x), axis=0) & ~np.all(np.isnan(y), axis=0)
    x, y = _complete_rows(x[:, keep]), _complete_rows(y[:, keep])
    if x.size == 0 or y.size == 0:
        return _UNDEFINED
    rng = np.random.RandomState(0)
    x_resampled = x[rng.choice(len(x), (CW_RESAMPLES, len(x)))]
    y_resampled = y[rng.choice(len(y), (CW_RESAMPLES, len(y)))]
    estimate = float(_normalized_ft(x, y))
    resampled = _normalized_ft(x_resampled, y_resampled)
    if not (math.isfinite(estimate) and np.all(np.isfinite(resampled))):
        return _UNDEFINED  # a reference at 1 leaves no room: their formula divides by zero
    return Interval(estimate, *_cw_quantiles(resampled), len(x))


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for the block, then restore its previous state.

    rliable 1.2's ``StratifiedBootstrap`` and performance-profile bootstrap draw their
    resamples with ``np.random.choice`` (the global generator) whatever ``random_state``
    says, so without this their intervals depend on whatever drew from it before.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _rliable_estimates(score_dict: Mapping[str, Any], statistic: Callable[..., Any]) -> Any:
    from rliable import library  # imported here: it pulls scipy, arch and pandas

    with warnings.catch_warnings(), _global_numpy_seed(0):
        # arch deprecates `random_state`, which rliable 1.2 passes; the stream is the same.
        warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
        return library.get_interval_estimates(
            score_dict,
            statistic,
            reps=RLIABLE_RESAMPLES,
            confidence_interval_size=CONFIDENCE,
            random_state=np.random.RandomState(0),
        )


def iqm_interval(values: Iterable[float | None]) -> Interval:
    """Interquartile mean over seeds with ``rliable``'s stratified bootstrap interval.

    >>> iqm_interval([0.0, 1.0, 1.0, 1.0, 2.0]).estimate
    1.0
    """
    array = _defined(values)
    if array.size == 0:
        return _UNDEFINED
    if array.size == 1:
        return Interval(float(array[0]), float(array[0]), float(array[0]), 1)
    from rliable import metrics

    points, intervals = _rliable_estimates({"x": array[:, None]}, metrics.aggregate_iqm)
    low, high = (float(v) for v in np.ravel(intervals["x"]))
    return Interval(float(points["x"]), low, high, int(array.size))


def probability_of_improvement(scores_x: FloatArray, scores_y: FloatArray) -> Interval:
    """``P(X > Y)`` of two methods' ``(seeds, tasks)`` scores, with its stratified interval.

    The average over tasks of the probability that a random seed of ``X`` scores above a
    random seed of ``Y`` on that task (ties count half), as ``rliable`` defines it.
    """
    from rliable import metrics

    points, intervals = _rliable_estimates(
        {"xy": (np.asarray(scores_x), np.asarray(scores_y))}, metrics.probability_of_improvement
    )
    low, high = (float(v) for v in np.ravel(intervals["xy"]))
    return Interval(float(points["xy"]), low, high, int(np.shape(scores_x)[0]))


def performance_profiles(
    score_dict: Mapping[str, FloatArray], thresholds: FloatArray
) -> dict[str, FloatArray]:
    """Per method, the fraction of ``(seed, task)`` scores above each threshold ``tau``.

    ``rliable``'s score-distribution performance profile: ``score_dict[m]`` has shape
    ``(seeds, tasks)``; the result per method has one value per threshold.
    """
    from rliable import library

    with _global_numpy_seed(0):
        profiles, _ = library.create_performance_profile(
            dict(score_dict), thresholds, reps=RLIABLE_RESAMPLES
        )
    return {name: np.asarray(values, dtype=np.float64) for name, values in profiles.items()}


def _json(value: float) -> float | None:
    return None if math.isnan(value) else value


def aggregate_seeds(
    per_seed: Sequence[Mapping[str, Any]],
    keys: Iterable[str] = HEADLINE_METRICS,
    reference_auc: Sequence[Sequence[float | None]] | None = None,
    iqm_keys: Iterable[str] = IQM_KEYS,
) -> dict[str, dict[str, Any]]:
    """Each headline key across seeds (``RunMetrics.to_dict()`` per seed), JSON-ready.

    Returns ``{key: {"mean", "ci_low", "ci_high", "iqm", "iqm_low", "iqm_high", "n"}}``:
    the mean with Continual World's interval and the IQM with ``rliable``'s; ``n`` counts the
    seeds where the key is defined. ``cw_forward_transfer`` is Continual World's ratio of
    seed means, from each seed's ``per_task["cw_auc"]`` and ``reference_auc`` (the reference
    runs' ``cw_auc_reference`` rows; by default those the seeds carry), and its IQM is None.
    Only ``iqm_keys`` get an IQM (default :data:`IQM_KEYS`); the others' IQM fields are None.

    Raises:
        ValueError: a seed's mapping lacks one of ``keys``.
    """
    result: dict[str, dict[str, Any]] = {}
    robust = set(iqm_keys)
    for key in keys:
        column: list[float | None] = []
        for index, metrics in enumerate(per_seed):
            if key not in metrics:
                raise ValueError(f"seed #{index} has no metric {key!r}")
            column.append(metrics[key])
        if key == "cw_forward_transfer":
            auc = [m["per_task"]["cw_auc"] for m in per_seed if m[key] is not None]
            ref = reference_auc
            if ref is None:
                ref = [m["per_task"]["cw_auc_reference"] for m in per_seed if m[key] is not None]
            mean, iqm = cw_forward_transfer_interval(auc, ref), _UNDEFINED
        else:
            mean = cw_mean_interval(column)
            iqm = iqm_interval(column) if key in robust else _UNDEFINED
        result[key] = {
            "mean": _json(mean.estimate),
            "ci_low": _json(mean.low),
            "ci_high": _json(mean.high),
            "iqm": _json(iqm.estimate),
            "iqm_low": _json(iqm.low),
            "iqm_high": _json(iqm.high),
            "n": mean.n,
        }
    return result
