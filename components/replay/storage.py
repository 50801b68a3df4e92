"""Preallocated chunk storage: each frame stored once; transitions and sequences read from it.

Layout (Dreamer's). The storage is ``num_slots`` slots of ``chunk_steps + 1`` rows, kept as
flat numpy arrays of ``num_slots * (chunk_steps + 1)`` rows. A row holds one observation and
what led to it: the action taken at the previous row, the reward it earned, whether the
observation is terminal, and whether it is the first of an episode (then action and reward
are zero). An env step therefore writes one row, holding ``next_obs``; an episode's first
step also writes the reset observation as a first row before it. The transition
``(obs, action, reward, next_obs)`` ending at row ``r`` is rows ``r - 1`` and ``r``: the
next observation is the next row, not a second copy, and no transition ends at a first row
or at row 0 of a slot (a ``valid`` flag per row says which rows end one).

A chunk is what a writer places: the rows of one slot, filled in order. Chunks are
independent (a writer may overwrite any slot), so a transition never spans two slots; when
an episode goes on past a full chunk, the next chunk starts with a copy of the last row
(:meth:`ChunkStorage.carry`), which is the one extra frame per chunk that the ``+ 1`` row
pays for. Frames per transition are thus ``1 + 1/chunk_steps + 1/episode_length`` at most.

Batches come out as torch tensors in the dtypes of :class:`~l2rl.types.TransitionBatch`;
uint8 frames stay uint8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from l2rl.types import LEARNER_SKILL, SequenceBatch, TransitionBatch

UNKNOWN_TASK = -1
"""Stored task id of frames from a task-agnostic run (``Step.task_id is None``)."""

_ROW_ARRAYS = ("obs", "actions", "rewards", "terminated", "is_first", "valid", "row_task")
_SLOT_ARRAYS = ("fill", "count", "task", "serial")


class ChunkStorage:
    """Fixed slots of ``chunk_steps + 1`` frame rows each (see the module docstring).

    Per slot it keeps ``fill`` (rows written), ``count`` (transitions ending in it),
    ``task`` (the task of its frames: a chunk never mixes tasks) and ``serial`` (when its
    chunk was started, for recency), and it indexes each slot's transition ends in
    ``end_rows`` so that a sampler can pick one without rejection. It writes and reads
    rows; which slot a chunk goes to and which rows a batch reads are decided elsewhere
    (writers, samplers).

    Args:
        num_slots: number of slots.
        chunk_steps: transitions a slot holds when no episode starts inside it; it has
            ``chunk_steps + 1`` rows.
        obs_shape: shape of one observation.
        obs_dtype: dtype of observations.
        action_shape: shape of one action (``()`` for a discrete action).
        action_dtype: dtype of actions.
    """

    def __init__(
        self,
        num_slots: int,
        chunk_steps: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype[Any] | type,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype[Any] | type,
    ) -> None:
        if num_slots <= 0 or chunk_steps <= 0:
            raise ValueError(
                f"num_slots and chunk_steps must be positive, got {num_slots}, {chunk_steps}"
            )
        self.num_slots = num_slots
        self.chunk_steps = chunk_steps
        self.rows = chunk_steps + 1
        """Rows per slot."""
        n = num_slots * self.rows
        # np.zeros maps pages lazily: a large buffer costs memory only as slots fill.
        # ``obs`` starts at the second row of one extra: ``_obs_before[r]`` is then
        # ``obs[r - 1]``, and a batch gathers the observations its transitions start from
        # without subtracting 1 from every index. The extra row is never written or read.
        frames = np.zeros((n + 1, *obs_shape), dtype=obs_dtype)
        self.obs = frames[1:]
        self._obs_before = frames[:-1]
        self.actions = np.zeros((n, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=np.bool_)
        self.is_first = np.zeros(n, dtype=np.bool_)
        self.valid = np.zeros(n, dtype=np.bool_)
        # The slot's task repeated per row (set once per chunk): one gather per batch
        # instead of a division and a gather.
        self.row_task = np.zeros(n, dtype=np.int64)
        # The skill that took each row's action (Step.skill, a skill manager's choice),
        # made when a skill other than the learner first acts: runs without a skill
        # manager pay neither its memory nor its writes.
        self.row_skill: np.ndarray | None = None
        # The rows transitions end at, slot by slot in the order written: the j-th transition
        # of slot s ends at row end_rows[s * rows + j] (for j < count[s]; the rest is stale).
        # A uniform j then picks a uniform transition of a slot without rejection sampling.
        # Derived from ``valid``, so it is rebuilt on load rather than saved. int64, the
        # index type numpy gathers with: int32 would halve its bytes, but each of a batch's
        # six gathers would then cast the indices first (~2.5 us more per batch of 256).
        self.end_rows = np.zeros(n, dtype=np.int64)
        self.fill = np.zeros(num_slots, dtype=np.int64)
        self.count = np.zeros(num_slots, dtype=np.int64)
        self.task = np.full(num_slots, UNKNOWN_TASK, dtype=np.int64)
        self.serial = np.zeros(num_slots, dtype=np.int64)
        self.transitions = 0
        """Transitions stored in all slots."""

    @property
    def nbytes(self) -> int:
        """Bytes of every preallocated array."""
        names = (*_ROW_ARRAYS, *_SLOT_ARRAYS, "end_rows")
        extra_row = int(self.obs[0].nbytes)  # the one ahead of ``obs``
        skills = 0 if self.row_skill is None else int(self.row_skill.nbytes)
        return extra_row + skills + sum(int(getattr(self, name).nbytes) for name in names)

    def _skills_column(self) -> np.ndarray:
        """:attr:`row_skill`, made (every row the learner's) if it is not yet."""
        if self.row_skill is None:
            self.row_skill = np.full(len(self.valid), LEARNER_SKILL, dtype=np.int64)
        return self.row_skill

    # --- writing ----------------------------------------------------------------------
    def claim(self, slot: int, task: int, serial: int) -> None:
        """Start a new, empty chunk in ``slot`` for frames of ``task``."""
        self.clear(slot)
        self.task[slot] = task
        self.row_task[slot * self.rows : (slot + 1) * self.rows] = task
        self.serial[slot] = serial

    def clear(self, slot: int) -> None:
        """Drop the chunk in ``slot``: no transition may be read from it any more."""
        start = slot * self.rows
        self.valid[start : start + int(self.fill[slot])] = False
        self.transitions -= int(self.count[slot])
        self.fill[slot] = 0
        self.count[slot] = 0

    def as_obs(self, obs: Any) -> np.ndarray:
        """``obs`` as an array of the stored dtype (how it would read back once stored)."""
        return np.asarray(obs, dtype=self.obs.dtype)

    def last_row(self, slot: int) -> int:
        """Flat index of the last row written in ``slot`` (which must not be empty)."""
        return slot * self.rows + int(self.fill[slot]) - 1

    def begin_episode(self, slot: int, obs: Any) -> None:
        """Write ``obs`` as an episode's first row (no transition ends there)."""
        row = slot * self.rows + int(self.fill[slot])
        self.obs[row] = obs
        self.actions[row] = 0
        self.rewards[row] = 0.0
        self.terminated[row] = False
        self.is_first[row] = True
        self.valid[row] = False
        if self.row_skill is not None:
            self.row_skill[row] = LEARNER_SKILL
        self.fill[slot] += 1

    def append(
        self,
        slot: int,
        action: Any,
        reward: float,
        next_obs: Any,
        terminated: bool,
        skill: int = LEARNER_SKILL,
    ) -> int:
        """Write one env step as the row after the last; returns that row, where the
        transition from it ends."""
        row = slot * self.rows + int(self.fill[slot])
        self.obs[row] = next_obs
        self.actions[row] = action
        if skill != LEARNER_SKILL or self.row_skill is not None:
            self._skills_column()[row] = skill
        self.rewards[row] = reward
        self.terminated[row] = terminated
        self.is_first[row] = False
        self.valid[row] = True
        self.end_rows[slot * self.rows + int(self.count[slot])] = row
        self.fill[slot] += 1
        self.count[slot] += 1
        self.transitions += 1
        return row

    def append_steps(
        self,
        slot: int,
        new_episode: np.ndarray,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        skills: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write consecutive steps after the last row at once; returns the rows they end at.

        The same rows as :meth:`begin_episode` (with ``obs``) before each step flagged in
        ``new_episode``, then :meth:`append` for every step (``skills``: each step's skill,
        default the learner's), would write.
        """
        base, n = slot * self.rows + int(self.fill[slot]), len(next_obs)
        # The row each step writes: a slice while no first row comes between (slice
        # assignments copy frames faster than index arrays).
        ends: slice | np.ndarray = slice(base, base + n)
        rows = n
        if new_episode.any():
            ends = base + np.cumsum(1 + new_episode) - 1
            firsts = ends[new_episode] - 1
            self.obs[firsts] = obs[new_episode]
            self.actions[firsts] = 0
            self.rewards[firsts] = 0.0
            self.terminated[firsts] = False
            self.is_first[firsts] = True
            self.valid[firsts] = False
            if self.row_skill is not None:
                self.row_skill[firsts] = LEARNER_SKILL
            rows += len(firsts)
        self.obs[ends] = next_obs
        self.actions[ends] = actions
        self.rewards[ends] = rewards
        self.terminated[ends] = terminated
        self.is_first[ends] = False
        self.valid[ends] = True
        if skills is not None and bool((skills != LEARNER_SKILL).any()):
            self._skills_column()[ends] = skills
        elif self.row_skill is not None:
            self.row_skill[ends] = LEARNER_SKILL if skills is None else skills
        end_rows = np.arange(base, base + n) if isinstance(ends, slice) else ends
        first_end = slot * self.rows + int(self.count[slot])
        self.end_rows[first_end : first_end + n] = end_rows
        self.fill[slot] += rows
        self.count[slot] += n
        self.transitions += n
        return end_rows

    def carry(self, row: int, slot: int) -> None:
        """Copy flat row ``row`` (an open episode's last frame) to the start of empty ``slot``.

        The copy is not a first row: it keeps the action and reward that led to it, so a
        sequence read from ``slot`` is a faithful piece of the episode. No transition ends
        at it; the next step's ends right after it.
        """
        dst = slot * self.rows
        self.obs[dst] = self.obs[row]
        self.actions[dst] = self.actions[row]
        self.rewards[dst] = self.rewards[row]
        self.terminated[dst] = self.terminated[row]
        if self.row_skill is not None:
            self.row_skill[dst] = self.row_skill[row]
        self.is_first[dst] = False
        self.valid[dst] = False
        self.fill[slot] = 1

    # --- reading ----------------------------------------------------------------------
    def ends_in(self, slot: int) -> np.ndarray:
        """The flat rows the transitions of ``slot`` end at, in the order written (a view)."""
        first = slot * self.rows
        return self.end_rows[first : first + int(self.count[slot])]

    def transitions_at(self, rows: np.ndarray) -> TransitionBatch:
        """The transitions ending at flat rows ``rows`` (each must be ``valid``)."""
        # np.take copies, so from_numpy shares nothing with the storage; numpy gathers were
        # ~4.5x faster than indexing torch tensors here (DESIGN.md section 7), and take a
        # little faster than fancy indexing on small rows.
        return TransitionBatch(
            obs=torch.from_numpy(self._obs_before.take(rows, axis=0)),
            actions=torch.from_numpy(self.actions.take(rows, axis=0)),
            rewards=torch.from_numpy(self.rewards.take(rows)),
            next_obs=torch.from_numpy(self.obs.take(rows, axis=0)),
            terminated=torch.from_numpy(self.terminated.take(rows)),
            task_ids=torch.from_numpy(self.row_task.take(rows)),
            skills=None if self.row_skill is None else torch.from_numpy(self.row_skill.take(rows)),
        )

    def sequences_at(self, starts: np.ndarray, length: int) -> SequenceBatch:
        """The ``length`` rows from each flat row in ``starts`` (all within one slot)."""
        rows = starts[:, None] + np.arange(length)
        return SequenceBatch(
            obs=torch.from_numpy(self.obs[rows]),
            actions=torch.from_numpy(self.actions[rows]),
            rewards=torch.from_numpy(self.rewards[rows]),
            terminated=torch.from_numpy(self.terminated[rows]),
            is_first=torch.from_numpy(self.is_first[rows]),
            task_ids=torch.from_numpy(self.row_task[rows]),
        )

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The arrays as tensors sharing memory with the storage (like ``nn.Module``).

        Save or copy them before writing more steps.
        """
        state: dict[str, Any] = {
            name: torch.from_numpy(getattr(self, name)) for name in _ROW_ARRAYS + _SLOT_ARRAYS
        }
        if self.row_skill is not None:
            state["row_skill"] = torch.from_numpy(self.row_skill)
        state["transitions"] = self.transitions
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy arrays saved by :meth:`state_dict` into this storage.

        Raises:
            ValueError: an array is missing or its shape or dtype differs from this storage's.
        """
        for name in _ROW_ARRAYS + _SLOT_ARRAYS:
            array = getattr(self, name)
            if name not in state:
                raise ValueError(f"storage state has no {name!r} array")
            saved = state[name].numpy()
            if saved.shape != array.shape or saved.dtype != array.dtype:
                raise ValueError(
                    f"storage state {name!r} is {saved.dtype}{list(saved.shape)}, "
                    f"this storage holds {array.dtype}{list(array.shape)}"
                )
            array[...] = saved
        self.row_skill = None  # absent: no skill but the learner's had acted
        if "row_skill" in state:
            self._skills_column()[...] = state["row_skill"].numpy()
        self.transitions = int(state["transitions"])
        self._index_ends()

    def _index_ends(self) -> None:
        """Rebuild :attr:`end_rows` from ``valid`` (ends are written in row order)."""
        ends = np.flatnonzero(self.valid)
        slots = ends // self.rows
        # The j-th end of its slot: its position minus that of its slot's first end.
        j = np.arange(len(ends)) - np.searchsorted(slots, slots)
        self.end_rows[slots * self.rows + j] = ends
