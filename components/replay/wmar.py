"""WMAR distribution-matching replay: short-term FIFO + long-term top-keys buffer, 50:50."""

from __future__ import annotations

from pydantic import Field

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import BufferChoiceSampler
from .writers import ChunkWriter, FIFOWriter, TopKeysWriter


class WMARReplay(ChunkReplay):
    """WMAR replay (role ``replay``; Yang et al. 2024, "Augmenting Replay in World Models
    for Continual Reinforcement Learning", reference code Cerenaut/WMAR ``replay.py``).

    Rules: steps are stored in chunks of ``chunk_steps`` consecutive steps, episodes
    concatenated (``is_first`` marks where one starts). Two buffers of equal size split
    ``capacity``: a short-term FIFO (:class:`~.writers.FIFOWriter`) and a long-term
    buffer that keeps the chunks with the top random keys ``k ~ N(0, 1)``
    (:class:`~.writers.TopKeysWriter`: a uniform sample of every chunk ever seen). Every
    complete chunk is offered to both; a chunk both hold is stored once. Each minibatch
    comes from one buffer picked with probability 1/2 (:class:`~.samplers.BufferChoiceSampler`);
    the chunks being filled belong to the short-term buffer. The paper samples 16
    sequences of 32 steps (``sample_sequences(16, 32)``).
    """

    class Config(ReplayConfig):
        """Options of the WMAR replay."""

        capacity: int = Field(
            default=262_144,
            gt=0,
            description="Transitions over both buffers together: each holds "
            "ceil(capacity / 2 / chunk_steps) chunks. A FIFO of the same capacity uses the "
            "same memory.",
        )
        chunk_steps: int = Field(default=512, gt=0, description="Steps per chunk (WMAR: T = 512).")

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        per_buffer = chunks_for(config.capacity, 2 * config.chunk_steps)
        writers: list[ChunkWriter] = [FIFOWriter(per_buffer), TopKeysWriter(per_buffer)]
        super().__init__(config, env_spec, writers, BufferChoiceSampler())

    @property
    def short_term(self) -> FIFOWriter:
        """The short-term FIFO buffer's writer."""
        writer = self.buffer.writers[0]
        assert isinstance(writer, FIFOWriter)
        return writer

    @property
    def long_term(self) -> TopKeysWriter:
        """The long-term (top random keys) buffer's writer."""
        writer = self.buffer.writers[1]
        assert isinstance(writer, TopKeysWriter)
        return writer
