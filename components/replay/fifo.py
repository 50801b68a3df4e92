"""FIFO replay: the newest chunks are kept, the oldest leave first; uniform sampling."""

from __future__ import annotations

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import UniformSampler
from .writers import FIFOWriter


class FIFOReplay(ChunkReplay):
    """FIFO replay (role ``replay``): a ring of chunks sampled uniformly over transitions.

    Rule: once ``ceil(capacity / chunk_steps)`` chunks are complete, each newly completed
    chunk evicts the oldest. It therefore holds the most recent steps: every step of the
    last complete chunks plus the chunks being filled, between ``capacity`` and
    ``capacity + chunk_steps`` steps in a single-env run (less one per episode start).
    With ``chunk_steps=1`` it is the classic transition ring buffer.
    """

    class Config(ReplayConfig):
        """Options of the FIFO replay."""

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        writer = FIFOWriter(chunks_for(config.capacity, config.chunk_steps))
        super().__init__(config, env_spec, [writer], UniformSampler())
