"""Scenarios: distinct tasks plus a training schedule, and the task families that make them.

A *task family* is what the ``l2rl.scenarios`` entry-point group registers: a typed options
model and a function that turns validated options into tasks. The run config then decides
the schedule (steps per task, cycles) and the setting (task-aware or task-agnostic), so
cycles and reference runs are scenario features, not special code in the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import gymnasium as gym

from l2rl.config import ConfigError, PluginConfig, validate_options
from l2rl.types import EnvSpec, TaskBlock, TaskSpec

C = TypeVar("C", bound=PluginConfig)


class TaskFamily(Generic[C]):
    """A registered scenario: options model + builder of the task list.

    Args:
        config_model: the options' pydantic model (unknown keys are errors).
        build: turns validated options into the scenario's distinct tasks, in order.
        description: one line shown by ``l2rl list``.
    """

    def __init__(
        self,
        config_model: type[C],
        build: Callable[[C], Sequence[TaskSpec]],
        description: str,
    ) -> None:
        self.Config = config_model
        self._build = build
        self.description = description

    def tasks(
        self, options: Mapping[str, Any], where: str = "scenario.options"
    ) -> tuple[TaskSpec, ...]:
        """Validate ``options`` and build the tasks."""
        config = validate_options(self.Config, options, where)
        tasks = tuple(self._build(config))
        if not tasks:
            raise ConfigError(f"{where}: the scenario has no tasks")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: task names must be unique, got {names}")
        return tasks


@dataclass(frozen=True)
class Scenario:
    """Distinct tasks and the order and length of their training windows.

    Attributes:
        name: the scenario's name.
        tasks: the distinct tasks; ``TaskBlock.task_index`` points into this.
        schedule: the training windows, in order (a cycle repeats indices).
        task_aware: whether agent and components are told task ids and boundaries.
    """

    name: str
    tasks: tuple[TaskSpec, ...]
    schedule: tuple[TaskBlock, ...]
    task_aware: bool

    @classmethod
    def sequence(
        cls,
        name: str,
        tasks: Sequence[TaskSpec],
        steps_per_task: int,
        cycles: int = 1,
        task_aware: bool = True,
    ) -> Scenario:
        """Tasks in order, ``steps_per_task`` steps each, the whole sequence ``cycles`` times."""
        if steps_per_task <= 0 or cycles <= 0:
            raise ConfigError(
                f"steps_per_task and cycles must be positive, got {steps_per_task}, {cycles}"
            )
        schedule = tuple(
            TaskBlock(task_index=i, steps=steps_per_task)
            for _ in range(cycles)
            for i in range(len(tasks))
        )
        return cls(name=name, tasks=tuple(tasks), schedule=schedule, task_aware=task_aware)

    def single_task(self, task_index: int) -> Scenario:
        """The reference scenario: one task alone, from scratch, for its first window's budget.

        Forward transfer compares the AUC of a task's first window with this run's AUC, so
        both cover the same number of steps (in cycles too).
        """
        steps = next(b.steps for b in self.schedule if b.task_index == task_index)
        task = self.tasks[task_index]
        return Scenario(
            name=f"{self.name}/reference/{task.name}",
            tasks=(task,),
            schedule=(TaskBlock(task_index=0, steps=steps),),
            task_aware=self.task_aware,
        )

    @property
    def total_steps(self) -> int:
        """Env steps over the whole schedule."""
        return sum(b.steps for b in self.schedule)

    def env_spec(self, num_envs: int = 1) -> EnvSpec:
        """Build each task's env once and check that all share one pair of spaces.

        Args:
            num_envs: training envs the run will step in lockstep (recorded in the spec).

        Raises:
            ConfigError: the spaces differ across tasks (declare an adapter in the task
                factory, e.g. pad observations, to make them agree).
        """
        spaces: list[tuple[gym.spaces.Space[Any], gym.spaces.Space[Any]]] = []
        for task in self.tasks:
            env = task.make_env()
            try:
                spaces.append((env.observation_space, env.action_space))
            finally:
                env.close()
        obs0, act0 = spaces[0]
        for task, (obs, act) in zip(self.tasks[1:], spaces[1:], strict=True):
            if obs != obs0 or act != act0:
                raise ConfigError(
                    f"scenario {self.name!r}: task {task.name!r} has spaces "
                    f"(obs={obs}, action={act}) but task {self.tasks[0].name!r} has "
                    f"(obs={obs0}, action={act0}); tasks must share spaces or the scenario "
                    "must declare an adapter that makes them agree"
                )
        return EnvSpec(
            observation_space=obs0,
            action_space=act0,
            num_tasks=len(self.tasks),
            task_aware=self.task_aware,
            num_envs=num_envs,
            reward_fns=tuple(task.reward_fn for task in self.tasks),
        )
