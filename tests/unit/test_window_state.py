"""A window's state between rounds of env steps survives a weights-only checkpoint, and
an env that cannot be pickled makes the resume inexact instead of failing the run."""

from __future__ import annotations

import io
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl import registry
from l2rl.checkpoint import WindowState


class Unpicklable(gym.Wrapper[Any, Any, Any, Any]):
    """Holds a lambda, which pickle refuses."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.transform = lambda x: x


def saved_and_loaded(state: WindowState) -> WindowState:
    buffer = io.BytesIO()
    torch.save(state.to_state(), buffer)
    buffer.seek(0)
    return WindowState.from_state(torch.load(buffer, weights_only=True))


def test_pickled_envs_continue_their_episodes_exactly() -> None:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        env.step(0)
    state = WindowState.capture(7, [obs], [5.0], [False], [env], {"agent": 2}, True)
    loaded = saved_and_loaded(state)
    assert loaded.inexact == "" and loaded.done == 7 and loaded.updates_at_start == {"agent": 2}
    np.testing.assert_array_equal(loaded.obs[0], obs)
    assert loaded.obs[0].dtype == obs.dtype
    (restored,) = loaded.restore_envs() or []
    for action in (1, 0, 1, 1):  # the same steps, random generator included
        np.testing.assert_array_equal(restored.step(action)[0], env.step(action)[0])


def test_an_env_that_cannot_be_pickled_makes_the_resume_inexact() -> None:
    env = Unpicklable(gym.make("CartPole-v1"))
    obs, _ = env.reset(seed=0)
    state = WindowState.capture(1, [obs], [1.0], [False], [env], {}, True)
    loaded = saved_and_loaded(state)
    assert loaded.envs == [None]
    assert "cannot be pickled" in loaded.inexact
    assert loaded.restore_envs() is None


@pytest.mark.parametrize(
    "scenario", ["cartpole-variants", "pendulum-gravity", "minigrid-sequence", "minatar-sequence"]
)
def test_the_builtin_scenarios_envs_pickle_whole(scenario: str) -> None:
    family = registry.load("l2rl.scenarios", scenario)
    task = family.tasks({})[-1]  # a transformed variant where there is one
    env = task.make_env()
    obs, _ = env.reset(seed=1)
    env.action_space.seed(4)
    for _ in range(3):
        env.step(env.action_space.sample())
    state = WindowState.capture(3, [obs], [0.0], [False], [env], {}, True)
    (restored,) = saved_and_loaded(state).restore_envs() or []
    env.action_space.seed(5)
    actions = [env.action_space.sample() for _ in range(20)]
    for action in actions:
        mine, theirs = env.step(action), restored.step(action)
        np.testing.assert_array_equal(mine[0], theirs[0])
        assert mine[1:4] == theirs[1:4]
        if mine[2] or mine[3]:
            break


def test_minigrids_flat_image_is_what_gymnasiums_flatten_gave() -> None:
    from gymnasium.wrappers import FlattenObservation
    from minigrid.wrappers import ImgObsWrapper

    from l2rl.scenarios.minigrid_sequence import FlatImage

    mine = FlatImage(ImgObsWrapper(gym.make("MiniGrid-Empty-5x5-v0")))
    theirs = FlattenObservation(ImgObsWrapper(gym.make("MiniGrid-Empty-5x5-v0")))
    # Same shape and dtype; only the declared range differs (MiniGrid's indices stop at 10).
    space, flat = mine.observation_space, theirs.observation_space
    assert isinstance(space, gym.spaces.Box) and isinstance(flat, gym.spaces.Box)
    assert (space.shape, space.dtype) == (flat.shape, flat.dtype)
    assert float(space.high.max()) == 10 and float(flat.high.max()) == 255
    for env in (mine, theirs):
        env.action_space.seed(0)
    first_mine, first_theirs = mine.reset(seed=2)[0], theirs.reset(seed=2)[0]
    np.testing.assert_array_equal(first_mine, first_theirs)
    assert first_mine.dtype == first_theirs.dtype
    for action in (2, 1, 2, 0):
        np.testing.assert_array_equal(mine.step(action)[0], theirs.step(action)[0])
