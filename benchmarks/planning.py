"""MPC planning speed: :class:`l2rl.planning.CEMPlanner` against one plain torch function.

Decisions per second of CEM at its default settings (HyperCRL's cartpole ones: horizon 25,
400 samples, 40 elites, 5 iterations) on Pendulum-shaped states, planning through a
delta-state MLP dynamics model (obs 3 + action 1 -> 2 x 32 ReLU units -> 3, HyperCRL's
pendulum model size) and :func:`~l2rl.scenarios.pendulum_gravity.pendulum_reward`. The
baseline, :func:`plain_cem`, is the same algorithm written as one function with no
settings object, no callables passed in and no box checks; before timing, both must return
the same plan from the same random stream, so they do the same work. The two are
interleaved (alternating which goes first) and repeated; the ratio is the median of the
per-repeat ratios. Target: l2rl >= 0.9x the plain function.

Usage::

    python benchmarks/planning.py --decisions 20 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from l2rl.planning import CEMPlanner, CEMSettings
from l2rl.scenarios.pendulum_gravity import pendulum_reward

LOW, HIGH = torch.tensor([-2.0]), torch.tensor([2.0])


def delta_model(seed: int) -> nn.Module:
    """The dynamics MLP: ``(obs, action) -> obs change``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)
    )


@torch.no_grad()
def plain_cem(
    model: nn.Module, obs: torch.Tensor, s: CEMSettings, g: torch.Generator
) -> torch.Tensor:
    """CEM in one function, the hand-written baseline (same draws as the planner)."""
    mean = torch.zeros(s.horizon, 1)
    std = torch.full((s.horizon, 1), s.init_std * 2.0)
    for round_ in range(s.iterations + 1):
        acts = torch.clamp(mean + std * torch.randn((s.samples, s.horizon, 1), generator=g), -2, 2)
        state = obs.expand(s.samples, 3)
        ret = torch.zeros(s.samples)
        for t in range(s.horizon):
            nxt = state + model(torch.cat([state, acts[:, t]], -1))
            th = torch.atan2(state[:, 1], state[:, 0])
            ret = ret - s.discount**t * (
                th**2 + 0.1 * state[:, 2] ** 2 + 0.001 * acts[:, t, 0] ** 2
            )
            state = nxt
        if round_ == s.iterations:
            return acts[int(torch.argmax(ret))]
        elite = acts[torch.topk(ret, s.elites).indices]
        mean, std = elite.mean(0), elite.std(0, unbiased=False)
    raise AssertionError("unreachable")


def l2rl_planner(
    model: nn.Module, settings: CEMSettings
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """A decision through :class:`CEMPlanner`, the way an MPC agent makes one."""
    planner = CEMPlanner(settings, LOW, HIGH)

    def dynamics(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        change: torch.Tensor = model(torch.cat([obs, action], -1))
        return obs + change

    def decide(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return planner.plan(obs, dynamics, pendulum_reward, generator)

    return decide


def decisions_per_second(
    decide: Callable[[torch.Tensor, torch.Generator], torch.Tensor], n: int
) -> float:
    """Rate of ``n`` decisions from fixed start states."""
    starts = torch.randn(n, 3, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    begin = time.perf_counter()
    for obs in starts:
        decide(obs, generator)
    return n / (time.perf_counter() - begin)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure, print; 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20, help="decisions per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=CEMSettings.samples)
    parser.add_argument("--horizon", type=int, default=CEMSettings.horizon)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = CEMSettings(
        horizon=args.horizon, samples=args.samples, elites=min(CEMSettings.elites, args.samples)
    )
    model = delta_model(0)
    ours = l2rl_planner(model, settings)

    def plain(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return plain_cem(model, obs, settings, generator)

    obs = torch.tensor([1.0, 0.0, 0.0])
    same = torch.equal(
        ours(obs, torch.Generator().manual_seed(0)), plain(obs, torch.Generator().manual_seed(0))
    )
    print(f"CEM {settings}; torch threads {torch.get_num_threads()}; same plan: {same}")
    if not same:
        print("the two planners disagree: nothing to compare")
        return 1
    rates: dict[str, list[float]] = {"l2rl": [], "plain": []}
    for repeat in range(args.repeats):
        order = [("l2rl", ours), ("plain", plain)][:: 1 if repeat % 2 == 0 else -1]
        for name, decide in order:
            rates[name].append(decisions_per_second(decide, args.decisions))
    ratios = [a / b for a, b in zip(rates["l2rl"], rates["plain"], strict=True)]
    for name, values in rates.items():
        print(f"{name:>6}: {statistics.median(values):8.1f} decisions/s (median of {args.repeats})")
    ratio = statistics.median(ratios)
    print(f"l2rl / plain median: {ratio:.3f} (target >= 0.9)")
    met = ratio >= 0.9
    print("target met" if met else "target NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
