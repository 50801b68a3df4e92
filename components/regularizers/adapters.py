"""What the regularizer components share with the framework: agent checks, seeds, spaces.

The plain method objects never import l2rl; their component adapters use these helpers to
check that the agent offers what a method needs, to derive independent random streams from
the run's seed, and to describe a stored observation.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from l2rl.config import ConfigError
from l2rl.core import Agent, PolicyAgent, RunContext
from l2rl.seeding import derive_seed

from .memory import FieldSpec


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

    Task-agnostic runs fire no ``on_task_end``, so nothing is ever consolidated; a silent
    no-op would look like a method that does not help.
    """
    if not ctx.env_spec.task_aware:
        warnings.warn(
            f"{who} consolidates at task ends, which a task-agnostic run does not signal: "
            "it will leave training unchanged",
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
