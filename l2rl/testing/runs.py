"""Tiny whole experiments for tests: a config that runs in seconds, and a way to cut a run
short at a chosen step (to test that a component resumes exactly).

>>> config = tiny_run_config("runs", steps_per_task=300)
>>> config["scenario"]["steps_per_task"], config["agent"]["name"]
(300, 'dqn')
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2rl.runner import Runner

_TINY: dict[str, Any] = {
    "name": "tiny",
    "seeds": [0],
    "scenario": {
        "name": "cartpole-variants",
        "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 30},
        "steps_per_task": 200,
    },
    "agent": {"name": "dqn", "options": {"learning_starts": 32, "batch_size": 16}},
    "replay": {"name": "fifo", "options": {"capacity": 1000}},
    "evaluation": {"every": 100, "episodes": 1},
    "metrics": {"reference_runs": False},
    "progress": False,
}


def tiny_run_config(
    output_dir: str | Path, steps_per_task: int = 200, **changes: Any
) -> dict[str, Any]:
    """A tiny experiment as a config mapping: DQN with FIFO replay on two CartPole variants
    (``base``, ``swap-actions``, 30-step episodes) of ``steps_per_task`` steps, evaluated
    every 100 steps (one episode), no reference runs, no progress display; runs go to
    ``output_dir``. Top-level keys of ``changes`` replace the defaults' (a fresh copy each
    call, so nested edits are safe)."""
    config = copy.deepcopy(_TINY)
    config["scenario"]["steps_per_task"] = steps_per_task
    config["output_dir"] = str(output_dir)
    config.update(copy.deepcopy(changes))
    return config


class Interrupted(Exception):
    """Stands in for a killed process (raised by :func:`interrupted_at`)."""


@contextmanager
def interrupted_at(step: int) -> Iterator[None]:
    """Inside the block, every run raises :class:`Interrupted` right after its evaluation at
    env step ``step`` (records of that evaluation written, a checkpoint of that step not)."""
    original = Runner._evaluate

    def evaluate(
        self: Runner, block: int, trained_task: int, block_end: bool, after_sleep: bool = False
    ) -> None:
        original(self, block, trained_task, block_end, after_sleep)
        if self.ctx.global_step == step and not after_sleep:
            raise Interrupted(f"interrupted at step {step}")

    Runner._evaluate = evaluate  # type: ignore[method-assign]
    try:
        yield
    finally:
        Runner._evaluate = original  # type: ignore[method-assign]
