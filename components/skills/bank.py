"""A skill bank's bookkeeping: validated values, leave-one-skill-out contributions, the
retire and expand rules of SLIM (arXiv 2605.10923), without the framework.

The value of an active skill set ``S`` is what the agent scores when each task is played by
the best member of ``S`` or the learner itself (``LEARNER_SKILL``, always available):

    V(S) = 1/|T| sum_{t in T} max_{k in S + {learner}} v(k, t)

over the tasks ``T`` seen so far, ``v(k, t)`` the validated score of skill ``k`` on task
``t``. Since the set's value is a function of per-skill values under this selection rule,
one validation pass per skill and task gives every leave-one-skill-out value
``V(S without k)`` at once. The marginal contribution ``Delta_k = V(S) - V(S without k)``
is smoothed by an exponential moving average (``ema``) over audits; a skill whose smoothed
contribution is below ``epsilon`` after at least ``n_min`` exposures (episodes it acted
in) is retired, at most one per audit: two equally good skills each have ``Delta = 0``
(either covers for the other), and retiring both would lose what they share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from l2rl.types import LEARNER_SKILL


@dataclass
class SkillRecord:
    """What the bank knows of one skill.

    Attributes:
        task: the task it was made on.
        origin: ``"snapshot"`` (a frozen copy of the learner) or ``"expansion"`` (trained
            on a failing task).
        exposures: episodes it has acted in (training and validation).
        contribution: the EMA of its ``Delta_k``; ``None`` before its first audit.
    """

    task: int
    origin: str
    exposures: int = 0
    contribution: float | None = None


class SkillBank:
    """Active skills, their validated values, and SLIM's lifecycle rules.

    Skill indices are handed out in order and never reused, so a retired skill's index in
    the records stays unambiguous.

    Args:
        capacity: most skills active at once.
        ema: weight of the newest ``Delta_k`` in its moving average (1: no smoothing).
        epsilon: contribution below which a skill may retire.
        n_min: exposures a skill needs before it may retire.

    >>> bank = SkillBank(capacity=2, ema=1.0, epsilon=0.05, n_min=0)
    >>> a = bank.add(task=0, origin="snapshot")
    >>> bank.set_value(a, 0, 1.0); bank.set_value(LEARNER_SKILL, 0, 0.4)
    >>> bank.set_value(LEARNER_SKILL, 1, 0.9)
    >>> round(bank.value([a], tasks=[0, 1]), 3), round(bank.value([], tasks=[0, 1]), 3)
    (0.95, 0.65)
    >>> {k: round(d, 3) for k, d in bank.contributions(tasks=[0, 1]).items()}
    {0: 0.3}
    """

    def __init__(self, capacity: int, ema: float, epsilon: float, n_min: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if not 0.0 < ema <= 1.0:
            raise ValueError(f"ema must be in (0, 1], got {ema}")
        self.capacity = capacity
        self.ema = ema
        self.epsilon = epsilon
        self.n_min = n_min
        self.skills: dict[int, SkillRecord] = {}
        self.values: dict[int, dict[int, float]] = {}
        """Per skill (and ``LEARNER_SKILL``), per task: the last validated score."""
        self.next_index = 0

    @property
    def full(self) -> bool:
        """Whether no skill can join."""
        return len(self.skills) >= self.capacity

    def add(self, task: int, origin: str) -> int:
        """A new active skill; returns its index.

        Raises:
            RuntimeError: the bank is full.
        """
        if self.full:
            raise RuntimeError(f"the skill bank is full ({self.capacity} skills)")
        index = self.next_index
        self.next_index += 1
        self.skills[index] = SkillRecord(task=task, origin=origin)
        return index

    def remove(self, skill: int) -> None:
        """Retire ``skill``: it leaves the active set and its values are dropped."""
        del self.skills[skill]
        self.values.pop(skill, None)

    def set_value(self, skill: int, task: int, value: float) -> None:
        """Record the validated score of ``skill`` (or ``LEARNER_SKILL``) on ``task``."""
        if skill != LEARNER_SKILL and skill not in self.skills:
            raise KeyError(f"skill {skill} is not in the bank")
        self.values.setdefault(skill, {})[task] = float(value)

    def score(self, skill: int, task: int) -> float:
        """The validated score of ``skill`` on ``task``; ``-inf`` if never validated."""
        return self.values.get(skill, {}).get(task, -math.inf)

    def best(self, task: int, members: Iterable[int] | None = None) -> int:
        """The member (default: every active skill) or the learner with the highest
        validated score on ``task``; ties go to the learner, then to the lower index."""
        pool = sorted(self.skills if members is None else members)
        best, best_score = LEARNER_SKILL, self.score(LEARNER_SKILL, task)
        for skill in pool:
            if self.score(skill, task) > best_score:
                best, best_score = skill, self.score(skill, task)
        return best

    def value(self, members: Iterable[int], tasks: Iterable[int]) -> float:
        """``V(S)`` for ``S = members`` (see the module docstring); tasks that nobody
        has been validated on count 0."""
        pool, tasks = list(members), list(tasks)
        if not tasks:
            return 0.0
        total = 0.0
        for task in tasks:
            best = self.score(self.best(task, pool), task)
            total += best if math.isfinite(best) else 0.0
        return total / len(tasks)

    def contributions(self, tasks: Iterable[int]) -> dict[int, float]:
        """``Delta_k = V(S) - V(S without k)`` of every active skill."""
        tasks = list(tasks)
        active = sorted(self.skills)
        whole = self.value(active, tasks)
        return {k: whole - self.value([j for j in active if j != k], tasks) for k in active}

    def audit(self, tasks: Iterable[int]) -> dict[int, float]:
        """Fold this audit's ``Delta_k`` into every skill's moving average; returns the
        averages."""
        for skill, delta in self.contributions(tasks).items():
            record = self.skills[skill]
            previous = record.contribution
            record.contribution = (
                delta if previous is None else (1 - self.ema) * previous + self.ema * delta
            )
        return {k: float(r.contribution or 0.0) for k, r in self.skills.items()}

    def to_retire(self) -> int | None:
        """The skill to retire now: of those with ``contribution < epsilon`` after at
        least ``n_min`` exposures, the one with the lowest contribution (then the oldest);
        ``None`` if none qualifies."""
        due = [
            (record.contribution, skill)
            for skill, record in self.skills.items()
            if record.contribution is not None
            and record.contribution < self.epsilon
            and record.exposures >= self.n_min
        ]
        return min(due)[1] if due else None

    def state_dict(self) -> dict[str, Any]:
        """Skills, values and the next index, as plain values."""
        return {
            "skills": {k: asdict(r) for k, r in self.skills.items()},
            "values": {k: dict(v) for k, v in self.values.items()},
            "next_index": self.next_index,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.skills = {int(k): SkillRecord(**r) for k, r in state["skills"].items()}
        self.values = {
            int(k): {int(t): float(v) for t, v in row.items()} for k, row in state["values"].items()
        }
        self.next_index = int(state["next_index"])


class FailureCounter:
    """SLIM's expansion trigger: the current task's success stayed below ``tau`` for
    ``patience`` (``M``) evaluations in a row.

    >>> counter = FailureCounter(tau=0.5, patience=2)
    >>> [counter.observe(s) for s in (0.1, 0.6, 0.2, 0.3)]
    [False, False, False, True]
    """

    def __init__(self, tau: float, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be positive, got {patience}")
        self.tau = tau
        self.patience = patience
        self.failures = 0

    def observe(self, success: float) -> bool:
        """Count one evaluation; whether the failures reached ``patience`` now."""
        self.failures = self.failures + 1 if success < self.tau else 0
        return self.failures >= self.patience

    def reset(self) -> None:
        """Start counting afresh (a new task, or an expansion that answers the failure)."""
        self.failures = 0
