"""Transitions in preallocated numpy arrays: a ring of whole transitions (not chunks), for
components that keep a few transitions of their own (the coreset replay, HyperCRL's
recent window)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from l2rl.types import EnvSpec, Step, TransitionBatch

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "task_ids")
"""The fields of a transition, named as :class:`~l2rl.types.TransitionBatch`'s."""


class TransitionArrays:
    """Transitions in preallocated numpy arrays, ``capacity`` at most, oldest overwritten.

    Args:
        capacity: transitions held at most.
        obs_shape, obs_dtype, action_shape, action_dtype: the spaces' layouts.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype[Any],
        action_shape: tuple[int, ...],
        action_dtype: np.dtype[Any],
    ) -> None:
        self.capacity = capacity
        self.arrays = {
            "obs": np.zeros((capacity, *obs_shape), obs_dtype),
            "actions": np.zeros((capacity, *action_shape), action_dtype),
            "rewards": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, *obs_shape), obs_dtype),
            "terminated": np.zeros(capacity, np.bool_),
            "task_ids": np.zeros(capacity, np.int64),
        }
        self.size = 0
        self.next = 0

    def add(self, step: Step) -> None:
        """Store one transition (overwriting the oldest when full)."""
        row = self.next
        values = (step.obs, step.action, step.reward, step.next_obs, step.terminated)
        for name, value in zip(FIELDS[:5], values, strict=True):
            self.arrays[name][row] = value
        self.arrays["task_ids"][row] = -1 if step.task_id is None else step.task_id
        self.next = (row + 1) % self.capacity
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

    @classmethod
    def for_spec(cls, capacity: int, env_spec: EnvSpec) -> TransitionArrays:
        """Arrays shaped by ``env_spec``'s spaces.

        Raises:
            ValueError: a space without one fixed shape and dtype.
        """
        obs, action = env_spec.observation_space, env_spec.action_space
        if obs.shape is None or obs.dtype is None or action.shape is None or action.dtype is None:
            raise ValueError(f"needs fixed-shape spaces, got {obs} and {action}")
        return cls(capacity, tuple(obs.shape), obs.dtype, tuple(action.shape), action.dtype)

    def state_dict(self) -> dict[str, Any]:
        """The arrays (as tensors) and the ring's position."""
        return {
            "arrays": {name: torch.as_tensor(self.arrays[name]) for name in FIELDS},
            "size": self.size,
            "next": self.next,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for name in FIELDS:
            self.arrays[name][...] = state["arrays"][name].numpy()
        self.size, self.next = int(state["size"]), int(state["next"])


def batch_of(parts: list[dict[str, np.ndarray]]) -> TransitionBatch:
    """Row dicts of :data:`FIELDS` concatenated into one batch."""
    joined = {name: np.concatenate([p[name] for p in parts]) for name in FIELDS}
    return TransitionBatch(**{name: torch.as_tensor(value) for name, value in joined.items()})
