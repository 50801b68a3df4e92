"""pendulum-gravity: tasks, gravity and time limit applied, measured score bounds, options."""

from __future__ import annotations

import math
import tomllib
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest

from l2rl.config import ConfigError
from l2rl.scenario import Scenario
from l2rl.scenarios.pendulum_gravity import (
    REFERENCE_RETURNS,
    make_pendulum,
    pendulum_gravity,
)
from l2rl.types import ReturnRange

ROOT = Path(__file__).resolve().parents[2]


def test_default_tasks_are_hypercrls_gravities_with_shared_spaces() -> None:
    tasks = pendulum_gravity.tasks({})
    assert [t.name for t in tasks] == ["g=10", "g=12", "g=14", "g=16", "g=18"]
    assert [t.params["gravity"] for t in tasks] == [10.0, 12.0, 14.0, 16.0, 18.0]
    spec = Scenario.sequence("p", tasks, steps_per_task=10).env_spec()
    assert spec.action_space.shape == (1,) and float(spec.action_space.high[0]) == 2.0
    assert spec.observation_space.shape == (3,)
    for task in tasks:
        env = task.make_env()
        assert env.unwrapped.g == task.params["gravity"]  # type: ignore[attr-defined]
        env.close()


def test_episodes_are_truncated_at_max_episode_steps() -> None:
    env = make_pendulum(12.0, max_episode_steps=7)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(7)]
    assert flags == [(False, False)] * 6 + [(False, True)]


def test_gravity_changes_the_dynamics() -> None:
    """From the same tilted start, stronger gravity accelerates the fall more."""
    speeds = []
    for g in (10.0, 18.0):
        env = make_pendulum(g, 200)
        env.reset(seed=0)
        env.unwrapped.state = np.array([0.5, 0.0])  # type: ignore[attr-defined]
        obs, *_ = env.step(np.zeros(1, np.float32))
        speeds.append(float(obs[2]))
    # thdot' = 1.5 g sin(0.5) * 0.05 with no torque
    assert speeds == pytest.approx([0.75 * g * math.sin(0.5) / 10 for g in (10.0, 18.0)])


def test_scores_use_the_measured_bounds() -> None:
    task = pendulum_gravity.tasks({"gravities": [14]})[0]
    low, high = REFERENCE_RETURNS[14.0]
    assert task.normalizer == ReturnRange(low, high)
    none = np.zeros(1, bool)
    assert task.normalizer(np.array([low]), none) == 0.0
    assert task.normalizer(np.array([high]), none) == 1.0
    assert task.normalizer(np.array([(low + high) / 2]), none) == pytest.approx(0.5)


def test_measured_bounds_are_ordered_and_harder_with_more_gravity() -> None:
    gravities = sorted(REFERENCE_RETURNS)
    lows = [REFERENCE_RETURNS[g][0] for g in gravities]
    highs = [REFERENCE_RETURNS[g][1] for g in gravities]
    assert all(low < high for low, high in zip(lows, highs, strict=True))
    assert lows == sorted(lows, reverse=True) and highs == sorted(highs, reverse=True)


@pytest.mark.parametrize("gravity", [10.0, 16.0])
def test_random_policy_returns_agree_with_the_low_bound(gravity: float) -> None:
    """60 of the 1000 measurement episodes (same seeds): the mean is within 4 standard errors."""
    env = make_pendulum(gravity, 200)
    returns = []
    for episode in range(60):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    stderr = np.std(returns) / math.sqrt(len(returns))
    assert abs(np.mean(returns) - REFERENCE_RETURNS[gravity][0]) < 4 * stderr


def best_height_of_energy_pumping(gravity: float, steps: int = 400) -> float:
    """Largest cos(angle) reached from rest at the bottom by always pushing with the swing
    (maximal energy gain per step): 1 means upright."""
    env = make_pendulum(gravity, steps)
    env.reset(seed=0)
    env.unwrapped.state = np.array([math.pi, 0.0])  # type: ignore[attr-defined]
    best, speed = -1.0, 0.0
    for _ in range(steps):
        torque = 2.0 if speed >= 0 else -2.0
        obs, *_ = env.step(np.array([torque], np.float32))
        best, speed = max(best, float(obs[0])), float(obs[2])
    return best


def test_swing_up_is_possible_below_g_17_and_impossible_above() -> None:
    """The docstring's bound: with |thdot| <= 8 and |u| <= 2, no swing-up for g > ~16.95."""
    assert best_height_of_energy_pumping(16.0) > 0.99
    assert best_height_of_energy_pumping(18.0) < 0.9


def test_other_gravities_and_lengths_need_given_bounds() -> None:
    with pytest.raises(ConfigError, match="no measured reference returns for gravity values"):
        pendulum_gravity.tasks({"gravities": [9.81]})
    with pytest.raises(ConfigError, match="measured for 200-step episodes"):
        pendulum_gravity.tasks({"max_episode_steps": 100})
    tasks = pendulum_gravity.tasks(
        {"gravities": [9.81, 3.7], "return_low": [-1200, -1100], "return_high": [-130, -90]}
    )
    assert [t.name for t in tasks] == ["g=9.81", "g=3.7"]
    assert tasks[1].normalizer == ReturnRange(-1100.0, -90.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gravities": [10, -1]}, "positive"),
        ({"gravities": [10, 10]}, "distinct"),
        ({"gravities": []}, "at least 1"),
        ({"return_low": [-1] * 5}, "together"),
        ({"return_low": [-1000.0], "return_high": [-100.0]}, "one value per gravity"),
        ({"gravities": [10], "return_low": [-100.0], "return_high": [-100.0]}, "below"),
        ({"gravity": [10]}, "Extra inputs"),
    ],
)
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pendulum_gravity.tasks(options)


def test_entry_point_in_pyproject_names_the_family() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        value = tomllib.load(f)["project"]["entry-points"]["l2rl.scenarios"]["pendulum-gravity"]
    module, _, attr = value.partition(":")
    assert getattr(import_module(module), attr) is pendulum_gravity


def test_reward_fn_pays_what_the_env_pays() -> None:
    """On random transitions (torques beyond the clip included) the batched reward equals
    gymnasium's, at every gravity."""
    import torch

    for task in pendulum_gravity.tasks({"gravities": [10, 18]}):
        assert task.reward_fn is not None
        env = task.make_env()
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        rows = []
        for _ in range(60):
            action = rng.uniform(-3, 3, size=1).astype(np.float32)
            next_obs, reward, *_ = env.step(action)
            rows.append((obs, action, next_obs, reward))
            obs = next_obs
        env.close()
        o, a, n = (torch.as_tensor(np.stack([r[i] for r in rows])) for i in range(3))
        expected = torch.tensor([r[3] for r in rows], dtype=torch.float32)
        assert torch.allclose(task.reward_fn(o, a, n), expected, atol=1e-4)
