"""Score bounds of a task family parametrised by one number per task (a gravity, a pole
length): given by the user, or looked up in a table of measured ones.

A task's score is its return scaled linearly from ``[low, high]`` to ``[0, 1]``
(:class:`~l2rl.types.ReturnRange`); families with measured references (``pendulum-gravity``,
``cartpole-continuous``) keep them in a table per parameter value, measured for one episode
length, and let the user give bounds for anything else.

>>> measured = {10.0: (-1200.0, -130.0)}
>>> return_bounds([10.0], "gravity", None, None, 200, 200, measured)
[(-1200.0, -130.0)]
>>> return_bounds([12.0], "gravity", [-1.0], [0.0], 200, 200, measured)
[(-1.0, 0.0)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def check_parameters(values: Sequence[float], what: str) -> None:
    """Each task's parameter must be positive and different from the others'.

    Raises:
        ValueError: otherwise.
    """
    if any(v <= 0 for v in values):
        raise ValueError(f"{what} values must be positive, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} values must be distinct, got {list(values)}")


def return_bounds(
    values: Sequence[float],
    what: str,
    low: Sequence[float] | None,
    high: Sequence[float] | None,
    episode_steps: int,
    measured_steps: int,
    measured: Mapping[float, tuple[float, float]],
) -> list[tuple[float, float]]:
    """The ``(low, high)`` bounds of each task: the given ones, else the measured ones.

    Args:
        values: each task's parameter, in order.
        what: the parameter's name, for messages.
        low, high: the user's bounds (both or neither), one per task.
        episode_steps: the tasks' episode length.
        measured_steps: the episode length ``measured`` was taken with.
        measured: parameter value -> measured ``(low, high)``.

    Raises:
        ValueError: one of ``low``/``high`` without the other, a wrong count, a low not
            below its high, or no given bounds where none are measured (another value or
            episode length).
    """
    if (low is None) != (high is None):
        raise ValueError("give `return_low` and `return_high` together")
    if low is not None and high is not None:
        if not len(low) == len(high) == len(values):
            raise ValueError(
                f"return_low and return_high need one value per {what} ({len(values)}), "
                f"got {len(low)} and {len(high)}"
            )
        pairs = list(zip(low, high, strict=True))
        if any(lo >= hi for lo, hi in pairs):
            raise ValueError(f"each return_low must be below its return_high, got {pairs}")
        return pairs
    if measured and episode_steps != measured_steps:
        raise ValueError(
            f"reference returns were measured for {measured_steps}-step episodes; give "
            f"return_low and return_high for max_episode_steps={episode_steps}"
        )
    unknown = [v for v in values if v not in measured]
    if unknown:
        raise ValueError(
            f"no measured reference returns for {what} values {unknown} (measured: "
            f"{', '.join(f'{v:g}' for v in measured)}); give return_low and return_high"
        )
    return [measured[v] for v in values]
