"""Cart-pole swing-up with a continuous force and different pole lengths (HyperCRL's).

HyperCRL (Huang et al. 2020) trains on the PETS cart-pole (MuJoCo ``cartpole.xml``,
``hypercrl/envs/cartpole.py``) with the pole's length changed per task: lengths 0.6,
0.8, 0.4, 1.0, 1.2, 0.7, 0.5, 0.9, 1.1, 1.3 (``control/reward.py``). This module writes
the same system as equations of motion, without MuJoCo:

* a cart (a capsule of radius 0.05 and half-length 0.1) on a rail, and a pole (a
  capsule of radius 0.049 from the hinge to length ``L``), both of density 1000 as
  MuJoCo's ``inertiafromgeom`` gives them; joint damping 1 on slider and hinge; gravity
  9.81; force ``100 a`` with ``a`` clipped to ``[-3, 3]`` (gear 100, ``ctrlrange``);
  RK4 steps of 0.02 s, two per env step (``frame_skip`` 2);
* the Lagrangian of a cart with a rigid pole whose centre of mass is at ``L / 2``:
  ``M(q) q'' = [F - d x' - m l sin(theta) theta'^2,  -m g l sin(theta) - d theta']`` with
  ``M = [[m_c + m_p, -m_p l cos(theta)], [-m_p l cos(theta), I_p + m_p l^2]]``;
* observation ``[x, theta, x', theta']`` (``theta = 0`` hangs down), initial state
  ``N(0, 0.1^2)`` in every entry, episodes of 200 steps;
* reward ``exp(-||ee - (0, L)||^2 / L^2) - 0.01 a^2`` with the pole's tip
  ``ee = (x - L sin(theta), -L cos(theta))``, as HyperCRL's env and planner compute it
  (:func:`cartpole_reward`, given to every task for model-based agents).

The rail ends (MuJoCo's slider range ``[-2.5, 2.5]``, a soft limit constraint there) are
an inelastic stop here: at an end the cart's outward velocity becomes 0. Everything else
follows the model file; returns are therefore close to, not equal to, HyperCRL's.

**Scores.** Returns scaled from ``[low, high]`` to ``[0, 1]`` per length
(:data:`REFERENCE_RETURNS`): ``low`` the mean return of uniformly random forces over 200
episodes, ``high`` that of CEM planning through the exact dynamics with HyperCRL's
settings (horizon 25, 400 samples, 40 elites, 5 iterations) over 10 episodes; both on
reset seeds from 0, measured by ``experiments/reference_returns/cartpole_continuous.py``.
Other lengths or episode lengths need ``return_low`` and ``return_high``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, model_validator

from l2rl.config import PluginConfig
from l2rl.return_bounds import check_parameters, return_bounds
from l2rl.scenario import TaskFamily
from l2rl.types import ReturnRange, TaskSpec

DENSITY = 1000.0
GRAVITY = 9.81
DAMPING = 1.0
GEAR = 100.0
CONTROL_LIMIT = 3.0
TIMESTEP = 0.02
FRAME_SKIP = 2
RAIL_END = 2.5
CART_RADIUS, CART_HALF_LENGTH = 0.05, 0.1
POLE_RADIUS = 0.049
HYPERCRL_LENGTHS = (0.6, 0.8, 0.4, 1.0, 1.2, 0.7, 0.5, 0.9, 1.1, 1.3)
"""HyperCRL's pole lengths, in its task order."""
MEASURED_EPISODE_STEPS = 200

REFERENCE_RETURNS: dict[float, tuple[float, float]] = {
    0.4: (-2.7, 183.1),
    0.6: (1.7, 186.7),
    0.7: (3.6, 186.1),
    0.8: (5.6, 184.8),
    1.0: (10.3, 182.9),
    1.2: (14.1, 183.5),
}
"""Pole length -> (random-policy mean return, CEM-with-exact-dynamics mean return), 200-step
episodes, measured as the module docstring says (standard errors 0.1-0.8 and 1.0-1.3)."""


def capsule_mass(radius: float, length: float) -> float:
    """Mass of a capsule (a cylinder of ``length`` with hemispherical ends) at DENSITY."""
    return DENSITY * (math.pi * radius**2 * length + 4.0 / 3.0 * math.pi * radius**3)


def capsule_inertia(radius: float, length: float) -> float:
    """Moment of inertia of that capsule about a transverse axis through its centre.

    Cylinder ``m_c (3 r^2 + h^2) / 12``; each hemisphere ``m_h (83 / 320) r^2`` about its
    own centre of mass, which sits ``h / 2 + 3 r / 8`` from the capsule's centre.
    """
    cylinder = DENSITY * math.pi * radius**2 * length
    hemisphere = DENSITY * 2.0 / 3.0 * math.pi * radius**3
    offset = length / 2 + 3 * radius / 8
    return cylinder * (3 * radius**2 + length**2) / 12 + 2 * hemisphere * (
        83 / 320 * radius**2 + offset**2
    )


@dataclass(frozen=True)
class CartPoleBody:
    """Masses and inertia of one pole length (see the module docstring)."""

    length: float

    @property
    def cart_mass(self) -> float:
        """The cart capsule's mass."""
        return capsule_mass(CART_RADIUS, 2 * CART_HALF_LENGTH)

    @property
    def pole_mass(self) -> float:
        """The pole capsule's mass."""
        return capsule_mass(POLE_RADIUS, self.length)

    @property
    def pole_inertia(self) -> float:
        """The pole's inertia about its centre of mass (at ``length / 2``)."""
        return capsule_inertia(POLE_RADIUS, self.length)


def _accelerations(state: Any, force: Any, body: CartPoleBody, xp: Any) -> tuple[Any, Any]:
    """``(x'', theta'')`` solving the 2x2 mass-matrix system, for numpy or torch arrays."""
    theta, x_dot, theta_dot = state[..., 1], state[..., 2], state[..., 3]
    m_c, m_p, half = body.cart_mass, body.pole_mass, body.length / 2
    coupling = -m_p * half * xp.cos(theta)
    a11, a22 = m_c + m_p, body.pole_inertia + m_p * half**2
    b1 = force - DAMPING * x_dot - m_p * half * xp.sin(theta) * theta_dot**2
    b2 = -m_p * GRAVITY * half * xp.sin(theta) - DAMPING * theta_dot
    det = a11 * a22 - coupling**2
    return (a22 * b1 - coupling * b2) / det, (a11 * b2 - coupling * b1) / det


def _derivative(state: Any, force: Any, body: CartPoleBody, xp: Any) -> Any:
    x_acc, theta_acc = _accelerations(state, force, body, xp)
    return xp.stack([state[..., 2], state[..., 3], x_acc, theta_acc], -1)


def cartpole_step(state: Any, action: Any, body: CartPoleBody, xp: Any = np) -> Any:
    """One env step (``FRAME_SKIP`` RK4 steps) of states ``[..., 4]`` under actions
    ``[..., 1]``; ``xp`` is ``numpy`` or ``torch`` (batched planning)."""
    force = GEAR * xp.clip(action[..., 0], -CONTROL_LIMIT, CONTROL_LIMIT)
    for _ in range(FRAME_SKIP):
        k1 = _derivative(state, force, body, xp)
        k2 = _derivative(state + TIMESTEP / 2 * k1, force, body, xp)
        k3 = _derivative(state + TIMESTEP / 2 * k2, force, body, xp)
        k4 = _derivative(state + TIMESTEP * k3, force, body, xp)
        state = state + TIMESTEP / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        state = _rail_stop(state, xp)
    return state


def _rail_stop(state: Any, xp: Any) -> Any:
    """Clamp the cart to the rail; at an end its outward velocity becomes 0."""
    x, x_dot = state[..., 0], state[..., 2]
    outward = ((x >= RAIL_END) & (x_dot > 0)) | ((x <= -RAIL_END) & (x_dot < 0))
    x = xp.clip(x, -RAIL_END, RAIL_END)
    x_dot = xp.where(outward, xp.zeros_like(x_dot), x_dot)
    return xp.stack([x, state[..., 1], x_dot, state[..., 3]], -1)


def _tip_reward(next_obs: Any, action: Any, length: float, xp: Any) -> Any:
    x, theta = next_obs[..., 0], next_obs[..., 1]
    tip_x, tip_y = x - length * xp.sin(theta), -length * xp.cos(theta)
    distance = tip_x**2 + (tip_y - length) ** 2
    return xp.exp(-distance / length**2) - 0.01 * (action**2).sum(-1)


def cartpole_reward(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, length: float
) -> torch.Tensor:
    """``exp(-||ee - (0, L)||^2 / L^2) - 0.01 a^2`` at ``next_obs`` (the env pays it for
    the state reached; ``a`` unclipped, as there), batched; ``obs`` is not used."""
    reward: torch.Tensor = _tip_reward(next_obs, action, length, torch)
    return reward


class CartPoleSwingUp(gym.Env[np.ndarray, np.ndarray]):
    """The swing-up env of one pole length (see the module docstring).

    Args:
        length: the pole's length ``L``.
    """

    # gymnasium.Env declares metadata as an instance attribute with a class default.
    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, length: float) -> None:
        if length <= 0:
            raise ValueError(f"the pole length must be positive, got {length}")
        self.body = CartPoleBody(length)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = gym.spaces.Box(-CONTROL_LIMIT, CONTROL_LIMIT, (1,), np.float32)
        self.state = np.zeros(4)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start from ``N(0, 0.1^2)`` in every state entry."""
        super().reset(seed=seed)
        self.state = self.np_random.normal(0.0, 0.1, 4)
        return self.state.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``100 clip(a, -3, 3)`` for 0.04 s; the reward of the state reached."""
        a = np.asarray(action, dtype=np.float64).reshape(1)
        self.state = cartpole_step(self.state, a, self.body)
        reward = float(_tip_reward(self.state, a, self.body.length, np))
        return self.state.copy(), reward, False, False, {}


def make_cartpole(length: float, max_episode_steps: int) -> gym.Env[Any, Any]:
    """A fresh swing-up env with pole ``length`` and a ``max_episode_steps`` limit."""
    return gym.wrappers.TimeLimit(CartPoleSwingUp(length), max_episode_steps)


class CartPoleContinuousConfig(PluginConfig):
    """Options of ``cartpole-continuous``."""

    lengths: list[float] = Field(
        default_factory=lambda: list(HYPERCRL_LENGTHS[:5]),
        min_length=1,
        description="Pole length of each task, in training order (task names: `L=<value>`); "
        "default HyperCRL's first five.",
    )
    max_episode_steps: int = Field(
        default=MEASURED_EPISODE_STEPS, gt=0, description="Episode time limit."
    )
    return_low: list[float] | None = Field(
        default=None,
        description="Return scored 0, one per task; give it with `return_high`. Required "
        "unless every length is one of HyperCRL's and max_episode_steps is "
        f"{MEASURED_EPISODE_STEPS} (then the measured bounds are used).",
    )
    return_high: list[float] | None = Field(
        default=None, description="Return scored 1, one per task; give it with `return_low`."
    )

    @model_validator(mode="after")
    def _bounds_known(self) -> CartPoleContinuousConfig:
        check_parameters(self.lengths, "length")
        self.bounds()  # fail at validation, not when the scenario is built
        return self

    def bounds(self) -> list[tuple[float, float]]:
        """The (low, high) score bounds of each task, given or measured."""
        return return_bounds(
            self.lengths,
            "length",
            self.return_low,
            self.return_high,
            self.max_episode_steps,
            MEASURED_EPISODE_STEPS,
            REFERENCE_RETURNS,
        )


def _build(config: CartPoleContinuousConfig) -> list[TaskSpec]:
    return [
        TaskSpec(
            name=f"L={length:g}",
            make_env=partial(make_cartpole, length, config.max_episode_steps),
            normalizer=ReturnRange(low, high),
            params={"pole_length": length, "max_episode_steps": config.max_episode_steps},
            reward_fn=partial(cartpole_reward, length=length),
        )
        for length, (low, high) in zip(config.lengths, config.bounds(), strict=True)
    ]


cartpole_continuous: TaskFamily[CartPoleContinuousConfig] = TaskFamily(
    CartPoleContinuousConfig,
    _build,
    "Cart-pole swing-up, continuous force, pole lengths 0.6, 0.8, 0.4, 1.0, 1.2 (HyperCRL's "
    "cartpole tasks); for MPC and SAC.",
)
"""The ``cartpole-continuous`` task family."""
