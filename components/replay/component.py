"""The thin adapter every built-in replay shares: a :class:`ChunkReplayBuffer` on the hooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import Field

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, SequenceBatch, Step, TransitionBatch

from .buffer import ChunkReplayBuffer, StepBatch
from .samplers import Sampler
from .storage import ChunkStorage
from .writers import ChunkWriter


class ReplayConfig(PluginConfig):
    """Options every chunked replay has."""

    capacity: int = Field(
        default=100_000,
        gt=0,
        description="Transitions kept in complete chunks: ceil(capacity / chunk_steps) chunks. "
        "An episode that starts inside a chunk spends one of its frames on its first "
        "observation; the chunks being filled come on top.",
    )
    chunk_steps: int = Field(
        default=50,
        gt=0,
        description="Steps per chunk, the unit a replay keeps or evicts; a chunk stores "
        "chunk_steps + 1 frames, and sequences never cross chunks.",
    )
    max_envs: int | None = Field(
        default=None,
        gt=0,
        description="Parallel training envs accepted; null: the run's num_envs. Each env "
        "fills its own chunk, so each costs one chunk of storage.",
    )


def chunks_for(capacity: int, chunk_steps: int) -> int:
    """Chunks of ``chunk_steps`` steps needed to hold ``capacity`` transitions."""
    return -(-capacity // chunk_steps)


def _layout(space: gym.spaces.Space[Any], what: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of one element of ``space``; a Dict or Tuple space has neither."""
    if space.shape is None or space.dtype is None:
        raise ValueError(f"replay needs a fixed-shape, single-dtype {what} space, got {space}")
    return tuple(space.shape), space.dtype


class ChunkReplay(Component):
    """A replay component (role ``replay``): stores every step, hands out minibatches.

    It is the :class:`~l2rl.core.BatchSource` the builder gives the agent. The work is done
    by a plain :class:`~.buffer.ChunkReplayBuffer` (``self.buffer``); subclasses only choose
    its writers and sampler. Random streams are reseeded from the run's seed at
    ``on_run_start``; before that they behave as for seed 0.

    Args:
        config: validated options.
        env_spec: the scenario's spaces (each must have a fixed shape and dtype).
        writers: the chunk rules, one per buffer.
        sampler: the minibatch rule.
    """

    role = "replay"
    config: ReplayConfig

    def __init__(
        self,
        config: ReplayConfig,
        env_spec: EnvSpec,
        writers: Sequence[ChunkWriter],
        sampler: Sampler,
    ) -> None:
        super().__init__(config, env_spec)
        obs_shape, obs_dtype = _layout(env_spec.observation_space, "observation")
        action_shape, action_dtype = _layout(env_spec.action_space, "action")
        max_envs = config.max_envs or env_spec.num_envs
        slots = sum(w.capacity for w in writers) + max_envs
        storage = ChunkStorage(
            slots, config.chunk_steps, obs_shape, obs_dtype, action_shape, action_dtype
        )
        self.buffer = ChunkReplayBuffer(storage, writers, sampler, max_envs)

    def seed(self, seed: int) -> None:
        """Restart the replay's random streams from the run seed ``seed``."""
        self.buffer.seed(seed)

    def on_run_start(self, ctx: RunContext) -> None:
        """Seed the random streams from the run's seed."""
        self.seed(ctx.seed)

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Store the step."""
        self.buffer.add(step)

    def add(self, step: Step) -> None:
        """Store one env step."""
        self.buffer.add(step)

    def add_batch(self, steps: StepBatch) -> None:
        """Store consecutive steps of one env at once (as :meth:`add` on each would)."""
        self.buffer.add_batch(steps)

    def __len__(self) -> int:
        """Transitions stored."""
        return len(self.buffer)

    @property
    def max_transitions(self) -> int:
        """The most transitions this replay can hold at once (a bound, reached when no
        episode starts inside a chunk): every complete chunk its writers keep, plus each
        env's chunk being filled, one step short of complete (at that step it is
        complete, and the chunk it evicts goes)."""
        chunk = self.config.chunk_steps
        kept = sum(w.capacity for w in self.buffer.writers)
        return kept * chunk + self.buffer.max_envs * (chunk - 1)

    def sample(self, batch_size: int) -> TransitionBatch:
        """``batch_size`` transitions drawn with replacement by this replay's rule."""
        return self.buffer.sample(batch_size)

    def sample_sequences(self, batch_size: int, length: int) -> SequenceBatch:
        """``batch_size`` runs of ``length`` consecutive frames, none crossing a chunk."""
        return self.buffer.sample_sequences(batch_size, length)

    def state_dict(self) -> dict[str, Any]:
        """Storage arrays (sharing memory with the replay), writers, streams, generators."""
        return self.buffer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.buffer.load_state_dict(state)
