"""What share of a run continual evaluation takes, by task count: lockstep against one
episode after another.

Every evaluation round plays ``episodes`` greedy episodes of every task, and rounds come
every ``every`` env steps, so evaluation grows with the square of the task count: an
``N``-task run has ``N`` times as many rounds, each ``N`` times as large. Lockstep (the
default, ``evaluation.parallel_episodes: null``) plays a task's episodes side by side with
one batched forward pass per step; ``parallel_episodes: 1`` plays them one after another,
one forward pass per episode step (the loop before lockstep). Both give the same returns
for the same seed (tests/unit/test_evaluation.py).

The run: DQN + FIFO on ``N`` CartPole-v1 tasks, ``--steps-per-task`` steps each,
evaluation every 1000 steps with 5 episodes (the default experiment's), one torch thread.
Both modes run back to back per task count, so background load hits both alike; the
share is evaluation's wall time over the run's, and the speed-up is the ratio of
evaluation times. Target (issue 15): evaluation under 10% of an 8-task run.

Usage::

    python benchmarks/evaluation_share.py --tasks 2 4 8 16 --steps-per-task 4000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from l2rl.builder import build_agent, build_component, services_from
from l2rl.config import EvalConfig, PluginRef
from l2rl.runner import Runner
from l2rl.scenarios.from_envs import scenario_from_envs

DQN_OPTIONS = {"train_every": 10, "batch_size": 128, "hidden_sizes": [120, 84]}
TARGET_SHARE = 0.10


def evaluation_share(
    tasks: int, steps: int, parallel: int | None, seed: int
) -> tuple[float, float]:
    """(evaluation seconds, run seconds) of one run."""
    scenario = scenario_from_envs(
        ["CartPole-v1"] * tasks,
        steps_per_task=steps,
        return_range=(0.0, 500.0),
        names=[f"cartpole-{i}" for i in range(tasks)],
    )
    spec = scenario.env_spec()
    replay = build_component(PluginRef(name="fifo", options={"capacity": 10_000}), spec)
    agent = build_agent(
        PluginRef(name="dqn", options=DQN_OPTIONS), spec, services_from([replay]), seed
    )
    evaluation = EvalConfig(every=1000, episodes=5, parallel_episodes=parallel)
    runner = Runner(scenario, agent, [replay], evaluation, seed)
    spent = 0.0
    original = runner._evaluate

    def timed(*args: Any, **kwargs: Any) -> None:
        nonlocal spent
        start = time.perf_counter()
        original(*args, **kwargs)
        spent += time.perf_counter() - start

    runner._evaluate = timed  # type: ignore[method-assign]
    result = runner.run()
    return spent, result.wall_seconds


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--steps-per-task", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"DQN + FIFO on N CartPole-v1 tasks, {args.steps_per_task} steps each, evaluation")
    print("every 1000 steps, 5 episodes per task")
    print()
    print("| tasks | one by one: eval s / share | lockstep: eval s / share | eval speed-up |")
    print("|---|---|---|---|")
    for tasks in args.tasks:
        serial = evaluation_share(tasks, args.steps_per_task, 1, args.seed)
        lockstep = evaluation_share(tasks, args.steps_per_task, None, args.seed)
        print(
            f"| {tasks} | {serial[0]:.1f} s / {serial[0] / serial[1]:.0%} "
            f"| {lockstep[0]:.1f} s / {lockstep[0] / lockstep[1]:.0%} "
            f"| {serial[0] / lockstep[0]:.2f}x |"
        )
    print()
    print(f"target: evaluation under {TARGET_SHARE:.0%} of an 8-task run (lockstep column)")


if __name__ == "__main__":
    main()
