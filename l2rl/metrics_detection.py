"""How well a task-change detector found the true boundaries: pure functions.

The true changes are the schedule's window starts after the first whose task differs from
the window before (a window that repeats its predecessor's task is no change). The
detections are the inferred task changes a run made (``task_changes.jsonl``), each with its
step and the inferred id it opened.

Matching: a true change at step ``s_b`` is *detected* by the first detection in
``[s_b, s_{b+1})`` (until the next true change, or the run's end); its **delay** is that
detection's step minus ``s_b``. Every other detection is a **false alarm** (those before the
first change, and any after the first in an interval). A true change without a detection
in its interval is **missed**. False alarms are also given per 10^5 env steps of the run
(METHODS.md's rate).

Task-id accuracy (only meaningful when the detector recognises returns to earlier tasks):
each true task is identified with the inferred id that was open when it was first
trained (id 0 for the first window's task; else the id of the detection that detected its
first window), and a detection of a later change *into* that task is correct when it opened
that id; a detection of a change into a task never trained before is correct when it opened
a new id. Accuracy is the fraction of detected changes whose id is correct (NaN without
detected changes).

>>> d = detection_figures([(0, 100), (1, 100), (0, 100)], [(130, 1), (150, 2), (260, 0)])
>>> d["delays"], d["false_alarms"], d["missed"], d["task_id_accuracy"]
([30, 60], 1, 0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def true_changes(schedule: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(step, task)`` of every window start whose task differs from the previous
    window's; ``schedule`` is ``(task index, steps)`` per window."""
    changes, step = [], 0
    for block, (task, steps) in enumerate(schedule):
        if block > 0 and task != schedule[block - 1][0]:
            changes.append((step, task))
        step += steps
    return changes


def detection_figures(
    schedule: Sequence[tuple[int, int]], detections: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """Delays, false alarms, missed changes and task-id accuracy (module docstring).

    Args:
        schedule: ``(task index, steps)`` of every training window, in order.
        detections: ``(step, inferred id opened)`` of every task change the run made, in
            order.

    Returns:
        ``true_changes``, ``detections`` (counts), ``delays`` (steps, one per detected
        change, in order), ``mean_delay`` (NaN if none), ``false_alarms``,
        ``false_alarms_per_1e5_steps``, ``missed``, ``task_id_accuracy``.
    """
    changes = true_changes(schedule)
    end = sum(steps for _, steps in schedule)
    bounds = [step for step, _ in changes] + [end]
    delays: list[int] = []
    matched: list[tuple[int, int]] = []  # (true task changed into, id opened)
    used = set()
    for k, (start, task) in enumerate(changes):
        inside = [i for i, (s, _) in enumerate(detections) if start <= s < bounds[k + 1]]
        if inside:
            first = inside[0]
            used.add(first)
            delays.append(detections[first][0] - start)
            matched.append((task, detections[first][1]))
    identity = {schedule[0][0]: 0} if schedule else {}
    correct = 0
    for task, opened in matched:
        expected = identity.get(task)
        known_ids = set(identity.values())
        if expected is None:
            correct += opened not in known_ids
            identity[task] = opened
        else:
            correct += opened == expected
    return {
        "true_changes": len(changes),
        "detections": len(detections),
        "delays": delays,
        "mean_delay": sum(delays) / len(delays) if delays else math.nan,
        "false_alarms": len(detections) - len(used),
        "false_alarms_per_1e5_steps": (len(detections) - len(used)) * 1e5 / end
        if end
        else math.nan,
        "missed": len(changes) - len(delays),
        "task_id_accuracy": correct / len(matched) if matched else math.nan,
    }
