"""check_scenario on the built-in scenarios, and on families that break each rule."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from l2rl import registry
from l2rl.config import PluginConfig
from l2rl.scenario import TaskFamily
from l2rl.testing import ConformanceError, check_scenario
from l2rl.types import TaskSpec


@pytest.mark.parametrize(
    "name", ["cartpole-variants", "pendulum-gravity", "minigrid-sequence", "minatar-sequence"]
)
def test_builtin_scenarios_conform(name: str) -> None:
    report = check_scenario(registry.load("l2rl.scenarios", name), name=name)
    assert "shared spaces" in report.passed


class Drifting(gym.Env[np.ndarray, int]):
    """Observations leave the declared box; episodes last ``length`` steps (0: forever)."""

    def __init__(self, length: int = 10, high: float = 1.0, out_of_bounds: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-high, high, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length, self.out_of_bounds, self.t = length, out_of_bounds, 0

    def _obs(self) -> np.ndarray:
        value = 5.0 if self.out_of_bounds else 0.0
        return np.full(2, value, np.float32)

    def reset(
        self, *, seed: int | None = None, options: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), 1.0, self.length > 0 and self.t >= self.length, False, {}


def family(*tasks: TaskSpec) -> TaskFamily[PluginConfig]:
    return TaskFamily(PluginConfig, lambda config: list(tasks), "test")


def task(name: str = "t", normalizer: Any = None, **env: Any) -> TaskSpec:
    return TaskSpec(
        name=name,
        make_env=lambda: Drifting(**env),
        normalizer=normalizer or (lambda returns, successes: float(np.mean(returns)) / 10.0),
    )


def failures(error: pytest.ExceptionInfo[ConformanceError]) -> dict[str, str]:
    return dict(error.value.failures)


def test_a_good_family_passes() -> None:
    check_scenario(family(task("a"), task("b")))


def test_observations_outside_the_declared_space_fail() -> None:
    with pytest.raises(ConformanceError) as err:
        check_scenario(family(task(out_of_bounds=True)))
    assert "observation space" in failures(err)["env_checker[t]"]


def test_an_episode_without_end_fails() -> None:
    with pytest.raises(ConformanceError) as err:
        check_scenario(family(task(length=0)), max_steps=50)
    assert "ran 50 steps without ending" in failures(err)["episodes and score[t]"]


def test_a_score_outside_0_1_fails() -> None:
    with pytest.raises(ConformanceError) as err:
        check_scenario(family(task(normalizer=lambda r, s: float(np.mean(r)))))
    assert "normaliser gave 10.0" in failures(err)["episodes and score[t]"]


def test_tasks_with_different_spaces_fail() -> None:
    with pytest.raises(ConformanceError) as err:
        check_scenario(family(task("a"), task("b", high=2.0)))
    assert "must share spaces" in failures(err)["shared spaces"]


def test_bad_options_fail_first() -> None:
    with pytest.raises(ConformanceError) as err:
        check_scenario(family(task()), {"nope": 1})
    assert list(failures(err)) == ["options"]
