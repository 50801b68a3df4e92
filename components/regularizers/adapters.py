"""What the regularizer components share with the framework: agent checks, seeds, spaces.

The plain method objects never import l2rl; their component adapters use these helpers to
check that the agent offers what a method needs, to derive independent random streams from
the run's seed, and to describe a stored observation. The adapters' shared skeletons are
here too: :class:`TaskEndRegularizer` (warns where a run has no task ends),
:class:`PenaltyRegularizer` (adds a :class:`.params.QuadraticPenalty` as a loss term) and
:class:`WindowSampling` (keeps a sample of the current window for use at its end).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from l2rl.config import ConfigError
from l2rl.core import Agent, Component, PolicyAgent, RunContext
from l2rl.seeding import derive_seed
from l2rl.types import EnvSpec, Losses, ParametersChanged, Step, TaskInfo

from .memory import FieldSpec, Reservoir
from .params import QuadraticPenalty


def require_policy_agent(agent: Agent, who: str) -> PolicyAgent:
    """``agent`` as a :class:`~l2rl.core.PolicyAgent`, or a clear error.

    Raises:
        TypeError: the agent has no ``policy_distribution``/``state_value``.
    """
    if not isinstance(agent, PolicyAgent):
        raise TypeError(
            f"{who} needs an agent that exposes its policy: policy_distribution(obs, task_ids) "
            f"and state_value(obs, task_ids) (l2rl.core.PolicyAgent); "
            f"{type(agent).__name__} has not"
        )
    return agent


def warn_without_boundaries(ctx: RunContext, who: str) -> None:
    """Warn that a method which consolidates at task ends will do nothing in this run.

    Task-agnostic runs without a task-change detector fire no ``on_task_end``, so nothing
    is ever consolidated; a silent no-op would look like a method that does not help.
    """
    if not ctx.env_spec.task_aware and not ctx.infers_tasks:
        warnings.warn(
            f"{who} consolidates at task ends, which a task-agnostic run without a "
            "task-change detector (role detector) does not signal: it will leave training "
            "unchanged",
            UserWarning,
            stacklevel=2,
        )


def stream_seed(ctx: RunContext, stream: int, *parts: int) -> int:
    """A seed for one random stream of a component, independent of the agent's."""
    return derive_seed(ctx.seed, stream, *parts)


def space_field(space: gym.spaces.Space[Any], what: str) -> FieldSpec:
    """Shape and dtype of one element of ``space``, for a :class:`.memory.Reservoir`.

    Raises:
        ConfigError: a space without one fixed shape and dtype (Dict, Tuple).
    """
    if space.shape is None or space.dtype is None:
        raise ConfigError(f"needs a fixed-shape, single-dtype {what} space, got {space}")
    return tuple(space.shape), np.dtype(space.dtype)


def observation_fields(space: gym.spaces.Space[Any]) -> dict[str, FieldSpec]:
    """Reservoir fields of an observation and its task id (-1 where unknown)."""
    return {
        "obs": space_field(space, "observation"),
        "task_ids": ((), np.dtype(np.int64)),
    }


def task_id_or_unknown(task_id: int | None) -> int:
    """The stored form of a step's task id: -1 where the run gives none."""
    return -1 if task_id is None else task_id


def transition_fields(env_spec: EnvSpec) -> dict[str, FieldSpec]:
    """Reservoir fields of a whole transition, named as :class:`~l2rl.types.TransitionBatch`'s."""
    return {
        "obs": space_field(env_spec.observation_space, "observation"),
        "actions": space_field(env_spec.action_space, "action"),
        "rewards": ((), np.dtype(np.float32)),
        "next_obs": space_field(env_spec.observation_space, "observation"),
        "terminated": ((), np.dtype(np.bool_)),
        "task_ids": ((), np.dtype(np.int64)),
    }


def transition_row(step: Step) -> dict[str, Any]:
    """A step as a row of :func:`transition_fields`."""
    return {
        "obs": step.obs,
        "actions": step.action,
        "rewards": step.reward,
        "next_obs": step.next_obs,
        "terminated": step.terminated,
        "task_ids": task_id_or_unknown(step.task_id),
    }


class TaskEndRegularizer(Component):
    """A regularizer that consolidates at task ends: it warns where the run signals none."""

    role = "regularizer"

    def on_run_start(self, ctx: RunContext) -> None:
        """Warn if the run gives no task boundaries."""
        warn_without_boundaries(ctx, f"{self.role} {self.name!r}")


class PenaltyRegularizer(TaskEndRegularizer):
    """Shared adapter of the quadratic penalties: :attr:`penalty` as the loss term
    :attr:`loss_key` once a task was consolidated; the state is the penalty's.

    Subclasses make :attr:`penalty` in ``__init__`` and consolidate it at task ends.
    """

    loss_key: ClassVar[str]
    penalty: QuadraticPenalty

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """The penalty once a task was consolidated."""
        if not self.penalty.active:
            return {}
        return {self.loss_key: self.penalty(ctx.agent.networks())}

    def on_parameters_changed(self, ctx: RunContext, change: ParametersChanged) -> None:
        """The regularized learner grew or shrank: the penalty follows its layout."""
        if change.learner == self.learner:
            self.penalty.follow(ctx.agent.networks())

    def state_dict(self) -> dict[str, Any]:
        """The penalty's state."""
        return self.penalty.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.penalty.load_state_dict(state)


class WindowSampling(TaskEndRegularizer):
    """Shared adapter of the methods that use a sample of each window at its end.

    :attr:`window` keeps a uniform sample (:class:`.memory.Reservoir`) of the current
    window's steps, a :meth:`_window_row` each: reseeded from the run's seed on the
    :attr:`sample_stream` at the run's start, cleared when a window starts. Subclasses make
    it in ``__init__`` and use it in ``on_task_end``.
    """

    sample_stream: ClassVar[int]
    """The random stream of the window's sample, one per method."""
    window: Reservoir

    def _window_row(self, step: Step) -> dict[str, Any]:
        """What the sample keeps of a step; by default its :func:`observation_fields`."""
        return {"obs": step.obs, "task_ids": task_id_or_unknown(step.task_id)}

    def on_run_start(self, ctx: RunContext) -> None:
        """Warn without task boundaries, seed the window's sample."""
        super().on_run_start(ctx)
        self.window.reseed(stream_seed(ctx, self.sample_stream))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A new window: sample its steps from scratch."""
        self.window.clear()

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Offer the step to the window's sample."""
        self.window.add(self._window_row(step))
