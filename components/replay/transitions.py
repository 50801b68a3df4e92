"""Transitions in preallocated numpy arrays: a ring of whole transitions (not chunks), for
components that keep a few transitions of their own (the coreset replay, HyperCRL's
recent window). The layout of a transition is the regularizers' memories' one
(:func:`~l2rl.components.regularizers.adapters.transition_fields`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from l2rl.types import EnvSpec, Step, TransitionBatch

from ..regularizers.adapters import transition_fields, transition_row
from ..regularizers.memory import FieldSpec


class TransitionArrays:
    """Transitions in preallocated numpy arrays, ``capacity`` at most, oldest overwritten.

    Args:
        capacity: transitions held at most.
        fields: name -> (shape, numpy dtype) of each value of a transition
            (:meth:`for_spec` takes them from the scenario's spaces).
    """

    def __init__(self, capacity: int, fields: Mapping[str, FieldSpec]) -> None:
        self.capacity = capacity
        self.arrays = {
            name: np.zeros((capacity, *shape), dtype) for name, (shape, dtype) in fields.items()
        }
        self.size = 0
        self.next = 0

    @classmethod
    def for_spec(cls, capacity: int, env_spec: EnvSpec) -> TransitionArrays:
        """Arrays for the transitions of ``env_spec``'s spaces.

        Raises:
            ConfigError: a space without one fixed shape and dtype.
        """
        return cls(capacity, transition_fields(env_spec))

    def add(self, step: Step) -> None:
        """Store one transition (overwriting the oldest when full)."""
        row = transition_row(step)
        for name, array in self.arrays.items():
            array[self.next] = row[name]
        self.next = (self.next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The transitions at positions ``index`` (copies)."""
        return {name: array[index] for name, array in self.arrays.items()}

    def clear(self) -> None:
        """Forget every transition."""
        self.size = self.next = 0

    def batch(self) -> TransitionBatch:
        """Every transition held, as a batch (in ring order)."""
        return batch_of([self.rows(np.arange(self.size))])

    def state_dict(self) -> dict[str, Any]:
        """The arrays (as tensors) and the ring's position."""
        return {
            "arrays": {name: torch.as_tensor(array) for name, array in self.arrays.items()},
            "size": self.size,
            "next": self.next,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for name, array in self.arrays.items():
            array[...] = state["arrays"][name].numpy()
        self.size, self.next = int(state["size"]), int(state["next"])


def batch_of(parts: list[dict[str, np.ndarray]]) -> TransitionBatch:
    """Rows of transitions (dicts of the :class:`~l2rl.types.TransitionBatch` fields)
    concatenated into one batch."""
    joined = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return TransitionBatch(**{name: torch.as_tensor(value) for name, value in joined.items()})
