"""The ``minatar-sequence`` scenario: padded observations, the common action space,
seeding, score references, conformance and run configs in both settings."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml
from minatar import Environment

from l2rl import registry
from l2rl.builder import build_run, check_config
from l2rl.config import ConfigError, load_config
from l2rl.scenario import Scenario, TaskFamily
from l2rl.scenarios import minatar_sequence as module
from l2rl.scenarios.minatar_sequence import (
    GAME_CHANNELS,
    GAMES,
    MINATAR_ACTIONS,
    MINIMAL_ACTIONS,
    MinAtarLayout,
    make_minatar_env,
    minatar_sequence,
)
from l2rl.testing import check_scenario

NO_SUCCESS = np.zeros(0, dtype=bool)


def rollout(env: gym.Env[Any, Any], seed: int, actions: list[int]) -> list[Any]:
    """Frames, rewards and end flags of an open-loop action sequence (stops at the end)."""
    obs, _ = env.reset(seed=seed)
    trace: list[Any] = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return trace


def frames(trace: list[Any]) -> np.ndarray:
    return np.stack([trace[0]] + [step[0] for step in trace[1:]])


def random_actions(seed: int, n: int, count: int) -> list[int]:
    return [int(a) for a in np.random.default_rng(seed).integers(count, size=n)]


def test_the_constants_are_minatars_own() -> None:
    for game in GAMES:
        game_env = Environment(game)
        assert game_env.state_shape() == [10, 10, GAME_CHANNELS[game]]
        assert tuple(game_env.minimal_action_set()) == MINIMAL_ACTIONS[game]
        assert game_env.num_actions() == len(MINATAR_ACTIONS)


def test_every_task_declares_the_padded_uint8_space() -> None:
    tasks = minatar_sequence.tasks({})
    assert [t.name for t in tasks] == list(GAMES)
    expected = gym.spaces.Box(0, 1, (10, 10, 10), np.uint8)  # Seaquest has 10 channels
    for task in tasks:
        env = task.make_env()
        assert env.observation_space == expected
        assert env.action_space == gym.spaces.Discrete(6)
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.uint8 and obs.shape == (10, 10, 10)
        assert task.params["padded_channels"] == 10
        assert task.params["zero_channels"] == [GAME_CHANNELS[task.name], 10]
    spec = Scenario.sequence("m", tasks, steps_per_task=10).env_spec()
    assert spec.observation_space == expected
    # Three games: Freeway's 7 channels are the most; the union of actions is still all six.
    three = minatar_sequence.tasks({"games": ["breakout", "space_invaders", "freeway"]})
    env = three[0].make_env()
    assert env.observation_space == gym.spaces.Box(0, 1, (10, 10, 7), np.uint8)
    assert env.action_space == gym.spaces.Discrete(6)


def test_padding_channels_are_always_zero_and_the_game_channels_are_its_state() -> None:
    layout = MinAtarLayout.of(GAMES)
    for game in ("breakout", "freeway"):
        env = make_minatar_env(game, GAMES)
        raw = Environment(game)
        raw.seed(3)
        raw.reset()
        trace = rollout(env, 3, random_actions(3, 300, 6))
        seen = frames(trace)
        start, stop = layout.padding(game)
        assert not seen[..., start:stop].any()
        assert seen[..., :start].any()  # the game's own channels carry its objects
        np.testing.assert_array_equal(seen[0, ..., :start], raw.state())


def test_the_layout_is_the_union_of_the_minimal_action_sets() -> None:
    layout = MinAtarLayout.of(["breakout", "space_invaders"])
    assert layout.actions == (0, 1, 3, 5)  # noop, left, right, fire
    assert layout.channels == 6
    assert layout.action_space() == gym.spaces.Discrete(4)
    assert layout.action_map("breakout") == (0, 1, 3, 0)  # fire is not Breakout's
    assert layout.action_map("space_invaders") == (0, 1, 3, 5)
    full = MinAtarLayout.of(GAMES)
    assert full.actions == tuple(range(6))
    assert full.action_map("freeway") == (0, 0, 2, 0, 4, 0)
    assert full.action_map("seaquest") == tuple(range(6))
    with pytest.raises(ConfigError, match="unknown MinAtar game"):
        MinAtarLayout.of(["pong"])


def test_the_layout_examples_run() -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_minimal_actions_reach_the_game() -> None:
    """Stepping the scenario env with common actions is stepping MinAtar itself with the
    mapped actions (sticky actions and dynamics included)."""
    layout = MinAtarLayout.of(["breakout", "space_invaders"])
    for game in layout.games:
        mapping, channels, compared = layout.action_map(game), GAME_CHANNELS[game], 0
        for seed in range(10):  # random play ends Breakout within a few steps: many games
            common = random_actions(seed, 200, len(layout.actions))
            trace = rollout(make_minatar_env(game, layout.games), seed, common)
            raw = Environment(game)
            raw.seed(seed)
            raw.reset()
            for action, (obs, reward, terminated, _) in zip(common, trace[1:], strict=False):
                raw_reward, raw_terminal = raw.act(mapping[action])
                np.testing.assert_array_equal(obs[..., :channels], raw.state())
                assert (reward, terminated) == (raw_reward, raw_terminal)
                compared += 1
        assert compared > 60


def test_actions_outside_a_games_minimal_set_are_no_ops() -> None:
    # In Breakout, common actions up (2), down (4) and fire (5) are not the game's.
    unmapped = [2, 4, 5] * 20
    noop = [0] * 60
    assert rollout_frames("breakout", unmapped) == rollout_frames("breakout", noop)
    # Whereas left moves the paddle: the comparison can tell actions apart.
    assert rollout_frames("breakout", [1] * 60) != rollout_frames("breakout", noop)
    # In Freeway only up and down move the chicken.
    assert rollout_frames("freeway", [1, 3, 5] * 20) == rollout_frames("freeway", [0] * 60)
    assert rollout_frames("freeway", [2] * 60) != rollout_frames("freeway", [0] * 60)


def rollout_frames(game: str, actions: list[int]) -> bytes:
    trace = rollout(make_minatar_env(game, GAMES), 5, actions)
    return frames(trace).tobytes()


@pytest.mark.parametrize("game", GAMES)
def test_a_seed_fixes_the_episode(game: str) -> None:
    actions = random_actions(2, 400, 6)
    first = rollout(make_minatar_env(game, GAMES), 7, actions)
    # A used env reset with the same seed replays the same episode (the sticky previous
    # action is cleared at reset).
    used = make_minatar_env(game, GAMES)
    rollout(used, 99, random_actions(4, 50, 6))
    again = rollout(used, 7, actions)
    assert len(first) == len(again)
    np.testing.assert_array_equal(frames(first), frames(again))
    assert [s[1:] for s in first[1:]] == [s[1:] for s in again[1:]]


def test_different_seeds_give_different_episodes() -> None:
    actions = random_actions(2, 100, 6)
    for game in ("asterix", "seaquest", "freeway"):
        a = frames(rollout(make_minatar_env(game, GAMES), 1, actions))
        b = frames(rollout(make_minatar_env(game, GAMES), 2, actions))
        assert a.shape != b.shape or not np.array_equal(a, b), game


def test_episodes_are_cut_at_the_step_limit() -> None:
    task = minatar_sequence.tasks(
        {
            "games": ["freeway"],
            "max_episode_steps": 30,
            "return_low": [0.0],
            "return_high": [5.0],
        }
    )[0]
    trace = rollout(task.make_env(), 0, [2] * 100)
    assert len(trace) == 31
    assert trace[-1][3] and not trace[-1][2]  # truncated, not terminated


def test_scores_use_the_references() -> None:
    tasks = minatar_sequence.tasks({"games": ["breakout", "freeway"]})
    breakout, freeway = tasks
    assert breakout.normalizer(np.array([0.52]), NO_SUCCESS) == pytest.approx(0.0)
    assert breakout.normalizer(np.array([10.0]), NO_SUCCESS) == pytest.approx(1.0)
    assert freeway.normalizer(np.array([25.065]), NO_SUCCESS) == pytest.approx(0.5)
    assert freeway.normalizer(np.array([80.0]), NO_SUCCESS) == 1.0  # better than DQN: clipped


def test_other_settings_need_their_own_references() -> None:
    with pytest.raises(ConfigError, match="reference returns hold for"):
        minatar_sequence.tasks({"sticky_action_prob": 0.0})
    with pytest.raises(ConfigError, match="reference returns hold for"):
        minatar_sequence.tasks({"max_episode_steps": 1000})
    with pytest.raises(ConfigError, match="one value per game"):
        minatar_sequence.tasks({"games": ["breakout"], "return_low": [0, 1], "return_high": [2]})
    with pytest.raises(ConfigError, match="together"):
        minatar_sequence.tasks({"return_low": [0.0] * 5})
    with pytest.raises(ConfigError, match="unknown MinAtar game"):
        minatar_sequence.tasks({"games": ["breakout", "pong"]})
    with pytest.raises(ConfigError, match="distinct"):
        minatar_sequence.tasks({"games": ["breakout", "breakout"]})
    (task,) = minatar_sequence.tasks(
        {"games": ["asterix"], "sticky_action_prob": 0.0, "return_low": [0], "return_high": [9]}
    )
    assert task.params["sticky_action_prob"] == 0.0


def test_it_is_registered_with_documented_options() -> None:
    family = registry.load("l2rl.scenarios", "minatar-sequence")
    assert family is minatar_sequence and isinstance(family, TaskFamily)
    assert "padded" in family.description
    for name, field in family.Config.model_fields.items():
        assert field.description, name


def test_the_scenario_passes_the_conformance_checks() -> None:
    report = check_scenario(minatar_sequence, {}, name="minatar-sequence")
    assert "shared spaces" in report.passed
    assert f"episodes and score[{GAMES[-1]}]" in report.passed


RUN = {
    "name": "minatar-check",
    "seeds": [0],
    "scenario": {
        "name": "minatar-sequence",
        "options": {"games": ["breakout", "space_invaders", "freeway"]},
        "steps_per_task": 100,
    },
    "agent": {
        "name": "dqn",
        "options": {"learning_starts": 50, "batch_size": 16, "hidden_sizes": [16]},
    },
    "replay": {"name": "fifo", "options": {"capacity": 500}},
    "evaluation": {"every": 100, "episodes": 1, "max_episode_steps": 50},
    "progress": False,
}


@pytest.mark.parametrize("task_aware", [True, False])
def test_a_run_config_builds_and_runs_in_both_settings(tmp_path: Path, task_aware: bool) -> None:
    path = tmp_path / "minatar.yaml"
    path.write_text(yaml.safe_dump(RUN))
    config = load_config(path, [f"scenario.task_aware={str(task_aware).lower()}"])
    check_config(config)
    built = build_run(config, seed=0)
    assert built.env_spec.task_aware is task_aware
    assert built.env_spec.observation_space == gym.spaces.Box(0, 1, (10, 10, 7), np.uint8)
    assert built.env_spec.num_tasks == 3
    runner = built.runner()
    runner.run()
    assert runner.ctx.global_step == 300
    assert runner.ctx.update_index > 0
