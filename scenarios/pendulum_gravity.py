"""Pendulum swing-up under different gravities: a continuous-control sequence for SAC.

Each task is gymnasium's ``Pendulum-v1`` with its gravity ``g`` changed and nothing else;
the default sequence ``g = 10, 12, 14, 16, 18`` is HyperCRL's (Huang et al. 2020: gravity
``10 + 2 * task``). Stronger gravity needs more swinging and firmer holding, so a policy
tuned to one ``g`` is off on the others. All tasks share the observation space
``Box([-1, -1, -8], [1, 1, 8])`` (cos, sin, angular velocity) and the action space
``Box(-2, 2, (1,))`` (torque).

**Scores.** A task's score is its return scaled linearly from ``[low, high]`` to
``[0, 1]`` (:class:`~l2rl.types.ReturnRange`); Pendulum returns are negative costs. The
bounds are measured, per gravity, for 200-step episodes (:data:`REFERENCE_RETURNS`):

- ``low``: the mean return of uniformly random torques over 1000 episodes (reset seeds
  0-999, action-space seeds the same; standard error 3-10).
- ``high``: the mean return, over 100 episodes (reset seeds 0-99; standard error 6-10, and
  27-33 where no swing-up exists), of a near-optimal controller: finite-horizon dynamic
  programming on the exact dynamics over a 721 x 481 grid of (angle, angular velocity),
  bilinear interpolation, 21 torques in the backups and 81 in the greedy one-step
  look-ahead. Halving the grid changes ``high`` at ``g = 10`` by 0.3 (-132.9 vs -133.2),
  and on 20 other starts (reset seeds 1000-1019) a coarser 181 x 121 version scored -145
  where the best of 81 tunings of energy-shaping swing-up with a PD catch scored -155: so
  ``high`` is close to the best achievable mean return, and an agent scoring 1 has matched
  a near-optimal controller.

**No swing-up beyond g ~ 17.** Pendulum clips the angular velocity to 8 and the torque to
2. With ``E = thdot^2 / 2 + 1.5 g cos(theta)`` the torque adds at most 6 per radian, so
``E <= 32 - 1.5 g`` at the bottom and ``E <= 32 - 1.5 g + 6 pi`` at the top, which must
reach ``1.5 g``: ``g <= (32 + 6 pi) / 3 ~ 16.95``. For ``g = 18`` the best policy keeps the
pendulum as high as it can and catches only starts near the top (``high`` -1059 against
``low`` -1500); the task remains well-defined and is scored on its own bounds, so a score
of 1 still means "as well as can be done".

Other gravities or episode lengths need bounds of their own: give ``return_low`` and
``return_high``.

**Reward function.** Every task carries :func:`pendulum_reward`, Pendulum's reward as a
batched torch function for model-based agents; gravity does not enter it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import torch
from pydantic import Field, model_validator

from l2rl.config import PluginConfig
from l2rl.return_bounds import check_parameters, return_bounds
from l2rl.scenario import TaskFamily
from l2rl.types import ReturnRange, TaskSpec

MEASURED_EPISODE_STEPS = 200
"""Episode length the :data:`REFERENCE_RETURNS` were measured with."""

REFERENCE_RETURNS: dict[float, tuple[float, float]] = {
    6.0: (-1141.8, -93.8),
    7.0: (-1173.6, -109.6),
    8.0: (-1190.6, -118.0),
    9.0: (-1202.4, -128.1),
    10.0: (-1218.9, -132.9),
    11.0: (-1243.1, -139.0),
    12.0: (-1290.7, -147.0),
    13.0: (-1340.2, -153.6),
    14.0: (-1381.2, -159.1),
    15.0: (-1416.0, -165.6),
    16.0: (-1446.8, -170.2),
    17.0: (-1475.6, -895.9),
    18.0: (-1499.8, -1059.1),
    19.0: (-1522.5, -1137.9),
    20.0: (-1544.1, -1198.5),
}
"""Gravity -> (random-policy mean return, near-optimal mean return), 200-step episodes.

Measured as the module docstring describes; integer gravities only."""


def make_pendulum(gravity: float, max_episode_steps: int) -> gym.Env[Any, Any]:
    """A fresh ``Pendulum-v1`` with gravity ``gravity`` and a ``max_episode_steps`` limit."""
    return gym.make("Pendulum-v1", g=gravity, max_episode_steps=max_episode_steps)


def pendulum_reward(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    """``Pendulum-v1``'s reward ``-(theta^2 + 0.1 thdot^2 + 0.001 u^2)`` of a batch.

    gymnasium pays it for the state *before* the step (``theta`` normalised to
    ``[-pi, pi)``, here recovered from ``(cos, sin)`` of ``obs``) and the torque clipped to
    ``[-2, 2]``; ``next_obs`` is not used.
    """
    theta = torch.atan2(obs[..., 1], obs[..., 0])
    torque = torch.clamp(action[..., 0], -2.0, 2.0)
    return -(theta**2 + 0.1 * obs[..., 2] ** 2 + 0.001 * torque**2)


class PendulumGravityConfig(PluginConfig):
    """Options of ``pendulum-gravity``."""

    gravities: list[float] = Field(
        default_factory=lambda: [10.0, 12.0, 14.0, 16.0, 18.0],
        min_length=1,
        description="Gravity of each task, in training order (task names: `g=<value>`).",
    )
    max_episode_steps: int = Field(
        default=MEASURED_EPISODE_STEPS, gt=0, description="Episode time limit."
    )
    return_low: list[float] | None = Field(
        default=None,
        description=(
            "Return scored 0, one per task; give it with `return_high`. Required unless "
            f"every gravity is an integer from {min(REFERENCE_RETURNS):g} to "
            f"{max(REFERENCE_RETURNS):g} and max_episode_steps is {MEASURED_EPISODE_STEPS} "
            "(then the measured bounds are used)."
        ),
    )
    return_high: list[float] | None = Field(
        default=None, description="Return scored 1, one per task; give it with `return_low`."
    )

    @model_validator(mode="after")
    def _bounds_known(self) -> PendulumGravityConfig:
        check_parameters(self.gravities, "gravity")
        self.bounds()  # fail at validation, not when the scenario is built
        return self

    def bounds(self) -> list[tuple[float, float]]:
        """The (low, high) score bounds of each task, given or measured."""
        return return_bounds(
            self.gravities,
            "gravity",
            self.return_low,
            self.return_high,
            self.max_episode_steps,
            MEASURED_EPISODE_STEPS,
            REFERENCE_RETURNS,
        )


def _build(config: PendulumGravityConfig) -> list[TaskSpec]:
    return [
        TaskSpec(
            name=f"g={gravity:g}",
            make_env=partial(make_pendulum, gravity, config.max_episode_steps),
            normalizer=ReturnRange(low, high),
            params={"gravity": gravity, "max_episode_steps": config.max_episode_steps},
            reward_fn=pendulum_reward,
        )
        for gravity, (low, high) in zip(config.gravities, config.bounds(), strict=True)
    ]


pendulum_gravity: TaskFamily[PendulumGravityConfig] = TaskFamily(
    PendulumGravityConfig,
    _build,
    "Pendulum-v1 swing-up with gravity 10, 12, 14, 16, 18 (HyperCRL's tasks); continuous "
    "torque, for SAC.",
)
"""The ``pendulum-gravity`` task family."""
