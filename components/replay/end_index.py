"""The transitions one buffer holds, packed into a dense array: one draw picks one uniformly.

A uniform transition of a buffer is what FIFO, reservoir, task-balanced and each of WMAR's
buffers sample. The storage keeps frames in chunk slots, and a slot's rows are not all
transition ends (an episode's first row and a carried row end none), so a uniform row of the
slots would have to be checked and redrawn. :class:`EndIndex` instead keeps the flat rows
that end a transition in the buffer's chunks at the front of one array, in no particular
order: a uniform position among the first ``size`` is a uniform transition, read with one
gather. Adding a transition appends its row; removing a chunk's rows moves as many rows
from the back into the holes they leave (a swap-remove), so both cost what they touch,
never the buffer's size.

The order of the rows depends on the history of adds and removes, and a draw maps to a row
through it, so the order is saved in the state (:meth:`EndIndex.state_dict`): a restored
replay then draws the same rows as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


class EndIndex:
    """The flat rows that end a transition in one buffer's chunks, packed at the front.

    Args:
        rows: rows of the storage (every row it indexes is below this).
    """

    def __init__(self, rows: int) -> None:
        self.ends = np.zeros(rows, dtype=np.int64)
        """``ends[:size]`` are the rows held; the rest is stale."""
        # Where each held row sits in ``ends``, so that a removal finds its holes without a
        # search. Stale for rows not held.
        self._position = np.zeros(rows, dtype=np.int64)
        self.size = 0
        """Transitions held."""

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays."""
        return int(self.ends.nbytes + self._position.nbytes)

    def held(self) -> np.ndarray:
        """The rows held, in index order (a view; copy it before the index changes)."""
        return self.ends[: self.size]

    def add_one(self, row: int) -> None:
        """Hold the transition ending at ``row`` (not held yet)."""
        self.ends[self.size] = row
        self._position[row] = self.size
        self.size += 1

    def add(self, rows: np.ndarray) -> None:
        """Hold the transitions ending at ``rows`` (distinct, none held yet)."""
        start, stop = self.size, self.size + len(rows)
        self.ends[start:stop] = rows
        self._position[rows] = np.arange(start, stop)
        self.size = stop

    def remove(self, rows: np.ndarray) -> None:
        """Stop holding the transitions ending at ``rows`` (distinct, all held).

        The last ``len(rows)`` positions are dropped; the rows there that stay move into
        the positions of removed rows below them.
        """
        stop = self.size - len(rows)
        positions = self._position[rows]
        holes = positions[positions < stop]
        stays = np.ones(self.size - stop, dtype=np.bool_)
        stays[positions[positions >= stop] - stop] = False
        movers = self.ends[stop : self.size][stays]
        self.ends[holes] = movers
        self._position[movers] = holes
        self.size = stop

    def rows_at(self, u: np.ndarray) -> np.ndarray:
        """The held row at position ``floor(u * size)`` for each uniform in ``u``.

        For ``u`` uniform on ``[0, 1)`` each row is i.i.d. uniform over the held ones (to
        within double rounding, and never past the last: see ``_below`` in
        :mod:`.samplers`); ``size`` must be positive.
        """
        rows: np.ndarray = self.ends.take((u * self.size).astype(np.int64))
        return rows

    def state_dict(self) -> dict[str, Any]:
        """The held rows in index order (a copy)."""
        return {"ends": torch.from_numpy(self.held().copy())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Hold exactly the rows saved by :meth:`state_dict`, in their order.

        Raises:
            ValueError: a saved row lies outside this index's storage.
        """
        ends = state["ends"].numpy().astype(np.int64)
        if len(ends) and not (ends.min() >= 0 and ends.max() < len(self.ends)):
            raise ValueError(
                f"end index state holds rows up to {int(ends.max())}, "
                f"this storage has {len(self.ends)}"
            )
        self.size = 0
        self.add(ends)
