"""Measure the score bounds of ``cartpole-continuous`` (its ``REFERENCE_RETURNS``).

For each of HyperCRL's pole lengths: ``low``, the mean return of uniformly random forces
over ``--random-episodes`` episodes (reset and action-space seeds 0, 1, ...), and
``high``, the mean return of CEM planning through the exact dynamics
(:func:`~l2rl.scenarios.cartpole_continuous.cartpole_step`) with HyperCRL's settings
(horizon 25, 400 samples, 40 elites, 5 iterations; planner seed = reset seed) over
``--planned-episodes`` episodes. Prints each length's figures as it goes and, at the end,
the dict to paste into the scenario module, with standard errors.

    .venv/bin/python experiments/reference_returns/cartpole_continuous.py
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np
import torch

from l2rl.planning import CEMPlanner, CEMSettings
from l2rl.scenarios.cartpole_continuous import (
    CONTROL_LIMIT,
    HYPERCRL_LENGTHS,
    MEASURED_EPISODE_STEPS,
    CartPoleBody,
    cartpole_reward,
    cartpole_step,
    make_cartpole,
)


def random_returns(length: float, episodes: int) -> list[float]:
    """Returns of uniformly random forces, one episode per seed ``0 .. episodes - 1``."""
    env = make_cartpole(length, MEASURED_EPISODE_STEPS)
    returns = []
    for seed in range(episodes):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def planned_returns(length: float, episodes: int) -> list[float]:
    """Returns of CEM through the exact dynamics, one episode per seed."""
    body = CartPoleBody(length)
    box = torch.tensor([CONTROL_LIMIT], dtype=torch.float64)
    planner = CEMPlanner(CEMSettings(), -box, box)
    reward = partial(cartpole_reward, length=length)

    def dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = cartpole_step(state, action, body, torch)
        return out

    env = make_cartpole(length, MEASURED_EPISODE_STEPS)
    returns = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        generator = torch.Generator().manual_seed(seed)
        total, done = 0.0, False
        while not done:
            state = torch.as_tensor(obs, dtype=torch.float64)
            with torch.no_grad():
                action = planner.plan(state, dynamics, reward, generator)[0].numpy()
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    return returns


def _stderr(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / len(values) ** 0.5) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    """Measure and print; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="*", default=list(HYPERCRL_LENGTHS))
    parser.add_argument("--random-episodes", type=int, default=200)
    parser.add_argument("--planned-episodes", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = {}
    for length in args.lengths:
        low = random_returns(length, args.random_episodes)
        high = planned_returns(length, args.planned_episodes)
        rows[length] = (low, high)
        print(
            f"L={length:g}: random {np.mean(low):.1f} +- {_stderr(low):.1f}, "
            f"CEM {np.mean(high):.1f} +- {_stderr(high):.1f} (min {min(high):.1f})",
            flush=True,
        )
    print("REFERENCE_RETURNS = {")
    for length, (low, high) in rows.items():
        print(f"    {length}: ({np.mean(low):.1f}, {np.mean(high):.1f}),")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
