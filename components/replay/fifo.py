"""FIFO replay: a ring buffer sampled uniformly; the oldest transition leaves first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import Field

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, Step, TransitionBatch

from .samplers import UniformSampler
from .storage import TransitionStorage
from .writers import FIFOWriter

_SAMPLER_STREAM = 0x5EED_F1F0
"""Mixed with the run seed so the sampler's stream differs from the agent's, which is
seeded from the same run seed."""


def _layout(space: gym.spaces.Space[Any], what: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of one element of ``space``; a Dict or Tuple space has neither."""
    if space.shape is None or space.dtype is None:
        raise ValueError(f"FIFO replay needs a fixed-shape, single-dtype {what} space, got {space}")
    return tuple(space.shape), space.dtype


class FIFOReplay(Component):
    """Replay (role ``replay``): stores every step, evicts the oldest, samples uniformly.

    It is the :class:`~l2rl.core.BatchSource` the builder hands the agent. Storage, writer
    and sampler are separate small objects (:mod:`.storage`, :mod:`.writers`,
    :mod:`.samplers`); this class only wires them to the hooks. The sampler is reseeded
    from the run seed at ``on_run_start``; before that it behaves as for seed 0.
    """

    role = "replay"

    class Config(PluginConfig):
        """Options of the FIFO replay."""

        capacity: int = Field(
            default=100_000, gt=0, description="Transitions held; beyond it the oldest leave."
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        obs_shape, obs_dtype = _layout(env_spec.observation_space, "observation")
        action_shape, action_dtype = _layout(env_spec.action_space, "action")
        self.storage = TransitionStorage(
            config.capacity, obs_shape, obs_dtype, action_shape, action_dtype
        )
        self.writer = FIFOWriter(config.capacity)
        self.sampler = UniformSampler([0, _SAMPLER_STREAM])

    def seed(self, seed: int) -> None:
        """Restart the sampler's random stream from the run seed ``seed``."""
        self.sampler.reseed([seed, _SAMPLER_STREAM])

    def on_run_start(self, ctx: RunContext) -> None:
        """Seed the sampler from the run's seed."""
        self.seed(ctx.seed)

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Store the transition."""
        self.add(step)

    def add(self, step: Step) -> None:
        """Store ``step`` in the slot the writer picks (the oldest once full)."""
        self.storage.write(self.writer.next_slot(), step)

    def __len__(self) -> int:
        """Number of transitions held."""
        return self.writer.size

    def sample(self, batch_size: int) -> TransitionBatch:
        """``batch_size`` transitions drawn uniformly with replacement from those held."""
        return self.storage.gather(self.sampler.indices(len(self), batch_size))

    def state_dict(self) -> dict[str, Any]:
        """Storage arrays (sharing memory with the buffer), writer ring and sampler stream."""
        return {
            "storage": self.storage.state_dict(),
            "writer": self.writer.state_dict(),
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.storage.load_state_dict(state["storage"])
        self.writer.load_state_dict(state["writer"])
        self.sampler.load_state_dict(state["sampler"])
