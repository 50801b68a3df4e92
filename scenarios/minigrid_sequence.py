"""A short MiniGrid sequence with flat symbolic observations, scored by success rate.

Every task sees MiniGrid's partial 7x7 symbolic view (object, colour, state per cell)
flattened to 147 ``uint8`` values, the same ``Box(0, 10, (147,), uint8)`` for every env (10
is the largest index of MiniGrid's encoding, so networks that scale ``uint8`` inputs by
``1 / high`` see them in ``[0, 1]``), and acts in MiniGrid's ``Discrete(7)`` or, with the
``actions`` option, in its first ``n`` actions (3: turn left, turn right, forward, all a
navigation task needs). MiniGrid pays reward only on reaching the goal, so an
episode succeeds when its return is positive (the runner's rule for :class:`SuccessRate`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401 - importing registers the MiniGrid env ids with gymnasium
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import ImgObsWrapper
from pydantic import Field, field_validator

from l2rl.config import ConfigError, PluginConfig
from l2rl.scenario import TaskFamily
from l2rl.types import SuccessRate, TaskSpec

from .from_envs import check_env_id, tasks_from_envs

DEFAULT_ENV_IDS = (
    "MiniGrid-DoorKey-5x5-v0",
    "MiniGrid-LavaGapS5-v0",
    "MiniGrid-SimpleCrossingS9N1-v0",
)
"""Pick up a key and open a door; cross a lava gap; cross a wall through its gap."""

SYMBOL_HIGH = max(*OBJECT_TO_IDX.values(), *COLOR_TO_IDX.values(), *STATE_TO_IDX.values())
"""The largest value of MiniGrid's symbolic encoding (object, colour and state indices)."""


def make_minigrid_env(
    env_id: str, max_episode_steps: int | None = None, actions: int | None = None
) -> gym.Env[Any, Any]:
    """A fresh MiniGrid env with flat symbolic ``uint8`` observations.

    Args:
        env_id: a registered MiniGrid env id.
        max_episode_steps: replaces MiniGrid's own step limit (``max_steps``, which also
            scales its reward ``1 - 0.9 * steps / max_steps``); ``None`` keeps the env's.
        actions: act in MiniGrid's first ``actions`` actions only; ``None``: all of them.

    Raises:
        ConfigError: ``env_id`` is not a MiniGrid env.
    """
    env = gym.make(env_id)
    grid = env.unwrapped
    if not isinstance(grid, MiniGridEnv):
        env.close()
        raise ConfigError(f"{env_id!r} is not a MiniGrid env")
    if max_episode_steps is not None:
        # Set MiniGrid's own limit rather than adding a TimeLimit, which could only shorten
        # episodes and would leave the reward scaled to the old limit.
        grid.max_steps = max_episode_steps
    image_only = ImgObsWrapper(env)  # type: ignore[no-untyped-call]  # minigrid is untyped
    flat = FlatImage(image_only)
    return flat if actions is None else FirstActions(flat, actions)


class FlatImage(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """The image observation flattened to 1-D, as gymnasium's ``FlattenObservation`` gives
    it; a plain class (that one keeps a lambda) so the env pickles whole and a checkpoint
    inside a window continues its episode."""

    def __init__(self, env: gym.Env[np.ndarray, Any]) -> None:
        super().__init__(env)
        image = env.observation_space
        if not isinstance(image, gym.spaces.Box):
            raise TypeError(f"FlatImage needs a Box image space, got {image}")
        self._dtype = image.dtype
        # MiniGrid declares 0..255 but encodes indices up to SYMBOL_HIGH: declaring the
        # true range keeps a 1/high input scaling from squashing them to [0, 0.04].
        self.observation_space = gym.spaces.Box(
            0, SYMBOL_HIGH, (int(np.prod(image.shape)),), dtype=image.dtype.type
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The image, flattened (as ``gymnasium.spaces.flatten`` does a Box)."""
        return np.asarray(observation, dtype=self._dtype).reshape(-1)


class FirstActions(gym.ActionWrapper[np.ndarray, Any, Any]):
    """Narrow a ``Discrete`` action space to its first ``n`` actions (same indices).

    Raises:
        ValueError: ``n`` is not in ``1..env.action_space.n``, or (at a step) an action
            outside the narrowed space.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], n: int) -> None:
        super().__init__(env)
        full = env.action_space
        if not isinstance(full, gym.spaces.Discrete) or not 1 <= n <= int(full.n):
            raise ValueError(f"cannot keep the first {n} actions of {full}")
        self.action_space = gym.spaces.Discrete(n)

    def action(self, action: int) -> int:
        """``action`` itself, checked against the narrowed space."""
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        return action


class MiniGridSequenceConfig(PluginConfig):
    """Options of ``minigrid-sequence``."""

    env_ids: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENV_IDS),
        min_length=1,
        description="MiniGrid env ids in training order; task names are the ids.",
    )
    max_episode_steps: int | None = Field(
        default=None,
        gt=0,
        description="Episode step limit for every task (None: each env's own).",
    )
    actions: int | None = Field(
        default=None,
        ge=1,
        le=7,
        description="Act in MiniGrid's first N actions (3: left, right, forward); None: all 7.",
    )

    @field_validator("env_ids")
    @classmethod
    def _known_envs(cls, env_ids: list[str]) -> list[str]:
        for env_id in env_ids:
            check_env_id(env_id)
        return env_ids


def _build(config: MiniGridSequenceConfig) -> tuple[TaskSpec, ...]:
    return tasks_from_envs(
        [
            partial(make_minigrid_env, env_id, config.max_episode_steps, config.actions)
            for env_id in config.env_ids
        ],
        names=config.env_ids,
        normalizer=SuccessRate(),
    )


minigrid_sequence: TaskFamily[MiniGridSequenceConfig] = TaskFamily(
    MiniGridSequenceConfig,
    _build,
    "A short MiniGrid sequence (DoorKey, LavaGap, SimpleCrossing), flat symbolic observations.",
)
"""The ``minigrid-sequence`` task family."""
