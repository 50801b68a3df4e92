"""Continual evaluation: a task's score with the greedy policy on its own seeded env."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class EpisodeOutcomes:
    """Per-episode returns and success flags of one evaluation."""

    returns: np.ndarray
    successes: np.ndarray


def episode_success(info: dict[str, Any], episode_return: float) -> bool:
    """Success as the env reports it (``success``/``is_success``), else a positive return."""
    for key in ("success", "is_success"):
        if key in info:
            return bool(info[key])
    return episode_return > 0.0


def run_episodes(
    env: gym.Env[Any, Any],
    policy: Callable[[np.ndarray], Any],
    episodes: int,
    seed: int,
    max_steps: int | None = None,
    on_reset: Callable[[], None] | None = None,
) -> EpisodeOutcomes:
    """Play ``episodes`` episodes with ``policy``; episode ``e`` resets with ``seed + e``.

    Fixed reset seeds make every evaluation round of a task face the same start states,
    so changes in score across the run come from the agent, not from the draw.
    ``on_reset`` is called after every reset (a recurrent policy restarts its state).
    """
    returns = np.zeros(episodes)
    successes = np.zeros(episodes, dtype=bool)
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        if on_reset is not None:
            on_reset()
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated or (max_steps is not None and steps >= max_steps)
        returns[episode] = total
        successes[episode] = episode_success(info, total)
    return EpisodeOutcomes(returns=returns, successes=successes)
