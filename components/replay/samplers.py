"""Samplers: which filled slots a minibatch reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class UniformSampler:
    """Slots drawn uniformly, with replacement, from the filled slots ``0..size-1``.

    Args:
        seed: seed of the sampler's own random generator (an int or a sequence of ints, as
            :func:`numpy.random.default_rng` takes).
    """

    def __init__(self, seed: int | Sequence[int]) -> None:
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the random stream from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def indices(self, size: int, batch_size: int) -> np.ndarray:
        """``batch_size`` slot indices in ``[0, size)``.

        Raises:
            ValueError: nothing is stored yet (``size == 0``).
        """
        if size <= 0:
            raise ValueError("cannot sample from an empty replay")
        return self.rng.integers(0, size, size=batch_size)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (plain Python ints and strings)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the random stream saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]
