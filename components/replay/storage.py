"""Preallocated transition storage: the one place that knows how transitions are laid out.

Writers decide *which slot* a transition goes to and samplers decide *which slots* a batch
reads; the storage only writes a slot and gathers slots. A layout change (e.g. storing each
frame once instead of ``obs`` and ``next_obs``) therefore touches this module alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from l2rl.types import Step, TransitionBatch

_UNKNOWN_TASK = -1
"""Stored task id of a transition from a task-agnostic run (``Step.task_id is None``)."""


class TransitionStorage:
    """Fixed-capacity numpy arrays holding one transition per slot.

    Batches come out as torch tensors: ``obs``/``next_obs`` keep the observation dtype (so
    uint8 frames stay compact until the agent converts them), ``actions`` keep the action
    dtype, ``rewards`` are float32, ``terminated`` bool and ``task_ids`` int64 (-1 for an
    unknown task).

    Args:
        capacity: number of slots.
        obs_shape: shape of one observation.
        obs_dtype: dtype of observations.
        action_shape: shape of one action (``()`` for a discrete action).
        action_dtype: dtype of actions.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype[Any] | type,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype[Any] | type,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        # np.zeros maps untouched pages lazily, so a large buffer costs memory only as it fills.
        self._arrays: dict[str, np.ndarray] = {
            "obs": np.zeros((capacity, *obs_shape), dtype=obs_dtype),
            "next_obs": np.zeros((capacity, *obs_shape), dtype=obs_dtype),
            "actions": np.zeros((capacity, *action_shape), dtype=action_dtype),
            "rewards": np.zeros(capacity, dtype=np.float32),
            "terminated": np.zeros(capacity, dtype=np.bool_),
            "task_ids": np.zeros(capacity, dtype=np.int64),
        }

    def write(self, index: int, step: Step) -> None:
        """Store ``step`` in slot ``index``, overwriting what was there."""
        arrays = self._arrays
        arrays["obs"][index] = step.obs
        arrays["next_obs"][index] = step.next_obs
        arrays["actions"][index] = step.action
        arrays["rewards"][index] = step.reward
        arrays["terminated"][index] = step.terminated
        arrays["task_ids"][index] = _UNKNOWN_TASK if step.task_id is None else step.task_id

    def gather(self, indices: np.ndarray) -> TransitionBatch:
        """The transitions in slots ``indices`` (repeats allowed), as a batch of tensors."""
        # Fancy indexing copies into fresh arrays, so from_numpy shares nothing with the
        # buffer; it was ~4.5x faster than indexing torch tensors here (DESIGN.md section 7).
        rows = {key: torch.from_numpy(array[indices]) for key, array in self._arrays.items()}
        return TransitionBatch(**rows)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The arrays as tensors that share memory with the storage (like ``nn.Module``).

        Save or copy them before writing more transitions.
        """
        return {key: torch.from_numpy(array) for key, array in self._arrays.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy arrays saved by :meth:`state_dict` into this storage.

        Raises:
            ValueError: an array is missing or its shape or dtype differs from this storage's.
        """
        for key, array in self._arrays.items():
            if key not in state:
                raise ValueError(f"storage state has no {key!r} array")
            saved = state[key].numpy()
            if saved.shape != array.shape or saved.dtype != array.dtype:
                raise ValueError(
                    f"storage state {key!r} is {saved.dtype}{list(saved.shape)}, "
                    f"this storage holds {array.dtype}{list(array.shape)}"
                )
            array[...] = saved
