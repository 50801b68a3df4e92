"""CartPole tasks that conflict, so that plain fine-tuning forgets strongly.

Each variant is one small, documented change to ``CartPole-v1``:

- ``base``: the unchanged task.
- ``swap-actions``: action 0 pushes right and 1 pushes left (:class:`SwapActions`). The
  policy that solves ``base`` fails here, and the other way round.
- ``negate-obs``: the agent sees ``-obs`` (:class:`NegateObservation`); the correct action
  for an observation is the opposite of ``base``'s. CartPole is mirror-symmetric, so to the
  agent this is the same MDP as ``swap-actions``: from mirrored start states, one policy
  sees bit-identical observation streams in both. A scenario may hold one of the two, never
  both (rejected at config time).
- ``permute-obs``: the agent sees the four features in the order
  ``(angle, angular velocity, position, velocity)`` (:class:`PermuteObservation`).

The default sequence is ``base, swap-actions, permute-obs``: every pair is a different MDP
to the agent and their optimal policies conflict (the policy that solves one scores below
0.2 on each other; ``tests/unit/test_scenarios.py`` checks it).
- ``long-pole``: the pole is twice as long (half-length 1.0 instead of 0.5); a change of
  dynamics rather than of interface, so a milder conflict.

All variants declare one observation space, ``Box(-inf, inf, (4,), float32)``
(:class:`RelaxObservationBounds`): CartPole's own bounds are not invariant under permutation,
and tasks of a scenario must share their spaces exactly. Scores are the return scaled from
``[0, max_episode_steps]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from pydantic import Field, field_validator

from l2rl.config import ConfigError, PluginConfig
from l2rl.scenario import TaskFamily
from l2rl.types import ReturnRange, TaskSpec

PERMUTATION = (2, 3, 0, 1)
"""Feature order seen in ``permute-obs``: angle and angular velocity first."""

LONG_POLE_HALF_LENGTH = 1.0
"""The pole's half-length in ``long-pole`` (gymnasium's ``CartPoleEnv.length``; base: 0.5)."""


class SwapActions(gym.ActionWrapper[Any, int, int]):
    """Reverse a ``Discrete(n)`` action space: action ``a`` acts as ``n - 1 - a``.

    On CartPole (``n = 2``) this swaps push-left and push-right.
    """

    def __init__(self, env: gym.Env[Any, int]) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"SwapActions needs a Discrete action space, got {space}")
        self._n = int(space.n)
        self._start = int(space.start)

    def action(self, action: int) -> int:
        """The action at the mirrored position of the action space."""
        return self._start + self._n - 1 - (int(action) - self._start)


class NegateObservation(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """The agent sees ``-obs``; the declared Box is negated too (bounds swap sides)."""

    def __init__(self, env: gym.Env[np.ndarray, Any]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"NegateObservation needs a Box observation space, got {space}")
        self.observation_space = gym.spaces.Box(-space.high, -space.low, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The negated observation."""
        return -observation


class PermuteObservation(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """The agent sees ``obs[permutation]`` of a 1-D Box observation; bounds are permuted too.

    Args:
        env: an env with a 1-D Box observation space.
        permutation: a permutation of ``range(len(obs))``.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], permutation: Sequence[int]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ConfigError(f"PermuteObservation needs a 1-D Box, got {space}")
        if sorted(permutation) != list(range(space.shape[0])):
            raise ConfigError(
                f"{list(permutation)} is not a permutation of the {space.shape[0]} features"
            )
        self._index = np.asarray(permutation, dtype=np.intp)
        self.observation_space = gym.spaces.Box(
            space.low[self._index], space.high[self._index], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The observation's features in the permuted order."""
        return observation[self._index]


class RelaxObservationBounds(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """Declare ``Box(-inf, inf)`` of the same shape and dtype; observations pass unchanged.

    The declared adapter that makes every CartPole variant declare the same space.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"RelaxObservationBounds needs a Box, got {space}")
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=space.shape, dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The observation, unchanged."""
        return observation


def set_pole_half_length(env: gym.Env[Any, Any], half_length: float) -> None:
    """Change a CartPole env's pole in place, keeping ``polemass_length`` consistent.

    ``CartPoleEnv`` caches ``polemass_length = masspole * length`` at construction and its
    dynamics use both, so setting ``length`` alone would leave them out of step.
    """
    cartpole = env.unwrapped
    if not isinstance(cartpole, CartPoleEnv):
        raise ConfigError(f"set_pole_half_length needs a CartPole env, got {cartpole}")
    cartpole.length = half_length
    cartpole.polemass_length = cartpole.masspole * half_length


def _base(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    return env


def _long_pole(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    set_pole_half_length(env, LONG_POLE_HALF_LENGTH)
    return env


MIRROR_EQUIVALENT: frozenset[str] = frozenset({"swap-actions", "negate-obs"})
"""Variants that are one MDP to the agent (CartPole's mirror symmetry); never in one scenario."""

VARIANTS: dict[str, Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]]] = {
    "base": _base,
    "swap-actions": SwapActions,
    "negate-obs": NegateObservation,
    "permute-obs": partial(PermuteObservation, permutation=PERMUTATION),
    "long-pole": _long_pole,
}
"""Variant name -> the change it applies to a ``CartPole-v1`` env (see the module docstring)."""


def make_cartpole_variant(variant: str, max_episode_steps: int = 200) -> gym.Env[Any, Any]:
    """A fresh ``CartPole-v1`` env with ``variant`` applied and a ``max_episode_steps`` limit.

    Raises:
        ConfigError: ``variant`` is not one of :data:`VARIANTS`.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown CartPole variant {variant!r}; valid: {', '.join(VARIANTS)}")
    env = gym.make("CartPole-v1", max_episode_steps=max_episode_steps)
    return RelaxObservationBounds(VARIANTS[variant](env))


class CartPoleVariantsConfig(PluginConfig):
    """Options of ``cartpole-variants``."""

    variants: list[str] = Field(
        default_factory=lambda: ["base", "swap-actions", "permute-obs"],
        min_length=1,
        description=(
            f"Variants in training order, one task each (names = variants); any of "
            f"{', '.join(VARIANTS)}."
        ),
    )
    max_episode_steps: int = Field(
        default=200,
        gt=0,
        description="Episode time limit; a task's score is its return scaled from [0, this].",
    )

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
        if set(variants) >= MIRROR_EQUIVALENT:
            raise ValueError(
                "swap-actions and negate-obs are the same MDP to the agent (CartPole is "
                "mirror-symmetric), so a scenario may hold only one of them"
            )
        return variants


def _build(config: CartPoleVariantsConfig) -> list[TaskSpec]:
    normalizer = ReturnRange(0.0, float(config.max_episode_steps))
    return [
        TaskSpec(
            name=variant,
            make_env=partial(make_cartpole_variant, variant, config.max_episode_steps),
            normalizer=normalizer,
            params={"variant": variant, "max_episode_steps": config.max_episode_steps},
        )
        for variant in config.variants
    ]


cartpole_variants: TaskFamily[CartPoleVariantsConfig] = TaskFamily(
    CartPoleVariantsConfig,
    _build,
    "CartPole with swapped actions, permuted (or negated) observations or a long pole: tasks "
    "that conflict, so fine-tuning forgets.",
)
"""The ``cartpole-variants`` task family."""
