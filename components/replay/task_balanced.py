"""Task-balanced replay: equal per-task shares, a uniform sample within each task."""

from __future__ import annotations

from l2rl.types import EnvSpec

from .component import ChunkReplay, ReplayConfig, chunks_for
from .samplers import UniformSampler
from .writers import TaskBalancedWriter


class TaskBalancedReplay(ChunkReplay):
    """Task-balanced replay (role ``replay``): per-task quotas of ``C / tasks seen`` chunks.

    Rule (:class:`~.writers.TaskBalancedWriter`, CBRS of Chrysakis & Moens 2020 over task
    ids): a chunk of a task below the largest task's share evicts a random chunk of the
    largest task; a chunk of a task at the top is kept by reservoir sampling within that
    task. Chunks never mix tasks, so a chunk ends at every task change. It needs task ids
    (a task-aware scenario); without them every step has task -1 and it is reservoir
    replay. Minibatches are uniform over the stored transitions.
    """

    class Config(ReplayConfig):
        """Options of the task-balanced replay."""

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        writer = TaskBalancedWriter(chunks_for(config.capacity, config.chunk_steps))
        super().__init__(config, env_spec, [writer], UniformSampler())
