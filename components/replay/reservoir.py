"""Reservoir replay: a uniform sample of every chunk ever seen (Vitter's Algorithm R)."""

from __future__ import annotations

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import UniformSampler
from .writers import ReservoirWriter


class ReservoirReplay(ChunkReplay):
    """Reservoir replay (role ``replay``): memory that is a uniform sample of the stream.

    Rule (:class:`~.writers.ReservoirWriter`): the ``n``-th complete chunk replaces a
    uniformly random held chunk with probability ``C / n`` (``C`` chunks held), so every
    chunk ever seen is held with the same probability, whatever task it came from
    (Vitter 1985; Isele & Cosgun 2018 for RL; Kessler et al. 2022 for world models).
    Minibatches are uniform over the stored transitions.
    """

    class Config(ReplayConfig):
        """Options of the reservoir replay."""

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        writer = ReservoirWriter(chunks_for(config.capacity, config.chunk_steps))
        super().__init__(config, env_spec, [writer], UniformSampler())
