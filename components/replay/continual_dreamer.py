"""Continual-Dreamer replay: reservoir storage, 50:50 recency-biased chunk sampling."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import RecencyBiasedSampler
from .writers import FIFOWriter, ReservoirWriter


class ContinualDreamerReplay(ChunkReplay):
    """Continual-Dreamer replay (role ``replay``; Kessler et al. 2022, "The Surprising
    Effectiveness of Latent World Models for Continual Reinforcement Learning").

    Rules: chunks are kept by reservoir sampling (:class:`~.writers.ReservoirWriter`; or
    FIFO, the paper's baseline, with ``writer: fifo``). Each sampled transition or
    sequence first picks a chunk: with probability ``recent_fraction`` from a
    triangular(0, n, n) distribution over the ``n`` chunks ordered oldest first (recency
    bias), otherwise uniformly (:class:`~.samplers.RecencyBiasedSampler`), then a uniform
    position inside it. The paper stores whole episodes and samples episodes, then
    sequences of 50 steps with batch 16 (``sample_sequences(16, 50)``); here the unit is a
    chunk of ``chunk_steps`` steps, episodes concatenated, so that any episode length
    fits the preallocated storage. The reference code's reservoir works on episodes of
    varying length: it adds each new episode, removes a uniformly random held one (the new
    one included) with probability held/seen, then random ones while over its step budget;
    here it is Vitter's rule (Algorithm R) on equal-size chunks.
    """

    class Config(ReplayConfig):
        """Options of the Continual-Dreamer replay."""

        chunk_steps: int = Field(
            default=200,
            gt=0,
            description="Steps per chunk, the unit the recency rule ranks; at least the "
            "sequence length minus one.",
        )
        recent_fraction: float = Field(
            default=0.5,
            ge=0.0,
            le=1.0,
            description="Probability that a draw is recency-biased (triangular) rather than "
            "uniform; 0.5 is the paper's 50:50.",
        )
        writer: Literal["reservoir", "fifo"] = Field(
            default="reservoir", description="Which chunks are kept: reservoir or FIFO."
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        chunks = chunks_for(config.capacity, config.chunk_steps)
        writer = ReservoirWriter(chunks) if config.writer == "reservoir" else FIFOWriter(chunks)
        sampler = RecencyBiasedSampler(config.recent_fraction)
        super().__init__(config, env_spec, [writer], sampler)
