"""A chunked replay buffer: storage + writers + sampler, usable without the framework.

:class:`ChunkReplayBuffer` turns env steps into chunks (:mod:`.storage`), hands each
complete chunk to its writers (:mod:`.writers`), and reads minibatches through its
sampler (:mod:`.samplers`). Every replay component is this buffer with another writer or
sampler.

Chunks being filled. Each training env (``Step.env_index``) fills its own chunk, so the
steps of parallel envs never mix. A chunk is complete when its rows are full, when an
episode must start and only one row is left, or when its env's task changes (a chunk never
mixes tasks). The chunks being filled are sampled like stored ones: an agent that learns
online sees its latest steps at once.

Episode boundaries. A step continues the stored episode of its env when the env's
previous step neither terminated nor was truncated, the task is the same, and the step is
not an episode's first (``Step.first``, set by the runner after every reset, window
boundaries included); otherwise it starts a new episode, whose reset observation is stored
as a first row.

Several writers (WMAR's short- and long-term buffers) may hold the same chunk; it is stored
once and its slot is freed when no writer holds it any more.

Each buffer (writer) also has an :class:`~.end_index.EndIndex` of the transitions its chunks
hold, the first one's including the chunks being filled, kept up to date as steps arrive and
chunks come and go, so that a uniform transition of a buffer costs one draw and one gather.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from l2rl.types import SequenceBatch, Step, TransitionBatch

from .end_index import EndIndex
from .samplers import Sampler
from .storage import UNKNOWN_TASK, ChunkStorage
from .writers import ChunkWriter

# Mixed with the seed so that the placement and sampling streams differ from each other
# and from the agent's, which is seeded from the same run seed.
_PLACEMENT_STREAM = 0x91AC_E5ED
_SAMPLER_STREAM = 0x5EED_F1F0


@dataclass(frozen=True)
class StepBatch:
    """Consecutive env steps of one training env, as arrays with a leading time axis.

    Attributes:
        obs: observations ``[T, *obs_shape]``.
        actions: actions ``[T, *action_shape]``.
        rewards: rewards ``[T]``.
        next_obs: next observations ``[T, *obs_shape]``.
        terminated: ``[T]`` bool.
        truncated: ``[T]`` bool.
        task_id: the task of every step, ``None`` when unknown.
        env_index: the training env that produced them.
        first: ``[T]`` bool, :attr:`Step.first` of each: the step starts an episode.
        skills: ``[T]`` int64, :attr:`Step.skill` of each (``None``: the learner's).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    task_id: int | None = None
    env_index: int = 0
    first: np.ndarray | None = None
    skills: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.obs)

    @classmethod
    def from_steps(cls, steps: Sequence[Step]) -> StepBatch:
        """``steps`` (consecutive steps of one env and one task) stacked into arrays.

        Raises:
            ValueError: ``steps`` is empty, or holds steps of more than one env or task.
        """
        if not steps:
            raise ValueError("a step batch needs at least one step")
        first = steps[0]
        if any(s.env_index != first.env_index or s.task_id != first.task_id for s in steps):
            raise ValueError("a step batch holds the steps of one env and one task")
        return cls(
            obs=np.stack([s.obs for s in steps]),
            actions=np.array([s.action for s in steps]),
            rewards=np.array([s.reward for s in steps], np.float32),
            next_obs=np.stack([s.next_obs for s in steps]),
            terminated=np.array([s.terminated for s in steps], np.bool_),
            truncated=np.array([s.truncated for s in steps], np.bool_),
            task_id=first.task_id,
            env_index=first.env_index,
            first=np.array([s.first for s in steps], np.bool_),
            skills=np.array([s.skill for s in steps], np.int64),
        )


@dataclass
class _Stream:
    """The chunk one training env is filling, and whether its episode is still running."""

    slot: int
    open: bool = False


class ChunkReplayBuffer:
    """Steps in, chunks to writers, minibatches out (see the module docstring).

    Args:
        storage: where frames live; it needs a slot for every chunk the writers may hold
            plus one per training env (``max_envs``).
        writers: the chunk rules, one per buffer (WMAR has two); each complete chunk is
            offered to all of them.
        sampler: picks minibatch rows.
        max_envs: training envs whose steps it accepts (``env_index < max_envs``).
    """

    def __init__(
        self,
        storage: ChunkStorage,
        writers: Sequence[ChunkWriter],
        sampler: Sampler,
        max_envs: int,
    ) -> None:
        needed = sum(w.capacity for w in writers) + max_envs
        if storage.num_slots < needed:
            raise ValueError(f"storage has {storage.num_slots} slots, the writers need {needed}")
        self.storage = storage
        self.writers = list(writers)
        self.sampler = sampler
        self.max_envs = max_envs
        self.placement_rng = np.random.default_rng()
        self.seed(0)
        self.slots_used = 0
        """Slots ``0 .. slots_used - 1`` have held data (free slots are reused lowest first)."""
        self._refs = np.zeros(storage.num_slots, dtype=np.int64)
        self._free = list(range(storage.num_slots))
        self._serial = 0
        self._streams: dict[int, _Stream] = {}
        self.version = 0
        """Changes whenever the chunks a writer holds or the chunks being filled change."""
        self._views: list[np.ndarray] | None = None
        self.ends = [EndIndex(storage.num_slots * storage.rows) for _ in self.writers]
        """Per writer, the transitions its chunks hold (the first's: with those being filled)."""

    def seed(self, seed: int) -> None:
        """Restart the placement and sampling streams from ``seed``."""
        self.placement_rng = np.random.default_rng([seed, _PLACEMENT_STREAM])
        self.sampler.reseed([seed, _SAMPLER_STREAM])

    def __len__(self) -> int:
        """Transitions stored (each counted once, however many buffers hold its chunk)."""
        return self.storage.transitions

    @property
    def nbytes(self) -> int:
        """Bytes of the storage's and the end indexes' preallocated arrays."""
        return self.storage.nbytes + sum(index.nbytes for index in self.ends)

    def views(self) -> list[np.ndarray]:
        """Chunk ids held by each writer; the first also lists the chunks being filled.

        Built once per :attr:`version` (samplers call it for every minibatch).
        """
        if self._views is None:
            views = [np.array(w.held(), dtype=np.int64) for w in self.writers]
            views[0] = np.concatenate((views[0], np.array(self.filling(), dtype=np.int64)))
            self._views = views
        return self._views

    def filling(self) -> list[int]:
        """Slots of the chunks being filled: one per training env that has sent a step."""
        return [s.slot for s in self._streams.values()]

    def _changed(self) -> None:
        self.version += 1
        self._views = None

    # --- writing ----------------------------------------------------------------------
    def add(self, step: Step) -> None:
        """Store one env step (see the module docstring for episode boundaries)."""
        storage = self.storage
        stream = self._stream(step.env_index, step.task_id)
        slot = stream.slot
        continues = stream.open and not step.first
        if not continues:
            if storage.count[slot] == 0:
                storage.clear(slot)  # drop a carried frame: that episode did not go on
            elif storage.fill[slot] + 2 > storage.rows:
                slot = self._complete(stream, carry=False)
            storage.begin_episode(slot, step.obs)
        self.ends[0].add_one(
            storage.append(
                slot, step.action, step.reward, step.next_obs, step.terminated, step.skill
            )
        )
        stream.open = not (step.terminated or step.truncated)
        if storage.fill[slot] == storage.rows:
            self._complete(stream, carry=stream.open)

    def add_batch(self, steps: StepBatch) -> None:
        """Store consecutive steps of one env at once; the same result as :meth:`add` each.

        Within the batch a step continues its predecessor's episode unless that one
        terminated or was truncated or the step is an episode's first (``steps.first``).

        Raises:
            ValueError: ``steps.first`` is not given.
        """
        storage = self.storage
        n = len(steps)
        if n == 0:
            return
        if steps.first is None:
            raise ValueError("add_batch needs steps.first (StepBatch.from_steps fills it)")
        stream = self._stream(steps.env_index, steps.task_id)
        ended = np.asarray(steps.terminated, bool) | np.asarray(steps.truncated, bool)
        first = np.asarray(steps.first, bool)
        new = np.ones(n, dtype=np.bool_)
        new[0] = not stream.open or bool(first[0])
        new[1:] = ended[:-1] | first[1:]
        # Rows written up to and including step t: its own, plus a first row if it is new.
        rows_through = np.cumsum(1 + new)
        t = 0
        while t < n:
            slot = stream.slot
            if new[t] and storage.count[slot] == 0:
                storage.clear(slot)
            before = rows_through[t - 1] if t else 0
            room = storage.rows - int(storage.fill[slot])
            end = int(np.searchsorted(rows_through, before + room, side="right"))
            if end == t:  # a new episode needs two rows and one is left
                self._complete(stream, carry=False)
                continue
            piece = slice(t, end)
            ends = storage.append_steps(
                slot,
                new[piece],
                steps.obs[piece],
                steps.actions[piece],
                steps.rewards[piece],
                steps.next_obs[piece],
                steps.terminated[piece],
                None if steps.skills is None else steps.skills[piece],
            )
            self.ends[0].add(ends)
            t = end
            stream.open = not ended[t - 1]
            if storage.fill[slot] == storage.rows:
                self._complete(stream, carry=stream.open)

    def _stream(self, env_index: int, task_id: int | None) -> _Stream:
        """The chunk ``env_index`` fills, completed first if ``task_id`` changed."""
        task = UNKNOWN_TASK if task_id is None else task_id
        stream = self._streams.get(env_index)
        if stream is None:
            if not 0 <= env_index < self.max_envs:
                raise ValueError(
                    f"replay built for max_envs={self.max_envs} training envs got a step from "
                    f"env_index {env_index}; raise the replay's max_envs option"
                )
            stream = _Stream(self._allocate(task))
            self._streams[env_index] = stream
            self._changed()
        elif self.storage.task[stream.slot] != task:
            if self.storage.count[stream.slot] > 0:
                self._complete(stream, carry=False, task=task)
            else:
                self.storage.claim(stream.slot, task, self._next_serial())
                self._changed()
            stream.open = False
        return stream

    def _complete(self, stream: _Stream, carry: bool, task: int | None = None) -> int:
        """Offer ``stream``'s chunk to the writers and start a new one; returns its slot.

        With ``carry`` the new chunk starts with the old chunk's last frame (the episode
        goes on); ``task`` is the new chunk's task (default: the old one's).
        """
        storage, chunk = self.storage, stream.slot
        old_task = int(storage.task[chunk])
        last = storage.last_row(chunk)
        dropped: list[int] = []
        for w, (writer, index) in enumerate(zip(self.writers, self.ends, strict=True)):
            out = writer.place(chunk, old_task, self.placement_rng)
            kept = chunk not in out
            if kept:
                self._refs[chunk] += 1
            # The first index has held the chunk's transitions since it was begun; the
            # others take them when their writer keeps it.
            if w == 0 and not kept:
                index.remove(storage.ends_in(chunk))
            elif w > 0 and kept:
                index.add(storage.ends_in(chunk))
            for c in out:
                if c != chunk:
                    index.remove(storage.ends_in(c))
                    dropped.append(c)
        for c in dropped:
            self._refs[c] -= 1
            if self._refs[c] == 0:
                self._release(c)
        if self._refs[chunk] == 0:
            self._release(chunk)
        # The frames of a released slot stay in place until it is written again, so the
        # carry below may read ``last`` even when the new chunk reuses the same slot.
        stream.slot = self._allocate(old_task if task is None else task)
        if carry:
            storage.carry(last, stream.slot)
        self._changed()
        return stream.slot

    def _allocate(self, task: int) -> int:
        slot = heapq.heappop(self._free)
        self.slots_used = max(self.slots_used, slot + 1)
        self.storage.claim(slot, task, self._next_serial())
        return slot

    def _release(self, slot: int) -> None:
        self.storage.clear(slot)
        heapq.heappush(self._free, slot)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    # --- reading ----------------------------------------------------------------------
    def sample(self, batch_size: int) -> TransitionBatch:
        """``batch_size`` transitions drawn by the sampler's rule, with replacement.

        Raises:
            ValueError: nothing is stored yet.
        """
        return self.storage.transitions_at(self.sampler.transitions(self, batch_size))

    def sample_sequences(self, batch_size: int, length: int) -> SequenceBatch:
        """``batch_size`` runs of ``length`` consecutive frames, each inside one chunk.

        Raises:
            ValueError: ``length`` exceeds a chunk's rows, or no chunk holds that many yet.
        """
        starts = self.sampler.sequence_starts(self, batch_size, length)
        return self.storage.sequences_at(starts, length)

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Storage (sharing memory with the buffer), writers, streams and generators."""
        return {
            "storage": self.storage.state_dict(),
            "writers": [w.state_dict() for w in self.writers],
            "sampler": self.sampler.state_dict(),
            "placement_rng": self.placement_rng.bit_generator.state,
            "refs": torch.from_numpy(self._refs),
            "free": list(self._free),
            "slots_used": self.slots_used,
            "serial": self._serial,
            "streams": {env: [s.slot, s.open] for env, s in sorted(self._streams.items())},
            "ends": [index.state_dict() for index in self.ends],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the state comes from a replay with another layout or writer count,
                or its end indexes do not hold exactly the transitions of their chunks.
        """
        if len(state["writers"]) != len(self.writers):
            raise ValueError(
                f"replay state has {len(state['writers'])} writers, this replay {len(self.writers)}"
            )
        if "ends" not in state:
            raise ValueError("replay state has no end indexes (saved by an older l2rl)")
        self.storage.load_state_dict(state["storage"])
        for writer, saved in zip(self.writers, state["writers"], strict=True):
            writer.load_state_dict(saved)
        self.sampler.load_state_dict(state["sampler"])
        self.placement_rng.bit_generator.state = state["placement_rng"]
        self._refs[...] = state["refs"].numpy()
        self._free = [int(s) for s in state["free"]]
        self.slots_used = int(state["slots_used"])
        self._serial = int(state["serial"])
        self._streams = {
            int(env): _Stream(int(slot), bool(is_open))
            for env, (slot, is_open) in state["streams"].items()
        }
        self._changed()
        for w, (index, saved) in enumerate(zip(self.ends, state["ends"], strict=True)):
            index.load_state_dict(saved)
            self._check_index(w)

    def _check_index(self, w: int) -> None:
        """Raise unless writer ``w``'s index holds exactly the transitions of its chunks."""
        storage = self.storage
        slots = self.views()[w]
        rows = (slots[:, None] * storage.rows + np.arange(storage.rows)).ravel()
        want = rows[storage.valid[rows]]
        if not np.array_equal(np.sort(self.ends[w].held()), np.sort(want)):
            raise ValueError(
                f"replay state: end index {w} does not hold the transitions of its "
                f"{len(slots)} chunks ({self.ends[w].size} rows against {len(want)})"
            )
