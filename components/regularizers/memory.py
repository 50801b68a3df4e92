"""The small memories regularizers keep of earlier tasks: a reservoir and an episodic store.

:class:`Reservoir` keeps a uniform sample of one training window's rows (observations for
EWC's Fisher and behaviour cloning, whole transitions for A-GEM). At the window's end the
adapter hands its rows, possibly annotated, to an :class:`EpisodicMemory`, which holds the
rows of every finished task and samples minibatches from all of them. Neither imports l2rl.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

FieldSpec = tuple[tuple[int, ...], Any]
"""Shape of one row's value and its numpy dtype."""


class Reservoir:
    """A uniform sample of at most ``capacity`` rows from a stream (Vitter's Algorithm R).

    After ``n`` rows were offered, each of them is held with probability
    ``min(1, capacity / n)``: row ``n + 1`` takes a uniformly chosen slot with probability
    ``capacity / (n + 1)``. So the sample represents the whole window, not only its end.

    Args:
        capacity: most rows held.
        fields: name -> (shape, numpy dtype) of each value a row carries.
        seed: seed of the generator that picks the slots.
    """

    def __init__(
        self, capacity: int, fields: Mapping[str, FieldSpec], seed: int | Sequence[int] = 0
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        # np.zeros maps pages lazily, so a large reservoir costs memory only as it fills.
        self._arrays = {
            name: np.zeros((capacity, *shape), dtype=dtype)
            for name, (shape, dtype) in fields.items()
        }
        self.seen = 0
        """Rows offered since the last :meth:`clear`."""
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the slot generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Rows held."""
        return min(self.seen, self.capacity)

    @property
    def nbytes(self) -> int:
        """Bytes of the reservoir once full (every slot of every field)."""
        return sum(int(array.nbytes) for array in self._arrays.values())

    def add(self, row: Mapping[str, Any]) -> None:
        """Offer one row (a value for every field)."""
        # Algorithm R: fill the free slots, then row n+1 replaces one with prob. capacity/(n+1).
        full = self.seen >= self.capacity
        slot = int(self.rng.integers(0, self.seen + 1)) if full else self.seen
        self.seen += 1
        if slot < self.capacity:
            for name, array in self._arrays.items():
                array[slot] = row[name]

    def rows(self) -> dict[str, torch.Tensor]:
        """The rows held, as tensors that share nothing with the reservoir."""
        n = len(self)
        return {name: torch.from_numpy(array[:n].copy()) for name, array in self._arrays.items()}

    def clear(self) -> None:
        """Forget every row (a new window starts); the generator keeps its stream."""
        self.seen = 0

    def state_dict(self) -> dict[str, Any]:
        """The rows held, the count offered and the generator's state."""
        return {"rows": self.rows(), "seen": self.seen, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the saved rows do not fit this reservoir's fields or capacity.
        """
        rows = state["rows"]
        if set(rows) != set(self._arrays):
            raise ValueError(
                f"reservoir state has fields {sorted(rows)}, expected {sorted(self._arrays)}"
            )
        for name, array in self._arrays.items():
            saved = rows[name].numpy()
            if saved.shape[1:] != array.shape[1:] or len(saved) > self.capacity:
                raise ValueError(f"reservoir state {name!r} has shape {saved.shape}")
            array[: len(saved)] = saved
        self.seen = int(state["seen"])
        self.rng.bit_generator.state = state["rng"]


class EpisodicMemory:
    """Rows of finished tasks, sampled uniformly over all of them.

    Each task's rows are stored once at its end; storing a task again (a revisited task in
    a cycle) replaces its rows. Rows are dicts of tensors with a common leading dimension;
    every task must use the same fields.

    Args:
        seed: seed of the generator that draws minibatch indices.
    """

    def __init__(self, seed: int | Sequence[int] = 0) -> None:
        self.rows: dict[str, torch.Tensor] = {}
        """Every stored row, all tasks concatenated."""
        self.task_of_row = torch.zeros(0, dtype=torch.int64)
        """The task each row of :attr:`rows` came from."""
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the index generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Rows held over all tasks."""
        return len(self.task_of_row)

    @property
    def tasks(self) -> list[int]:
        """The tasks that have rows, sorted."""
        return sorted(int(t) for t in torch.unique(self.task_of_row))

    def store(self, task: int, rows: Mapping[str, torch.Tensor]) -> None:
        """Hold ``rows`` as task ``task``'s memory, replacing what that task had.

        Raises:
            ValueError: the fields differ from the stored rows' or lengths disagree.
        """
        lengths = {len(v) for v in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"rows must share one leading dimension, got lengths {lengths}")
        if self.rows and set(rows) != set(self.rows):
            raise ValueError(f"rows have fields {sorted(rows)}, memory holds {sorted(self.rows)}")
        keep = self.task_of_row != task
        count = lengths.pop()
        if self.rows:
            self.rows = {k: torch.cat([self.rows[k][keep], rows[k]]) for k in self.rows}
        else:
            self.rows = {k: v.clone() for k, v in rows.items()}
        self.task_of_row = torch.cat(
            [self.task_of_row[keep], torch.full((count,), task, dtype=torch.int64)]
        )

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` rows drawn uniformly with replacement from every task's rows.

        Raises:
            ValueError: the memory is empty.
        """
        if len(self) == 0:
            raise ValueError("cannot sample from an empty episodic memory")
        index = torch.from_numpy(self.rng.integers(0, len(self), size=batch_size))
        return {k: v.index_select(0, index) for k, v in self.rows.items()}

    def state_dict(self) -> dict[str, Any]:
        """Rows, their tasks and the generator's state."""
        return {
            "rows": dict(self.rows),
            "task_of_row": self.task_of_row,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rows = {k: v.clone() for k, v in state["rows"].items()}
        self.task_of_row = state["task_of_row"].clone()
        self.rng.bit_generator.state = state["rng"]
