"""HalfCheetah under different gravities (HyperCRL's MuJoCo gravity tasks), on MuJoCo.

Each task is gymnasium's ``HalfCheetah-v5`` with the model's gravity set to ``(0, 0, -g)``
(HyperCRL, ``hypercrl/envs/mujoco/gravity_envs.py``, sets ``model.opt.gravity`` the same
way) and nothing else. The observation keeps the root's x position
(``exclude_current_positions_from_observation=False``, 18 numbers), so that the env's
reward ``(x' - x) / dt - 0.1 ||a||^2`` (``dt`` = 0.05) is a function of
``(obs, action, next_obs)``: :func:`cheetah_reward`, given to every task for model-based
agents, equals it exactly.

Needs the ``mujoco`` extra (``pip install "l2rl[mujoco]"``; gymnasium's MuJoCo envs also
import ``imageio``); the module imports without it, and building an environment without it
is a :class:`~l2rl.config.ConfigError` that says what to install. There are no measured
score bounds: ``return_low`` and ``return_high`` are required (a task's score is its
return scaled linearly between them).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import torch
from pydantic import Field, model_validator

from l2rl.config import ConfigError, PluginConfig
from l2rl.return_bounds import check_parameters, return_bounds
from l2rl.scenario import TaskFamily
from l2rl.types import ReturnRange, TaskSpec

CHEETAH_DT = 0.05
"""Seconds per env step of HalfCheetah-v5 (5 MuJoCo steps of 0.01 s)."""
CONTROL_COST = 0.1
"""HalfCheetah-v5's ``ctrl_cost_weight``."""


def make_cheetah(gravity: float, max_episode_steps: int) -> gym.Env[Any, Any]:
    """A fresh ``HalfCheetah-v5`` (x position observed) with gravity ``(0, 0, -gravity)``.

    Raises:
        ConfigError: MuJoCo (or gymnasium's MuJoCo dependencies) is not installed.
    """
    try:
        env = gym.make(
            "HalfCheetah-v5",
            exclude_current_positions_from_observation=False,
            max_episode_steps=max_episode_steps,
        )
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise ConfigError(
            f"mujoco-gravity needs MuJoCo: pip install 'l2rl[mujoco]' imageio ({exc})"
        ) from exc
    env.unwrapped.model.opt.gravity[:] = [0.0, 0.0, -gravity]  # type: ignore[attr-defined]
    return env


def cheetah_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """HalfCheetah-v5's reward ``(x' - x) / dt - 0.1 ||a||^2`` of a batch (``x`` = entry 0)."""
    forward = (next_obs[..., 0] - obs[..., 0]) / CHEETAH_DT
    return forward - CONTROL_COST * (action**2).sum(-1)


class MujocoGravityConfig(PluginConfig):
    """Options of ``mujoco-gravity``."""

    gravities: list[float] = Field(
        default_factory=lambda: [9.81, 4.905, 14.715],
        min_length=1,
        description="Gravity of each task, in training order (task names: `g=<value>`); "
        "default Earth's, half and one and a half of it.",
    )
    max_episode_steps: int = Field(default=1000, gt=0, description="Episode time limit.")
    return_low: list[float] | None = Field(
        default=None, description="Return scored 0, one per task (required: none measured)."
    )
    return_high: list[float] | None = Field(
        default=None, description="Return scored 1, one per task (required: none measured)."
    )

    @model_validator(mode="after")
    def _valid(self) -> MujocoGravityConfig:
        check_parameters(self.gravities, "gravity")
        self.bounds()  # fail at validation, not when the scenario is built
        return self

    def bounds(self) -> list[tuple[float, float]]:
        """The given (low, high) score bounds of each task."""
        return return_bounds(
            self.gravities,
            "gravity",
            self.return_low,
            self.return_high,
            self.max_episode_steps,
            self.max_episode_steps,
            {},
        )


def _build(config: MujocoGravityConfig) -> list[TaskSpec]:
    return [
        TaskSpec(
            name=f"g={gravity:g}",
            make_env=partial(make_cheetah, gravity, config.max_episode_steps),
            normalizer=ReturnRange(low, high),
            params={"gravity": gravity, "max_episode_steps": config.max_episode_steps},
            reward_fn=cheetah_reward,
        )
        for gravity, (low, high) in zip(config.gravities, config.bounds(), strict=True)
    ]


mujoco_gravity: TaskFamily[MujocoGravityConfig] = TaskFamily(
    MujocoGravityConfig,
    _build,
    "HalfCheetah-v5 under different gravities (HyperCRL's MuJoCo gravity tasks); needs the "
    "mujoco extra; return bounds required.",
)
"""The ``mujoco-gravity`` task family."""
