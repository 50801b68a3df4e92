"""Writers: which stored chunks a replay keeps when a new chunk is complete.

A writer sees chunk ids (storage slots) and their task ids, never frames. When a chunk is
complete the replay offers it to each of its writers with :meth:`place`; the writer says
which chunks it no longer holds: an evicted one, or the new one itself when it declines
it. Writers that choose at random draw from the generator the replay passes in, so one
seeded stream drives every placement decision of a replay.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class ChunkWriter(Protocol):
    """The rule that decides which complete chunks a replay (or one of its buffers) holds."""

    capacity: int
    """Most chunks held at once."""

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Offer the complete ``chunk`` (of ``task``); returns the chunks no longer held."""
        ...

    def held(self) -> list[int]:
        """The chunks held now."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Plain Python state."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


def _check_capacity(capacity: int) -> None:
    if capacity <= 0:
        raise ValueError(f"capacity must be positive, got {capacity}")


class FIFOWriter:
    """First in, first out: once ``capacity`` chunks are held, a new one evicts the oldest.

    Args:
        capacity: chunks held at most.
    """

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self._chunks: deque[int] = deque()

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Keep ``chunk``; evict the oldest chunk when over capacity (draws nothing)."""
        self._chunks.append(chunk)
        return [self._chunks.popleft()] if len(self._chunks) > self.capacity else []

    def held(self) -> list[int]:
        """The chunks held, oldest first."""
        return list(self._chunks)

    def state_dict(self) -> dict[str, Any]:
        """The held chunks, oldest first."""
        return {"chunks": list(self._chunks)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._chunks = deque(int(c) for c in state["chunks"])


class CurrentTaskWriter:
    """The newest task's chunks only, first in first out within ``capacity``.

    Rule: a complete chunk of a task other than the held chunks' evicts all of them (the
    replay then holds only the task being trained, from the first complete chunk of that
    task on); past ``capacity`` chunks the oldest goes, as in :class:`FIFOWriter`. Model
    learners that train on the current task's data alone (HyperCRL's fine-tuning
    baseline and its hypernetwork) use it. In a task-agnostic run every chunk has task -1
    and the rule is plain FIFO.

    Args:
        capacity: chunks held at most.
    """

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self.task: int | None = None
        """The task of the held chunks (``None`` before the first)."""
        self._chunks: deque[int] = deque()

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Keep ``chunk``; evict every chunk of another task, then the oldest past capacity."""
        evicted: list[int] = []
        if task != self.task:
            evicted, self._chunks, self.task = list(self._chunks), deque(), task
        self._chunks.append(chunk)
        if len(self._chunks) > self.capacity:
            evicted.append(self._chunks.popleft())
        return evicted

    def held(self) -> list[int]:
        """The chunks held, oldest first."""
        return list(self._chunks)

    def state_dict(self) -> dict[str, Any]:
        """The held chunks, oldest first, and their task."""
        return {"chunks": list(self._chunks), "task": self.task}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._chunks = deque(int(c) for c in state["chunks"])
        self.task = None if state["task"] is None else int(state["task"])


class ReservoirWriter:
    """Reservoir sampling (Vitter 1985, Algorithm R) over chunks.

    Rule: the first ``capacity`` chunks are kept; after that, the ``n``-th chunk seen
    replaces a uniformly random held chunk with probability ``capacity / n`` and is
    declined otherwise. Every chunk ever seen is then held with the same probability
    ``capacity / n``: the memory is a uniform sample of the whole stream, whatever the
    task order. Continual-Dreamer (Kessler et al. 2022) uses it for its episodes.

    Args:
        capacity: chunks held at most.
    """

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self.seen = 0
        """Chunks offered so far."""
        self._chunks: list[int] = []

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Apply Algorithm R to the ``seen``-th chunk."""
        self.seen += 1
        if len(self._chunks) < self.capacity:
            self._chunks.append(chunk)
            return []
        # j uniform in [0, seen): j < capacity has probability capacity / seen, and then
        # slot j is a uniformly random held chunk.
        j = int(rng.integers(self.seen))
        if j >= self.capacity:
            return [chunk]
        evicted, self._chunks[j] = self._chunks[j], chunk
        return [evicted]

    def held(self) -> list[int]:
        """The chunks held, in reservoir-slot order."""
        return list(self._chunks)

    def state_dict(self) -> dict[str, Any]:
        """Chunks seen and held."""
        return {"seen": self.seen, "chunks": list(self._chunks)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.seen = int(state["seen"])
        self._chunks = [int(c) for c in state["chunks"]]


class TaskBalancedWriter:
    """Task-balanced reservoir: class-balancing reservoir sampling (CBRS) over tasks.

    CBRS (Chrysakis & Moens 2020, "Online Continual Learning from Imbalanced Data") with
    tasks in place of classes. Until the memory is full every chunk is kept. A task is
    *full* once it is, or has been, the largest in the full memory. Then a chunk of a task
    that is not full replaces a uniformly random chunk of the largest task (ties broken
    uniformly); a chunk of a full task with ``m`` chunks held out of ``n`` seen replaces a
    uniformly random chunk of its own task with probability ``m / n`` (reservoir sampling
    within the task) and is declined otherwise.

    Effect: each task's share tends to ``capacity / tasks seen`` (the per-task quota) when
    it has that much data, a task with less keeps all of it, and within a task the held
    chunks are a uniform sample of that task's stream. In a task-agnostic run every chunk
    has task -1 and the rule is plain reservoir sampling.

    Args:
        capacity: chunks held at most.
    """

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self._by_task: dict[int, list[int]] = {}
        self._size = 0
        self.seen: dict[int, int] = {}
        """Chunks offered so far, per task."""
        self.full: set[int] = set()
        """Tasks that are or have been the largest in the full memory."""

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Apply the CBRS rule to ``chunk`` of ``task``."""
        self.seen[task] = self.seen.get(task, 0) + 1
        mine = self._by_task.setdefault(task, [])
        if self._size < self.capacity:
            mine.append(chunk)
            self._size += 1
            self._mark_full()
            return []
        if task in self.full:
            if rng.random() >= len(mine) / self.seen[task]:
                return [chunk]
            victim_task = task
        else:
            largest = max(len(chunks) for chunks in self._by_task.values())
            # Sorted so the draw does not depend on the dict's insertion order.
            candidates = sorted(t for t, c in self._by_task.items() if len(c) == largest)
            victim_task = candidates[int(rng.integers(len(candidates)))]
        victims = self._by_task[victim_task]
        i = int(rng.integers(len(victims)))
        evicted = victims[i]
        if victim_task == task:
            victims[i] = chunk
        else:
            victims[i] = victims[-1]  # remove in O(1); the order within a task is free
            victims.pop()
            mine.append(chunk)
        self._mark_full()
        return [evicted]

    def _mark_full(self) -> None:
        if self._size == self.capacity:
            largest = max(len(chunks) for chunks in self._by_task.values())
            self.full.update(t for t, c in self._by_task.items() if len(c) == largest)

    def held(self) -> list[int]:
        """The chunks held, grouped by task."""
        return [chunk for chunks in self._by_task.values() for chunk in chunks]

    def held_per_task(self) -> dict[int, int]:
        """Chunks held per task (tasks holding none left out)."""
        return {t: len(c) for t, c in sorted(self._by_task.items()) if c}

    def state_dict(self) -> dict[str, Any]:
        """Held chunks per task, chunks seen per task, full tasks."""
        return {
            "chunks": [[t, list(c)] for t, c in self._by_task.items()],
            "seen": [[t, n] for t, n in self.seen.items()],
            "full": sorted(self.full),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._by_task = {int(t): [int(c) for c in chunks] for t, chunks in state["chunks"]}
        self._size = sum(len(c) for c in self._by_task.values())
        self.seen = {int(t): int(n) for t, n in state["seen"]}
        self.full = {int(t) for t in state["full"]}


class TopKeysWriter:
    """Keeps the chunks with the ``capacity`` largest random keys (WMAR's long-term buffer).

    Rule (Yang et al. 2024, "Augmenting Replay in World Models for Continual RL"): each
    chunk gets a key ``k ~ N(0, 1)``; while there is room it is kept; after that it
    replaces the held chunk with the smallest key if ``k`` exceeds that key, and is
    declined otherwise. The held chunks are those with the top ``capacity`` keys of all
    chunks ever seen; the keys are i.i.d., so that is a uniform sample of the stream (the
    same distribution as reservoir sampling).

    Args:
        capacity: chunks held at most.
    """

    def __init__(self, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        # A min-heap of (key, chunk): the smallest key held is at index 0.
        self._heap: list[tuple[float, int]] = []

    def place(self, chunk: int, task: int, rng: np.random.Generator) -> list[int]:
        """Draw ``chunk``'s key and keep it if it is among the top ``capacity``."""
        key = float(rng.standard_normal())
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, (key, chunk))
            return []
        if key <= self._heap[0][0]:
            return [chunk]
        _, evicted = heapq.heapreplace(self._heap, (key, chunk))
        return [evicted]

    def held(self) -> list[int]:
        """The chunks held."""
        return [chunk for _, chunk in self._heap]

    def keys(self) -> list[float]:
        """The keys of the chunks held, in the order of :meth:`held`."""
        return [key for key, _ in self._heap]

    def state_dict(self) -> dict[str, Any]:
        """Keys and chunks, in heap order."""
        return {"keys": self.keys(), "chunks": self.held()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._heap = [
            (float(k), int(c)) for k, c in zip(state["keys"], state["chunks"], strict=True)
        ]
