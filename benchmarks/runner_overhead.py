"""What the runner's hook dispatch costs: env steps/s with and without 10 no-op components.

Three measurements on CartPole-v1, interleaved and repeated, medians reported:

(a) the raw environment loop with random actions (the ceiling);
(b) the runner training DQN with FIFO replay (evaluation pushed past the end of the run
    and cut to one step, so it costs nothing);
(c) the same with 10 ``NoOpComponent`` s, each implementing ``on_step`` and ``after_update``.

Target: 10 no-op components cost under 5%, i.e. (b)/(c) - 1 < 0.05 in time per step.
Timings use one torch thread: with two threads on two cores, small-network timings swing
several-fold between runs.

Usage::

    python benchmarks/runner_overhead.py --steps 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from l2rl.builder import build_agent, build_component, services_from
from l2rl.config import EvalConfig, PluginConfig, PluginRef
from l2rl.core import Component
from l2rl.hooks import Hook, HookDispatcher
from l2rl.runner import Runner
from l2rl.scenarios.from_envs import scenario_from_envs
from l2rl.testing.fakes import NoOpComponent
from l2rl.types import Step

ENV_ID = "CartPole-v1"
NUM_NOOPS = 10
TARGET_OVERHEAD = 0.05
# The lean hand-written loop the design notes compare against: an update every 10 steps,
# batch 128, MLP 120-84.
DQN_OPTIONS = {
    "train_every": 10,
    "batch_size": 128,
    "hidden_sizes": [120, 84],
    "learning_starts": 1000,
}


def raw_env_rate(steps: int, seed: int) -> float:
    """Env steps/s of CartPole-v1 stepped with pre-drawn random actions."""
    env = gym.make(ENV_ID)
    actions = np.random.default_rng(seed).integers(0, 2, size=steps)
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def runner_rate(steps: int, seed: int, noops: int) -> float:
    """Env steps/s of the runner training DQN + FIFO on CartPole-v1, with ``noops`` no-ops."""
    scenario = scenario_from_envs([ENV_ID], steps_per_task=steps, return_range=(0.0, 500.0))
    env_spec = scenario.env_spec()
    replay = build_component(PluginRef(name="fifo", options={"capacity": steps}), env_spec)
    agent = build_agent(
        PluginRef(name="dqn", options=DQN_OPTIONS), env_spec, services_from([replay]), seed
    )
    components: list[Component] = [replay]
    for i in range(noops):
        noop = NoOpComponent(PluginConfig(), env_spec)
        noop.name = f"noop-{i}"
        components.append(noop)
    # Evaluation only before training and at the window's end, one step each.
    evaluation = EvalConfig(every=steps + 1, episodes=1, max_episode_steps=1)
    result = Runner(scenario, agent, components, evaluation, seed).run()
    return result.env_steps / result.wall_seconds


def dispatch_seconds(calls: int) -> float:
    """Seconds per ``on_step`` dispatch to :data:`NUM_NOOPS` no-op components.

    The cost the no-ops add to every env step, timed alone, without the noise of training.
    (They also receive ``after_update``, once per ``train_every`` steps.)
    """
    scenario = scenario_from_envs([ENV_ID], steps_per_task=1, return_range=(0.0, 500.0))
    env_spec = scenario.env_spec()
    noops = [NoOpComponent(PluginConfig(), env_spec) for _ in range(NUM_NOOPS)]
    dispatcher = HookDispatcher(noops)
    obs = np.zeros(4, dtype=np.float32)
    step = Step(obs, 0, 1.0, obs, False, False, 0, 1)
    start = time.perf_counter()
    for _ in range(calls):
        dispatcher.fire(Hook.STEP, None, step)
    return (time.perf_counter() - start) / calls


LABELS = {
    "raw": "(a) raw env, random actions",
    "plain": "(b) runner: DQN + FIFO",
    "noops": f"(c) runner: DQN + FIFO + {NUM_NOOPS} no-ops",
}


def measure(steps: int, repeats: int, seed: int) -> dict[str, list[float]]:
    """Steps/s of every configuration (keys of :data:`LABELS`), ``repeats`` times.

    The configurations are interleaved, and (b) and (c) run back to back in alternating
    order, so that load from other processes hits both alike and each repeat gives one
    fair (c)/(b) pair.
    """
    runs: dict[str, Callable[[], float]] = {
        "raw": lambda: raw_env_rate(steps, seed),
        "plain": lambda: runner_rate(steps, seed, 0),
        "noops": lambda: runner_rate(steps, seed, NUM_NOOPS),
    }
    # Warm-up past learning_starts: first-call costs (allocations, lazy imports) are not
    # what this benchmark measures.
    runner_rate(1500, seed, NUM_NOOPS)
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for repeat in range(repeats):
        order = ["raw", "plain", "noops"] if repeat % 2 == 0 else ["raw", "noops", "plain"]
        for key in order:
            rates[key].append(runs[key]())
    return rates


def report(rates: dict[str, list[float]], steps: int, dispatch: float) -> str:
    """The table of median steps/s, and the ratios against the target.

    The no-op overhead is the median over repeats of the paired time ratio (b)/(c) - 1,
    which is steadier under background load than a ratio of medians.
    """
    medians = {key: statistics.median(values) for key, values in rates.items()}
    width = max(len(label) for label in LABELS.values())
    repeats = len(rates["raw"])
    lines = [
        f"{ENV_ID}, {steps} env steps per run, {repeats} repeats, "
        f"torch threads: {torch.get_num_threads()}",
        f"{'configuration':<{width}}  {'median steps/s':>14}  all runs",
    ]
    for key, label in LABELS.items():
        runs = " ".join(f"{v:,.0f}" for v in rates[key])
        lines.append(f"{label:<{width}}  {medians[key]:>14,.0f}  {runs}")
    pairs = [c / b for b, c in zip(rates["plain"], rates["noops"], strict=True)]
    overhead = statistics.median(b / c for b, c in zip(rates["plain"], rates["noops"], strict=True))
    overhead -= 1.0
    verdict = "met" if overhead < TARGET_OVERHEAD else "NOT met"
    lines += [
        "",
        f"(b)/(a) runner with DQN vs raw env:            {medians['plain'] / medians['raw']:.3f}",
        f"(c)/(b) per repeat:                            {' '.join(f'{p:.3f}' for p in pairs)}",
        f"(c)/(b) median of the pairs:                   {statistics.median(pairs):.3f}",
        f"overhead of {NUM_NOOPS} no-op components (time/step):  {overhead:+.1%}",
        f"target, under {TARGET_OVERHEAD:.0%}:                            {verdict}",
        "",
        f"on_step dispatch to {NUM_NOOPS} no-ops, timed alone:        {dispatch * 1e6:.2f} us/step"
        f" = {dispatch * medians['plain']:.1%} of (b)'s time per step",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rates = measure(args.steps, args.repeats, args.seed)
    print(report(rates, args.steps, dispatch_seconds(200_000)))


if __name__ == "__main__":
    main()
