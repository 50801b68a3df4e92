"""Conformance for scenario authors: :func:`check_scenario`.

What the runner relies on of a :class:`~l2rl.scenario.TaskFamily`: its options validate,
its tasks build with unique names, every task's environment passes gymnasium's own
environment checks (its passive checker: spaces, reset and step types, observations inside
the declared space), all tasks share one pair of spaces (or the family adapts them),
reset with a seed is reproducible, episodes end within a bounded number of steps, and each
task's score normaliser maps the returns of a random policy into ``[0, 1]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.utils.passive_env_checker import (
    check_action_space,
    check_observation_space,
    env_reset_passive_checker,
    env_step_passive_checker,
)

from l2rl.config import ConfigError
from l2rl.evaluation import episode_success
from l2rl.scenario import Scenario, TaskFamily
from l2rl.testing.conformance import ConformanceError, ConformanceReport, state_differences


def check_scenario(
    family: TaskFamily[Any],
    options: Mapping[str, Any] | None = None,
    *,
    name: str = "scenario",
    episodes: int = 2,
    max_steps: int = 10_000,
) -> ConformanceReport:
    """Check a scenario family; raise one :class:`ConformanceError` listing every failure.

    ``episodes`` random-policy episodes per task (capped at ``max_steps`` steps each) feed
    the normaliser check; an episode that reaches ``max_steps`` fails the check for
    unbounded episodes (give the env a time limit).

    >>> from l2rl.scenarios.cartpole_variants import cartpole_variants
    >>> check_scenario(cartpole_variants, {"variants": ["base", "swap-actions"]}).passed[:2]
    ('options', 'env_checker[base]')
    """
    failures: list[tuple[str, str]] = []
    passed: list[str] = []

    def record(check: str, problem: str | None) -> None:
        (passed.append(check) if problem is None else failures.append((check, problem)))

    try:
        tasks = family.tasks(options or {}, where=f"{name} options")
    except ConfigError as exc:
        record("options", str(exc))
        raise ConformanceError(name, failures, passed) from None
    record("options", None)
    for task in tasks:
        record(f"env_checker[{task.name}]", _env_problem(task.make_env))
    try:
        Scenario.sequence(name, tasks, steps_per_task=1).env_spec()
        record("shared spaces", None)
    except ConfigError as exc:
        record("shared spaces", str(exc))
    for task in tasks:
        record(f"seeded reset[{task.name}]", _reset_problem(task.make_env))
        record(f"episodes and score[{task.name}]", _score_problem(task, episodes, max_steps))
    if failures:
        raise ConformanceError(name, failures, passed)
    return ConformanceReport(name, tuple(passed), ())


def _env_problem(make_env: Any) -> str | None:
    """gymnasium's passive checks of spaces, reset and a few steps; its warnings fail."""
    env = make_env()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_observation_space(env.observation_space)
            check_action_space(env.action_space)
            env_reset_passive_checker(env, seed=0)
            env.action_space.seed(0)
            for _ in range(5):
                result = env_step_passive_checker(env, env.action_space.sample())
                if result[2] or result[3]:
                    env_reset_passive_checker(env, seed=1)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        env.close()
    messages = sorted({str(w.message) for w in caught})
    return None if not messages else "gymnasium's env checker warns: " + "; ".join(messages)


def _reset_problem(make_env: Any) -> str | None:
    first, second = make_env(), make_env()
    try:
        a, _ = first.reset(seed=123)
        b, _ = second.reset(seed=123)
    finally:
        first.close()
        second.close()
    differences = state_differences({"obs": np.asarray(a)}, {"obs": np.asarray(b)})
    return None if not differences else "reset(seed=123) twice gives different observations"


def _score_problem(task: Any, episodes: int, max_steps: int) -> str | None:
    env = task.make_env()
    env.action_space.seed(0)
    returns = np.zeros(episodes)
    successes = np.zeros(episodes, dtype=bool)
    try:
        for episode in range(episodes):
            env.reset(seed=episode)
            for _ in range(max_steps):
                _, reward, terminated, truncated, info = env.step(env.action_space.sample())
                returns[episode] += float(reward)
                if terminated or truncated:
                    break
            else:
                return f"an episode ran {max_steps} steps without ending: give it a time limit"
            successes[episode] = episode_success(info, float(returns[episode]))
    finally:
        env.close()
    score = task.normalizer(returns, successes)
    if not (np.isfinite(score) and 0.0 <= score <= 1.0):
        return f"the normaliser gave {score} for random-policy returns {returns.tolist()}"
    return None
