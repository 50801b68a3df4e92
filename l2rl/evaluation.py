"""Continual evaluation: a task's score with the greedy policy on its own seeded env."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    envs: Sequence[gym.Env[Any, Any]],
    policy: Callable[[np.ndarray], Sequence[Any]],
    episodes: int,
    seed: int,
    max_steps: int | None = None,
    on_reset: Callable[[list[int]], None] | None = None,
) -> EpisodeOutcomes:
    """Play ``episodes`` episodes in lockstep on ``envs``; episode ``e`` resets with
    ``seed + e``.

    Fixed reset seeds make every evaluation round of a task face the same start states,
    so changes in score across the run come from the agent, not from the draw. Env slot
    ``i`` plays episodes ``i``, ``i + k``, ... (``k = len(envs)``, at most ``episodes`` of
    them used), and each step makes one call of ``policy`` on the stacked observations of
    every used slot, so a batched agent makes one forward pass per step for all of a
    task's episodes. The stack's size stays the same all along (a slot whose episodes are
    done shows its last observation, and its action is ignored), so a recurrent policy's
    state per slot stays aligned. Since every episode's start is fixed by its seed, a
    deterministic policy gets the same returns whatever ``k`` is (up to the last bits of
    a batched forward pass against a single one). ``on_reset(slots)`` is called after
    those slots reset, before the policy sees their first observation.

    >>> import gymnasium as gym
    >>> envs = [gym.make("CartPole-v1") for _ in range(2)]
    >>> always_left = lambda obs: [0] * len(obs)
    >>> run_episodes(envs, always_left, episodes=3, seed=0).returns.tolist()
    [11.0, 10.0, 9.0]
    >>> run_episodes(envs[:1], always_left, episodes=3, seed=0).returns.tolist()
    [11.0, 10.0, 9.0]
    """
    if not envs:
        raise ValueError("run_episodes needs at least one env")
    width = min(len(envs), episodes)
    returns = np.zeros(episodes)
    successes = np.zeros(episodes, dtype=bool)
    playing = [-1] * width  # the episode each slot plays, -1 once it has none left
    observations: list[Any] = [None] * width
    totals, steps = [0.0] * width, [0] * width
    started = 0

    def start(slot: int) -> None:
        nonlocal started
        playing[slot], started = started, started + 1
        observations[slot], _ = envs[slot].reset(seed=seed + playing[slot])
        totals[slot], steps[slot] = 0.0, 0

    for slot in range(width):
        start(slot)
    if on_reset is not None:
        on_reset(list(range(width)))
    while any(e >= 0 for e in playing):
        actions = policy(np.stack(observations))
        restarted = []
        for slot, episode in enumerate(playing):
            if episode < 0:
                continue
            obs, reward, terminated, truncated, info = envs[slot].step(actions[slot])
            observations[slot] = obs
            totals[slot] += float(reward)
            steps[slot] += 1
            if terminated or truncated or (max_steps is not None and steps[slot] >= max_steps):
                returns[episode] = totals[slot]
                successes[episode] = episode_success(info, totals[slot])
                if started < episodes:
                    start(slot)
                    restarted.append(slot)
                else:
                    playing[slot] = -1
        if restarted and on_reset is not None:
            on_reset(restarted)
    return EpisodeOutcomes(returns=returns, successes=successes)
