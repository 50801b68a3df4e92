"""The built-in scenarios: CartPole variants, the MiniGrid sequence, tasks from gym envs."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from l2rl import registry
from l2rl.agents.networks import frame_scale
from l2rl.config import ConfigError
from l2rl.scenario import Scenario, TaskFamily
from l2rl.scenarios.cartpole_variants import (
    VARIANTS,
    cartpole_variants,
    make_cartpole_variant,
)
from l2rl.scenarios.from_envs import (
    PadObservation,
    gym_sequence,
    padded_space,
    scenario_from_envs,
    tasks_from_envs,
)
from l2rl.scenarios.minigrid_sequence import (
    DEFAULT_ENV_IDS,
    SYMBOL_HIGH,
    FirstActions,
    make_minigrid_env,
    minigrid_sequence,
)
from l2rl.types import ReturnRange, SuccessRate, TaskSpec

NO_SUCCESS = np.zeros(0, dtype=bool)


def _rollout(env: gym.Env[Any, Any], seed: int, actions: list[int]) -> list[Any]:
    """Observations, rewards and termination flags of an open-loop action sequence."""
    obs, _ = env.reset(seed=seed)
    trace: list[Any] = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return trace


def _lean_policy(obs: np.ndarray) -> int:
    """Push towards the side the pole leans to (angle + 0.5 * angular velocity)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def _episode(env: gym.Env[Any, Any], seed: int, policy: Any) -> tuple[float, int, bool]:
    """Return, length and whether the time limit ended one closed-loop episode."""
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total, steps = total + float(reward), steps + 1
        if terminated or truncated:
            env.close()
            return total, steps, bool(truncated)


def _policy_score(task: TaskSpec, policy: Any, seeds: range) -> float:
    returns = [_episode(task.make_env(), seed, policy)[0] for seed in seeds]
    return task.normalizer(np.array(returns), NO_SUCCESS)


# --- registration -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cartpole-variants", "minigrid-sequence", "gym-sequence"])
def test_registered_families_are_task_families_with_documented_options(name: str) -> None:
    family = registry.load("l2rl.scenarios", name)
    assert isinstance(family, TaskFamily)
    assert family.description
    for field_name, field in family.Config.model_fields.items():
        assert field.description, f"{name}: option {field_name} has no description"


# --- CartPole variants --------------------------------------------------------------------

ACTIONS = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0]


def test_swap_actions_acts_as_the_other_action_in_base() -> None:
    swapped = _rollout(make_cartpole_variant("swap-actions"), 3, ACTIONS)
    base = _rollout(make_cartpole_variant("base"), 3, [1 - a for a in ACTIONS])
    assert len(swapped) == len(base) == len(ACTIONS) + 1
    np.testing.assert_array_equal(swapped[0], base[0])
    for (obs_s, *rest_s), (obs_b, *rest_b) in zip(swapped[1:], base[1:], strict=True):
        np.testing.assert_array_equal(obs_s, obs_b)
        assert rest_s == rest_b
    # And it really differs from base under the same actions.
    same_actions = _rollout(make_cartpole_variant("base"), 3, ACTIONS)
    assert not np.array_equal(swapped[1][0], same_actions[1][0])


@pytest.mark.parametrize(
    ("variant", "transform"),
    [("negate-obs", lambda o: -o), ("permute-obs", lambda o: o[[2, 3, 0, 1]])],
)
def test_observation_variants_transform_base_observations_exactly(
    variant: str, transform: Any
) -> None:
    seen = _rollout(make_cartpole_variant(variant), 5, ACTIONS)
    base = _rollout(make_cartpole_variant("base"), 5, ACTIONS)
    np.testing.assert_array_equal(seen[0], transform(base[0]))
    for (obs_v, *rest_v), (obs_b, *rest_b) in zip(seen[1:], base[1:], strict=True):
        assert obs_v.dtype == np.float32
        np.testing.assert_array_equal(obs_v, transform(obs_b))
        assert rest_v == rest_b


def _expected_theta_dot(half_length: float, theta: float, theta_dot: float) -> float:
    """CartPole's Euler step of the angular velocity after pushing right (force +10)."""
    gravity, masscart, masspole, tau, force = 9.8, 1.0, 0.1, 0.02, 10.0
    total = masscart + masspole
    sin, cos = math.sin(theta), math.cos(theta)
    temp = (force + masspole * half_length * theta_dot**2 * sin) / total
    theta_acc = (gravity * sin - cos * temp) / (
        half_length * (4.0 / 3.0 - masspole * cos**2 / total)
    )
    return theta_dot + tau * theta_acc


@pytest.mark.parametrize(("variant", "half_length"), [("base", 0.5), ("long-pole", 1.0)])
def test_long_pole_changes_the_dynamics_consistently(variant: str, half_length: float) -> None:
    env = make_cartpole_variant(variant)
    env.reset(seed=0)
    cartpole = env.unwrapped
    assert cartpole.length == half_length
    assert cartpole.polemass_length == pytest.approx(0.1 * half_length)
    cartpole.state = np.array([0.0, 0.0, 0.1, 0.5])
    obs, *_ = env.step(1)
    assert obs[3] == pytest.approx(_expected_theta_dot(half_length, 0.1, 0.5), rel=1e-6)


def test_all_cartpole_variants_share_one_declared_space() -> None:
    # negate-obs and swap-actions never share a scenario (one MDP): two groups cover all.
    for group in (["base", "swap-actions", "permute-obs", "long-pole"], ["negate-obs"]):
        tasks = cartpole_variants.tasks({"variants": group})
        spec = Scenario.sequence("cp", tasks, steps_per_task=10).env_spec()
        assert spec.observation_space == gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        assert spec.action_space == gym.spaces.Discrete(2)
        assert spec.num_tasks == len(group)


def test_cartpole_options_names_params_limit_and_normalizer() -> None:
    tasks = cartpole_variants.tasks({})
    assert [t.name for t in tasks] == ["base", "swap-actions", "permute-obs"]
    assert tasks[1].params == {"variant": "swap-actions", "max_episode_steps": 200}
    assert tasks[0].normalizer == ReturnRange(0.0, 200.0)
    assert tasks[0].normalizer(np.array([100.0, 200.0]), NO_SUCCESS) == pytest.approx(0.75)
    # Each call builds a fresh env: the runner keeps separate train and eval envs.
    assert tasks[0].make_env() is not tasks[0].make_env()

    (short,) = cartpole_variants.tasks({"variants": ["long-pole"], "max_episode_steps": 30})
    assert _episode(short.make_env(), 0, _lean_policy) == (30.0, 30, True)  # the time limit
    assert short.normalizer(np.array([30.0]), NO_SUCCESS) == 1.0


def test_fixed_policy_solves_base_and_fails_the_conflicting_variants() -> None:
    tasks = {
        name: task for name in VARIANTS for task in cartpole_variants.tasks({"variants": [name]})
    }
    seeds = range(5)
    assert _policy_score(tasks["base"], _lean_policy, seeds) == 1.0
    assert _policy_score(tasks["long-pole"], _lean_policy, seeds) == 1.0
    for conflicting in ("swap-actions", "negate-obs", "permute-obs"):
        assert _policy_score(tasks[conflicting], _lean_policy, seeds) < 0.06
    # The policy that reads the permuted features where they now are solves permute-obs.
    reordered = tasks["permute-obs"]
    assert _policy_score(reordered, lambda o: int(o[0] + 0.5 * o[1] > 0), seeds) == 1.0


def test_cartpole_option_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match=r"unknown variant.*'flip'.*valid: base, swap-actions"):
        cartpole_variants.tasks({"variants": ["base", "flip"]})
    with pytest.raises(ConfigError, match="max_steps"):
        cartpole_variants.tasks({"max_steps": 100})
    with pytest.raises(ConfigError, match="max_episode_steps"):
        cartpole_variants.tasks({"max_episode_steps": 0})
    with pytest.raises(ConfigError, match="unique"):
        cartpole_variants.tasks({"variants": ["base", "base"]})
    with pytest.raises(ConfigError, match="unknown CartPole variant 'flip'; valid: base"):
        make_cartpole_variant("flip")


# --- MiniGrid sequence --------------------------------------------------------------------


def test_minigrid_tasks_share_flat_uint8_spaces_and_score_success() -> None:
    tasks = minigrid_sequence.tasks({})
    assert [t.name for t in tasks] == list(DEFAULT_ENV_IDS)
    spec = Scenario.sequence("mg", tasks, steps_per_task=10).env_spec()
    assert spec.observation_space == gym.spaces.Box(0, 10, (147,), np.uint8)
    assert spec.action_space == gym.spaces.Discrete(7)
    assert isinstance(spec.observation_space, gym.spaces.Box)
    assert frame_scale(spec.observation_space) == 0.1  # indices reach the net in [0, 1]
    assert all(t.normalizer == SuccessRate() for t in tasks)
    flags = np.array([True, False, True, True])
    assert tasks[0].normalizer(np.array([0.9, 0.0, 0.5, 0.7]), flags) == 0.75
    assert tasks[0].make_env() is not tasks[0].make_env()


def test_minigrid_observation_is_the_flattened_symbolic_view() -> None:
    flat = make_minigrid_env("MiniGrid-LavaGapS5-v0")
    raw = gym.make("MiniGrid-LavaGapS5-v0")
    obs, _ = flat.reset(seed=7)
    raw_obs, _ = raw.reset(seed=7)
    assert obs.dtype == np.uint8 and obs.shape == (147,)
    np.testing.assert_array_equal(obs, raw_obs["image"].reshape(-1))
    obs, *_ = flat.step(2)  # forward
    raw_obs, *_ = raw.step(2)
    np.testing.assert_array_equal(obs, raw_obs["image"].reshape(-1))


def test_minigrid_symbolic_values_stay_within_the_declared_high() -> None:
    env = make_minigrid_env("MiniGrid-DoorKey-5x5-v0")  # key, door, wall, goal: many indices
    obs, _ = env.reset(seed=3)
    seen = [obs]
    for action in [0, 2, 1, 2, 3, 5, 2, 2] * 4:
        obs, *_ = env.step(action)
        seen.append(obs)
    assert max(int(o.max()) for o in seen) <= SYMBOL_HIGH == 10
    assert all(env.observation_space.contains(o) for o in seen)


def test_minigrid_actions_option_keeps_the_first_actions() -> None:
    (task,) = minigrid_sequence.tasks({"env_ids": ["MiniGrid-LavaGapS5-v0"], "actions": 3})
    env, raw = task.make_env(), gym.make("MiniGrid-LavaGapS5-v0")
    assert env.action_space == gym.spaces.Discrete(3)
    obs, _ = env.reset(seed=5)
    raw_obs, _ = raw.reset(seed=5)
    for action in [2, 1, 2, 0]:  # the same indices act the same
        obs, *_ = env.step(action)
        raw_obs, *_ = raw.step(action)
        np.testing.assert_array_equal(obs, raw_obs["image"].reshape(-1))
    with pytest.raises(ValueError, match=r"action 3 is outside Discrete\(3\)"):
        env.step(3)
    with pytest.raises(ConfigError, match="actions"):
        minigrid_sequence.tasks({"actions": 8})
    with pytest.raises(ValueError, match="cannot keep the first 9 actions"):
        FirstActions(make_minigrid_env("MiniGrid-LavaGapS5-v0"), 9)


def test_minigrid_episode_limit_replaces_the_envs_own() -> None:
    assert make_minigrid_env("MiniGrid-DoorKey-5x5-v0").unwrapped.max_steps == 250
    (task,) = minigrid_sequence.tasks(
        {"env_ids": ["MiniGrid-DoorKey-5x5-v0"], "max_episode_steps": 4}
    )
    trace = _rollout(task.make_env(), 0, [0] * 10)  # turn left forever
    assert len(trace) - 1 == 4
    assert [step[3] for step in trace[1:]] == [False, False, False, True]


def test_minigrid_option_errors_are_clear() -> None:
    with pytest.raises(
        ConfigError, match=r"env_ids.*unknown gymnasium env 'MiniGrid-DoorKey-5x5-v9'"
    ):
        minigrid_sequence.tasks({"env_ids": ["MiniGrid-DoorKey-5x5-v9"]})
    with pytest.raises(ConfigError, match="env_id"):
        minigrid_sequence.tasks({"env_id": ["MiniGrid-DoorKey-5x5-v0"]})
    (task,) = minigrid_sequence.tasks({"env_ids": ["CartPole-v1"]})
    with pytest.raises(ConfigError, match="'CartPole-v1' is not a MiniGrid env"):
        task.make_env()


# --- tasks from gym envs ------------------------------------------------------------------


def test_tasks_from_env_ids_and_factories() -> None:
    tasks = tasks_from_envs(
        ["CartPole-v1", lambda: gym.make("CartPole-v1", max_episode_steps=20)],
        return_range=(0.0, 500.0),
    )
    assert [t.name for t in tasks] == ["CartPole-v1", "task-1"]
    assert tasks[0].params == {"env": "CartPole-v1"}
    assert tasks[0].normalizer(np.array([250.0]), NO_SUCCESS) == 0.5
    env_a, env_b = tasks[0].make_env(), tasks[0].make_env()
    assert env_a is not env_b and env_a.spec is not None and env_a.spec.id == "CartPole-v1"
    spec = Scenario.sequence("two", tasks, steps_per_task=5).env_spec()
    assert spec.action_space == gym.spaces.Discrete(2)


def test_without_padding_different_spaces_fail_at_env_spec() -> None:
    scenario = scenario_from_envs(
        ["MountainCar-v0", "Acrobot-v1"], steps_per_task=10, normalizer=SuccessRate()
    )
    with pytest.raises(ConfigError, match="'Acrobot-v1' has spaces"):
        scenario.env_spec()


def test_padding_declares_one_union_box_and_zero_pads() -> None:
    scenario = scenario_from_envs(
        ["MountainCar-v0", "Acrobot-v1"],
        steps_per_task=10,
        cycles=2,
        task_aware=False,
        scenario_name="classic",
        normalizer=[ReturnRange(-200.0, -100.0), ReturnRange(-500.0, 0.0)],
        pad_observations=True,
    )
    assert scenario.name == "classic" and not scenario.task_aware
    assert [b.task_index for b in scenario.schedule] == [0, 1, 0, 1]
    spec = scenario.env_spec()
    box = spec.observation_space
    assert isinstance(box, gym.spaces.Box) and box.shape == (6,) and box.dtype == np.float32
    # Features 0-1: union of MountainCar's (-1.2..0.6, -0.07..0.07) and Acrobot's (-1..1).
    np.testing.assert_allclose(box.low[:2], [-1.2, -1.0])
    np.testing.assert_allclose(box.high[:2], [1.0, 1.0])
    np.testing.assert_allclose(box.high[4:], [4 * np.pi, 9 * np.pi], rtol=1e-6)
    assert spec.action_space == gym.spaces.Discrete(3)

    mountain = scenario.tasks[0]
    assert mountain.params == {"env": "MountainCar-v0", "padded_to": 6}
    assert mountain.normalizer(np.array([-150.0]), NO_SUCCESS) == 0.5
    padded, raw = mountain.make_env(), gym.make("MountainCar-v0")
    obs, raw_obs = padded.reset(seed=1)[0], raw.reset(seed=1)[0]
    np.testing.assert_array_equal(obs, np.concatenate([raw_obs, np.zeros(4, np.float32)]))
    assert box.contains(obs)
    assert padded is not mountain.make_env()


def test_padded_space_widens_bounds_to_hold_the_zero_padding() -> None:
    short = gym.spaces.Box(
        np.array([5.0], np.float32), np.array([6.0], np.float32), dtype=np.float32
    )
    long = gym.spaces.Box(np.array([1.0, 2.0]), np.array([3.0, 4.0]), dtype=np.float64)
    union = padded_space([long, short])
    assert union.dtype == np.float64
    np.testing.assert_array_equal(union.low, [1.0, 0.0])  # position 1 holds 0 for `short`
    np.testing.assert_array_equal(union.high, [6.0, 4.0])
    with pytest.raises(ConfigError, match="1-D Box"):
        padded_space([long, gym.spaces.Box(0, 1, (2, 2))])
    with pytest.raises(ConfigError, match="1-D Box"):
        PadObservation(gym.make("MiniGrid-DoorKey-5x5-v0"), union)


def test_tasks_from_envs_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="exactly one of `normalizer`"):
        tasks_from_envs(["CartPole-v1"])
    with pytest.raises(ConfigError, match="exactly one of `normalizer`"):
        tasks_from_envs(["CartPole-v1"], normalizer=SuccessRate(), return_range=(0, 1))
    with pytest.raises(ConfigError, match="2 normalizers for 1 envs"):
        tasks_from_envs(["CartPole-v1"], normalizer=[SuccessRate(), SuccessRate()])
    with pytest.raises(ConfigError, match="high > low"):
        tasks_from_envs(["CartPole-v1"], return_range=(1.0, 1.0))
    with pytest.raises(ConfigError, match="unique"):
        tasks_from_envs(["CartPole-v1", "CartPole-v1"], normalizer=SuccessRate())
    with pytest.raises(ConfigError, match=r"unknown gymnasium env 'CartPol-v1'.*CartPole"):
        tasks_from_envs(["CartPol-v1"], normalizer=SuccessRate())
    with pytest.raises(ConfigError, match="at least one env"):
        tasks_from_envs([], normalizer=SuccessRate())


def test_gym_sequence_family_builds_scored_padded_tasks() -> None:
    tasks = gym_sequence.tasks(
        {
            "env_ids": ["MountainCar-v0", "Acrobot-v1"],
            "return_low": [-200.0, -500.0],
            "return_high": [-100, 0],
            "pad_observations": True,
        }
    )
    assert [t.normalizer for t in tasks] == [ReturnRange(-200, -100), ReturnRange(-500, 0)]
    assert Scenario.sequence("g", tasks, 10).env_spec().observation_space.shape == (6,)
    (cart,) = gym_sequence.tasks({"env_ids": ["CartPole-v1"], "return_low": 0, "return_high": 500})
    assert cart.normalizer == ReturnRange(0, 500)
    (scored,) = gym_sequence.tasks({"env_ids": ["CartPole-v1"], "success": True})
    assert scored.normalizer == SuccessRate()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env_ids": ["CartPole-v1"]}, "either `success: true`, or both"),
        ({"env_ids": ["CartPole-v1"], "success": True, "return_low": 0}, "either `success"),
        ({"env_ids": ["CartPole-v1"], "return_low": 0}, "given together"),
        (
            {"env_ids": ["CartPole-v1"], "return_low": [0, 1], "return_high": 500},
            "`return_low` has 2 values for 1 env_ids",
        ),
        ({"env_ids": ["CartPole-v1"], "return_low": 5, "return_high": 5}, "high > low"),
        ({"env_ids": ["Nope-v0"], "success": True}, r"env_ids.*unknown gymnasium env 'Nope-v0'"),
        ({"env_ids": [], "success": True}, "env_ids"),
        ({"env_ids": ["CartPole-v1"], "success": True, "pad": True}, "pad"),
    ],
)
def test_gym_sequence_option_errors_are_clear(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        gym_sequence.tasks(options)
