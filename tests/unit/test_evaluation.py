"""Lockstep evaluation: the same returns whatever the number of slots, one policy call per
step for all of them, resets announced before the first action (the agents' batched
greedy actions: test_dqn, test_sac)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from l2rl.evaluation import run_episodes


def lean_right(obs: np.ndarray) -> list[int]:
    """A deterministic CartPole policy whose episodes differ in length by start state."""
    return [int(o[3] > 0.1) for o in obs]  # episodes of 57 to 84 steps from seeds 3-9


def test_returns_are_the_same_for_any_number_of_slots() -> None:
    envs = [gym.make("CartPole-v1") for _ in range(7)]
    outcomes = [run_episodes(envs[:k], lean_right, episodes=7, seed=3) for k in (1, 2, 3, 7)]
    first = outcomes[0].returns
    assert len(set(first.tolist())) > 2  # episodes of different lengths
    for outcome in outcomes[1:]:
        np.testing.assert_array_equal(outcome.returns, first)
    # more slots than episodes: only as many are used
    np.testing.assert_array_equal(run_episodes(envs, lean_right, 2, seed=3).returns, first[:2])


def test_one_policy_call_per_step_on_a_stack_of_fixed_size_and_resets_before_acting() -> None:
    envs = [gym.make("CartPole-v1") for _ in range(3)]
    log: list[Any] = []

    def policy(obs: np.ndarray) -> list[int]:
        log.append(("act", obs.shape[0]))
        return lean_right(obs)

    outcome = run_episodes(envs, policy, 5, seed=0, on_reset=lambda s: log.append(("reset", s)))
    assert log[0] == ("reset", [0, 1, 2])
    assert {entry[1] for entry in log if entry[0] == "act"} == {3}
    # episodes 3 and 4 start in the first two slots to finish, each announced once
    later = [slot for entry in log[1:] if entry[0] == "reset" for slot in entry[1]]
    assert len(later) == 2 and len(set(later)) == 2
    # one call per step of the busiest slot, not one per episode step
    assert sum(entry[0] == "act" for entry in log) < outcome.returns.sum() / 2


def test_max_steps_cuts_every_slot() -> None:
    envs = [gym.make("CartPole-v1") for _ in range(2)]
    outcome = run_episodes(envs, lambda obs: [0] * len(obs), 4, seed=0, max_steps=5)
    assert outcome.returns.tolist() == [5.0] * 4
    with pytest.raises(ValueError, match="at least one env"):
        run_episodes([], lean_right, 1, seed=0)
