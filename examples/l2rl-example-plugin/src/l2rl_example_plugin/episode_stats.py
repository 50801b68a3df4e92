"""Episode counts and returns per task, logged while an l2rl run trains."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, EvalRecord, Step, TaskInfo
from pydantic import Field

UNKNOWN_TASK = "all"
"""Where episodes count in task-agnostic runs, which never say which task is running."""


class EpisodeTally:
    """Finished episodes and their returns, per task name.

    The component's logic as a plain object: it knows nothing of hooks or runs, so it can
    be tested, and reused, on its own.

    Args:
        window: how many of a task's latest returns :meth:`recent_mean` averages.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.episodes: dict[str, int] = {}
        self.total_return: dict[str, float] = {}
        self.recent: dict[str, deque[float]] = {}

    def add(self, task: str, episode_return: float) -> None:
        """Count one finished episode of ``task``."""
        self.episodes[task] = self.episodes.get(task, 0) + 1
        self.total_return[task] = self.total_return.get(task, 0.0) + episode_return
        self.recent.setdefault(task, deque(maxlen=self.window)).append(episode_return)

    def mean_return(self, task: str) -> float:
        """Mean return of all of ``task``'s episodes so far."""
        return self.total_return[task] / self.episodes[task]

    def recent_mean(self, task: str) -> float:
        """Mean return of ``task``'s last ``window`` episodes."""
        recent = self.recent[task]
        return sum(recent) / len(recent)

    def state_dict(self) -> dict[str, Any]:
        """Counts and returns as plain dicts and lists (safe for ``torch.load``)."""
        return {
            "episodes": dict(self.episodes),
            "total_return": dict(self.total_return),
            "recent": {task: list(returns) for task, returns in self.recent.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.episodes = dict(state["episodes"])
        self.total_return = dict(state["total_return"])
        self.recent = {
            task: deque(returns, maxlen=self.window) for task, returns in state["recent"].items()
        }


class EpisodeStats(Component):
    """Counts training episodes per task and logs their returns through ``ctx.logger``.

    Scalars, under the configured ``prefix``:

    - ``<prefix>/<task>/return``: each finished episode's return;
    - ``<prefix>/<task>/recent_mean``: mean return of the task's last ``window`` episodes;
    - ``<prefix>/<task>/episodes``: episodes finished, at each task end (task-aware runs).

    In task-agnostic runs every episode counts under the task name ``"all"``.
    """

    role = "custom"

    class Config(PluginConfig):
        """Options of ``episode-stats``."""

        window: int = Field(default=10, gt=0, description="Episodes in the running mean.")
        prefix: str = Field(
            default="episode_stats", min_length=1, description="Prefix of the logged tags."
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.tally = EpisodeTally(config.window)
        self.episode_return = 0.0

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Add the reward; at an episode's end, count it and log its return."""
        self.episode_return += step.reward
        if not (step.terminated or step.truncated):
            return
        task = ctx.task.name if ctx.task is not None else UNKNOWN_TASK
        self.tally.add(task, self.episode_return)
        prefix = f"{self.config.prefix}/{task}"
        ctx.logger.scalar(f"{prefix}/return", self.episode_return, step.global_step)
        ctx.logger.scalar(f"{prefix}/recent_mean", self.tally.recent_mean(task), step.global_step)
        self.episode_return = 0.0

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """Drop the unfinished episode when a training window ends.

        The runner starts every window on a fresh environment, so the episode in progress
        at a window's end never finishes. A window's end is marked by its ``block_end``
        evaluation, in task-agnostic runs too, where ``on_task_end`` never fires.
        """
        if records and records[0].block_end:
            self.episode_return = 0.0

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Log how many episodes the task has finished so far."""
        count = self.tally.episodes.get(task.name, 0)
        ctx.logger.scalar(f"{self.config.prefix}/{task.name}/episodes", count, ctx.global_step)

    def state_dict(self) -> dict[str, Any]:
        """The tally and the return of the episode in progress."""
        return {"tally": self.tally.state_dict(), "episode_return": self.episode_return}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.tally.load_state_dict(state["tally"])
        self.episode_return = float(state["episode_return"])
