"""Writers: which storage slot the next transition goes to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FIFOWriter:
    """A ring index: fill slots ``0..capacity-1`` in order, then overwrite the oldest.

    Because slots fill as a prefix, the filled slots are always ``0..size-1``.

    Args:
        capacity: number of slots in the storage.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.size = 0
        """Number of filled slots."""
        self._cursor = 0

    def next_slot(self) -> int:
        """The slot the next transition is written to; advances the ring."""
        slot = self._cursor
        self._cursor = (self._cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return slot

    def state_dict(self) -> dict[str, int]:
        """Cursor and fill level."""
        return {"capacity": self.capacity, "cursor": self._cursor, "size": self.size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the state was saved with another capacity.
        """
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"writer state has capacity {state['capacity']}, this writer {self.capacity}"
            )
        self._cursor = int(state["cursor"])
        self.size = int(state["size"])
