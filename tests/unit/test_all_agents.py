"""Every registered agent builds from a run config and trains 200 steps through the runner,
alone and with every registered non-replay component (the regularizers).

Each agent is tried on a discrete task (CartPole) and a continuous one (Pendulum), with a
FIFO replay and without; it runs on every combination it accepts (an agent says no with a
ConfigError when it is built) and must accept at least one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from l2rl import registry
from l2rl.builder import build_run
from l2rl.config import ConfigError, parse_config
from l2rl.hooks import ComponentError
from l2rl.runner import Runner

ROOT = Path(__file__).resolve().parents[2]

SCENARIOS: dict[str, dict[str, Any]] = {
    "discrete": {
        "name": "cartpole-variants",
        "options": {"variants": ["base"], "max_episode_steps": 50},
    },
    "continuous": {"name": "pendulum-gravity", "options": {"gravities": [10]}},
}
REPLAYS = ("fifo", "none")
SMALL: dict[str, dict[str, Any]] = {
    "dqn": {"learning_starts": 50, "batch_size": 16, "hidden_sizes": [16]},
    "ppo": {"n_steps": 32, "num_minibatches": 2, "hidden_sizes": [16]},
    "sac": {"learning_starts": 50, "random_steps": 50, "batch_size": 16, "hidden_sizes": [16]},
    "dreamer": {"learning_starts": 50, "batch_size": 4, "sequence_length": 8, "units": 16},
    "mpc": {
        "hidden": [16],
        "samples": 16,
        "horizon": 3,
        "elites": 4,
        "iterations": 2,
        "random_steps": 50,
        "train_every": 50,
        "gradient_steps": 2,
        "batch_size": 16,
    },
}
"""Options that make the built-ins update within 200 steps; other agents run on defaults."""

TINY_WORLD_MODEL = {
    "name": "dreamer-world-model",
    "options": {
        "deter": 16,
        "latents": 2,
        "classes": 4,
        "units": 16,
        "layers": 1,
        "batch_size": 4,
        "sequence_length": 8,
        "learning_starts": 50,
    },
}
COMPANIONS: dict[str, list[dict[str, Any]]] = {"dreamer": [TINY_WORLD_MODEL]}
"""Components an agent cannot run without (Dreamer learns in a world model)."""
COMPONENT_COMPANIONS: dict[str, list[dict[str, Any]]] = {
    "plan2explore": [TINY_WORLD_MODEL],
    "world-model-heldout": [TINY_WORLD_MODEL],
}
"""Components a component cannot run without (Plan2Explore reads a world model's states;
the held-out probe evaluates a world model)."""
AGENT_OPTIONS_WITH: dict[tuple[str, str], dict[str, Any]] = {
    ("mpc", "hypercrl"): {"model": "hypernetwork"},
    ("dqn", "hypercrl"): {"model": "hypernetwork"},
}
"""Agent options a component needs (MPC runs its model on the hypernetwork's weights)."""

TWO_TASKS: dict[str, dict[str, Any]] = {
    "discrete": {
        "name": "cartpole-variants",
        "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 50},
    },
    "continuous": {"name": "pendulum-gravity", "options": {"gravities": [10, 12]}},
}
"""Two-task versions, so that task-end hooks (Fisher, masks, anchors) run and then matter."""

COMPONENTS = sorted(
    name
    for name in registry.available("l2rl.components")
    if getattr(registry.load("l2rl.components", name), "role", None) != "replay"
)


def run_config(agent: str, scenario: str, replay: str, num_envs: int) -> dict[str, Any]:
    return {
        "name": f"{agent}-{scenario}",
        "scenario": {**SCENARIOS[scenario], "steps_per_task": 200},
        "agent": {"name": agent, "options": dict(SMALL.get(agent, {}))},
        "replay": None
        if replay == "none"
        else {"name": "fifo", "options": {"capacity": 1000, "max_envs": num_envs}},
        "evaluation": {"every": 200, "episodes": 1, "max_episode_steps": 50},
        "num_envs": num_envs,
        "progress": False,
        "components": COMPANIONS.get(agent, []),
    }


def with_component(config: dict[str, Any], component: str) -> list[dict[str, Any]]:
    """The run's components plus ``component`` and what it needs; a companion of the same
    name is used only once."""
    needed = [*config["components"], *COMPONENT_COMPANIONS.get(component, [])]
    companions = list({c["name"]: c for c in needed if c["name"] != component}.values())
    own = next((c for c in needed if c["name"] == component), {"name": component})
    return [*companions, own]


@pytest.mark.parametrize("agent", registry.available("l2rl.agents"))
@pytest.mark.parametrize("num_envs", [1, 2])
def test_every_registered_agent_trains_200_steps_on_a_setup_it_accepts(
    agent: str, num_envs: int
) -> None:
    torch.set_num_threads(1)
    ran = []
    for scenario in SCENARIOS:
        for replay in REPLAYS:
            config = parse_config(run_config(agent, scenario, replay, num_envs))
            try:
                built = build_run(config, seed=0)
            except ConfigError:
                continue  # the agent refuses this space or replay setting
            result = Runner(
                built.scenario,
                built.agent,
                built.components,
                config.evaluation,
                seed=0,
                env_spec=built.env_spec,
                num_envs=num_envs,
            ).run()
            assert result.env_steps == 200
            assert len(result.records) == 2  # before training and at the window's end
            if agent in SMALL:
                assert result.updates > 0, (scenario, replay)
            ran.append((scenario, replay))
    assert ran, f"agent {agent!r} accepted none of {list(SCENARIOS)} x {list(REPLAYS)}"


@pytest.mark.parametrize("agent", ["dqn", "ppo", "sac"])
def test_greedy_actions_of_a_stack_equal_those_one_by_one(agent: str) -> None:
    # Markov policies only: Dreamer filters a latent state per stream, so a stack of 16
    # and 16 single calls are different histories by design.
    compared = 0
    for scenario in SCENARIOS:
        for replay in REPLAYS:
            config = parse_config(run_config(agent, scenario, replay, 1))
            try:
                built = build_run(config, seed=0)
            except ConfigError:
                continue
            space = built.env_spec.observation_space
            space.seed(0)
            obs = np.stack([space.sample() for _ in range(16)])
            batched = np.asarray(built.agent.act_batch(obs, None, explore=False))
            single = np.asarray([built.agent.act(o, None, explore=False) for o in obs])
            np.testing.assert_allclose(batched, single, rtol=1e-6, atol=1e-6)
            compared += 1
    assert compared


CANNOT_COMPOSE = {
    # The world model trains on the replay's sequences; PPO refuses a replay (on-policy).
    ("ppo", "dreamer-world-model"),
    # Plan2Explore trains on the replay's sequences too.
    ("ppo", "plan2explore"),
    # The held-out probe needs a world model, which needs a replay.
    ("ppo", "world-model-heldout"),
    # These agents run their own networks; they never bind the hypernetwork's weights.
    ("ppo", "hypercrl"),
    ("sac", "hypercrl"),
    ("dreamer", "hypercrl"),
    # Skill managers' skills are parameter sets of a policy module only DQN binds.
    *(
        (agent, manager)
        for agent in ("ppo", "sac", "dreamer", "mpc")
        for manager in ("slim", "csp")
    ),
}
"""Pairs every setup of which must be refused before training (a ConfigError)."""


@pytest.mark.parametrize("agent", registry.available("l2rl.agents"))
@pytest.mark.parametrize("component", COMPONENTS)
def test_every_agent_trains_with_every_component_that_applies_to_it(
    agent: str, component: str
) -> None:
    """Two tasks of 100 steps with the component on default options.

    A component may refuse an agent, but only before training: a ConfigError when the run
    is built, or an error raised in ``on_run_start`` (where it first sees the agent; A-GEM
    refuses PPO there, whose losses do not take replayed transitions).
    """
    torch.set_num_threads(1)
    outcomes = []
    for scenario in TWO_TASKS:
        for replay in REPLAYS:
            config = run_config(agent, scenario, replay, num_envs=1)
            config["scenario"] = {**TWO_TASKS[scenario], "steps_per_task": 100}
            config["evaluation"]["every"] = 100
            config["components"] = with_component(config, component)
            config["agent"]["options"] |= AGENT_OPTIONS_WITH.get((agent, component), {})
            parsed = parse_config(config)
            try:
                built = build_run(parsed, seed=0)
            except ConfigError:
                continue
            runner = Runner(
                built.scenario,
                built.agent,
                built.components,
                parsed.evaluation,
                seed=0,
                env_spec=built.env_spec,
            )
            try:
                result = runner.run()
            except ComponentError as err:
                assert err.component == component and err.hook == "on_run_start", err
                outcomes.append("refused")
                continue
            assert result.env_steps == 200
            if agent in SMALL:
                assert result.updates > 0
            outcomes.append("trained")
    if (agent, component) in CANNOT_COMPOSE:
        assert not outcomes, f"{agent!r} with {component!r} was expected to be refused"
        return
    assert outcomes, f"{agent!r} with {component!r}: no setup could be built"


def test_every_builtin_agent_declared_in_pyproject_is_registered() -> None:
    """Fails until the package is reinstalled after an entry point is added."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        declared = tomllib.load(f)["project"]["entry-points"]["l2rl.agents"]
    assert set(declared) <= set(registry.available("l2rl.agents"))
    assert set(SMALL) <= set(declared)
