"""cartpole-continuous: the bodies, the equations of motion, the rail, the reward and the
task family's options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2rl.config import ConfigError
from l2rl.scenarios.cartpole_continuous import (
    DAMPING,
    GRAVITY,
    RAIL_END,
    REFERENCE_RETURNS,
    CartPoleBody,
    capsule_inertia,
    capsule_mass,
    cartpole_continuous,
    cartpole_reward,
    cartpole_step,
    make_cartpole,
)


def test_capsule_mass_and_inertia_by_hand() -> None:
    # The pole of length 0.6: pi r^2 L + 4/3 pi r^3 at density 1000.
    r = 0.049
    assert capsule_mass(r, 0.6) == pytest.approx(
        1000 * (math.pi * r**2 * 0.6 + 4 / 3 * math.pi * r**3)
    )
    assert capsule_mass(r, 0.6) == pytest.approx(5.0186, abs=1e-4)
    # A thin capsule is a rod: m L^2 / 12.
    thin = 1e-4
    rod = capsule_mass(thin, 2.0) * 4.0 / 12
    assert capsule_inertia(thin, 2.0) == pytest.approx(rod, rel=1e-3)
    # A capsule of zero length is a sphere: 2/5 m r^2.
    assert capsule_inertia(0.1, 0.0) == pytest.approx(0.4 * capsule_mass(0.1, 0.0) * 0.01, rel=1e-6)


def energy(state: np.ndarray, body: CartPoleBody) -> float:
    x_dot, theta, theta_dot = state[2], state[1], state[3]
    m_c, m_p, half = body.cart_mass, body.pole_mass, body.length / 2
    kinetic = 0.5 * (m_c + m_p) * x_dot**2 - m_p * half * math.cos(theta) * x_dot * theta_dot
    kinetic += 0.5 * (body.pole_inertia + m_p * half**2) * theta_dot**2
    return kinetic - m_p * GRAVITY * half * math.cos(theta)


def test_without_force_the_damped_system_only_loses_energy() -> None:
    body = CartPoleBody(0.8)
    states = [np.array([0.0, 2.5, 0.3, -1.0])]
    for _ in range(100):
        states.append(cartpole_step(states[-1], np.zeros(1), body))
    losses = -np.diff([energy(s, body) for s in states])
    assert (losses > -1e-6).all()
    # Damping 1 on both joints dissipates d (x'^2 + theta'^2) per second; over a step of
    # 0.04 s that is about the mean of its value at the step's two ends times 0.04.
    rate = [DAMPING * (s[2] ** 2 + s[3] ** 2) for s in states]
    expected = 0.04 * (np.array(rate[:-1]) + np.array(rate[1:])) / 2
    np.testing.assert_allclose(losses[:20], expected[:20], rtol=0.1)


def test_numpy_and_torch_give_the_same_steps() -> None:
    rng = np.random.default_rng(0)
    states, actions = rng.normal(size=(6, 4)), rng.uniform(-4, 4, (6, 1))
    body = CartPoleBody(1.0)
    np.testing.assert_allclose(
        cartpole_step(torch.as_tensor(states), torch.as_tensor(actions), body, torch).numpy(),
        cartpole_step(states, actions, body),
    )


def test_the_rail_stops_the_cart() -> None:
    body = CartPoleBody(0.6)
    state = np.zeros(4)
    for _ in range(100):
        state = cartpole_step(state, np.array([3.0]), body)
        assert abs(state[0]) <= RAIL_END
    assert state[0] == RAIL_END and state[2] == 0.0


def test_reward_is_one_upright_and_e_minus_4_hanging() -> None:
    length = 0.8
    up = torch.tensor([[0.0, math.pi, 0.0, 0.0]])
    down = torch.zeros(1, 4)
    a = torch.tensor([[2.0]])
    assert float(cartpole_reward(down, a, up, length)) == pytest.approx(1.0 - 0.04)
    assert float(cartpole_reward(up, a * 0, down, length)) == pytest.approx(math.exp(-4.0))


def test_the_reward_function_is_the_environments_reward() -> None:
    env = make_cartpole(0.6, 50)
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(50):
        action = env.action_space.sample()
        next_obs, reward, _, truncated, _ = env.step(action)
        mine = cartpole_reward(
            torch.as_tensor(obs)[None],
            torch.as_tensor(action)[None],
            torch.as_tensor(next_obs)[None],
            0.6,
        )
        assert float(mine) == pytest.approx(reward, abs=1e-6)
        obs = next_obs
    assert truncated


def test_the_task_family_checks_its_options() -> None:
    tasks = cartpole_continuous.tasks({}, where="test")
    assert [t.name for t in tasks] == ["L=0.6", "L=0.8", "L=0.4", "L=1", "L=1.2"]
    assert all(t.reward_fn is not None for t in tasks)
    assert set(REFERENCE_RETURNS) >= {0.6, 0.8, 0.4, 1.0, 1.2}
    with pytest.raises(ConfigError, match="no measured reference returns"):
        cartpole_continuous.tasks({"lengths": [0.65]}, where="test")
    with pytest.raises(ConfigError, match="distinct"):
        cartpole_continuous.tasks({"lengths": [0.6, 0.6]}, where="test")
    given = cartpole_continuous.tasks(
        {"lengths": [0.65], "return_low": [0.0], "return_high": [150.0]}, where="test"
    )
    assert given[0].normalizer(np.array([75.0]), np.array([False])) == pytest.approx(0.5)


def test_mpc_runs_on_the_scenario_with_its_reward_functions() -> None:
    from l2rl.agents.mpc import MPCAgent
    from l2rl.builder import services_from
    from l2rl.components.replay.current_task import CurrentTaskReplay
    from l2rl.config import EvalConfig
    from l2rl.runner import Runner
    from l2rl.scenario import Scenario

    tasks = cartpole_continuous.tasks({"lengths": [0.6, 1.0]}, where="test")
    scenario = Scenario.sequence("cartpole", tasks, steps_per_task=40)
    spec = scenario.env_spec()
    assert spec.reward_fns == tuple(t.reward_fn for t in tasks)
    replay = CurrentTaskReplay(CurrentTaskReplay.Config(capacity=200, chunk_steps=10), spec)
    replay.name = "current-task"
    options = {
        "hidden": [16],
        "samples": 16,
        "elites": 4,
        "iterations": 2,
        "horizon": 4,
        "random_steps": 20,
        "train_every": 20,
        "gradient_steps": 4,
        "batch_size": 8,
        "angle_dims": [1],
    }
    agent = MPCAgent(MPCAgent.Config(**options), spec, services_from([replay]), seed=0)
    result = Runner(
        scenario, agent, [replay], EvalConfig(every=40, episodes=1, max_episode_steps=10), seed=0
    ).run()
    assert result.updates > 0 and len(result.records) == 6
