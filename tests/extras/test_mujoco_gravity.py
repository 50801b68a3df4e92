"""mujoco-gravity on MuJoCo: gravity is set, the reward function is the env's, and the MPC
agent runs on it. Skipped without MuJoCo; with ``L2RL_REQUIRE_EXTRAS=mujoco`` (CI's second
job, after ``scripts/install-mujoco.sh``) a missing MuJoCo fails instead."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from l2rl.config import ConfigError
from l2rl.scenario import Scenario
from l2rl.scenarios.mujoco_gravity import cheetah_reward, mujoco_gravity

REQUIRED = "mujoco" in os.environ.get("L2RL_REQUIRE_EXTRAS", "").split(",")
AVAILABLE = all(importlib.util.find_spec(m) is not None for m in ("mujoco", "imageio"))
if not AVAILABLE and not REQUIRED:
    pytest.skip("MuJoCo is not installed (scripts/install-mujoco.sh)", allow_module_level=True)

BOUNDS = {"return_low": [-400.0, -400.0], "return_high": [4000.0, 4000.0]}


def tasks(episode: int = 50) -> list:  # type: ignore[type-arg]
    options = {"gravities": [9.81, 4.905], "max_episode_steps": episode, **BOUNDS}
    return mujoco_gravity.tasks(options, where="test")


def test_each_task_has_its_gravity_and_the_reward_function_is_the_envs() -> None:
    for task, gravity in zip(tasks(), (9.81, 4.905), strict=True):
        env = task.make_env()
        assert env.unwrapped.model.opt.gravity[2] == pytest.approx(-gravity)
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(30):
            action = env.action_space.sample()
            nxt, reward, _, _, _ = env.step(action)
            mine = cheetah_reward(
                torch.as_tensor(obs)[None],
                torch.as_tensor(action)[None],
                torch.as_tensor(nxt)[None],
            )
            assert float(mine) == pytest.approx(reward, abs=1e-5)
            obs = nxt
        env.close()


def test_gravity_changes_the_dynamics() -> None:
    finals = []
    for task in tasks():
        env = task.make_env()
        env.reset(seed=0)
        for _ in range(20):
            obs, *_ = env.step(np.zeros(6, np.float32))
        finals.append(obs)
        env.close()
    assert not np.allclose(finals[0], finals[1])


def test_bounds_are_required() -> None:
    with pytest.raises(ConfigError, match="return_low"):
        mujoco_gravity.tasks({"gravities": [9.81]}, where="test")


def test_mpc_runs_on_mujoco_gravity() -> None:
    from l2rl.agents.mpc import MPCAgent
    from l2rl.builder import services_from
    from l2rl.components.replay.current_task import CurrentTaskReplay
    from l2rl.config import EvalConfig
    from l2rl.runner import Runner

    scenario = Scenario.sequence("cheetah", tasks(), steps_per_task=30)
    spec = scenario.env_spec()
    replay = CurrentTaskReplay(CurrentTaskReplay.Config(capacity=200, chunk_steps=10), spec)
    replay.name = "current-task"
    options = {
        "hidden": [16],
        "samples": 16,
        "elites": 4,
        "iterations": 2,
        "horizon": 3,
        "random_steps": 20,
        "train_every": 10,
        "gradient_steps": 2,
        "batch_size": 8,
    }
    agent = MPCAgent(MPCAgent.Config(**options), spec, services_from([replay]), seed=0)
    evaluation = EvalConfig(every=30, episodes=1, max_episode_steps=5)
    result = Runner(scenario, agent, [replay], evaluation, seed=0).run()
    assert result.updates > 0
