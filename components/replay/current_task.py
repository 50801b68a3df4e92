"""Current-task replay: only the task being trained is kept; uniform sampling."""

from __future__ import annotations

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import UniformSampler
from .writers import CurrentTaskWriter


class CurrentTaskReplay(ChunkReplay):
    """Current-task replay (role ``replay``): the newest task's chunks, sampled uniformly.

    Rule (:class:`~.writers.CurrentTaskWriter`): when the first chunk of a new task is
    complete, every chunk of the previous task leaves; within a task the oldest leaves
    first past ``ceil(capacity / chunk_steps)`` chunks. The chunks being filled are
    sampled too, so for its first ``chunk_steps`` steps a new task is sampled beside the
    old one's chunks. This is the data of fine-tuning a model task by task (HyperCRL's
    baselines train on the current task's transitions only).
    """

    class Config(ReplayConfig):
        """Options of the current-task replay."""

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        writer = CurrentTaskWriter(chunks_for(config.capacity, config.chunk_steps))
        super().__init__(config, env_spec, [writer], UniformSampler())
