"""``coreset``: the current task's transitions plus a small random coreset of every earlier
task, each minibatch drawing as much from every coreset as from the current task.

HyperCRL's strongest baseline (Huang et al. 2020, ``hypercrl/lqr_exp.py`` "coreset",
``model/mbrl.py``): when a task ends, ``M`` of its transitions chosen uniformly at random
without replacement (``IPSelector``; HyperCRL: ``M`` = 50 on pendulum, 30 on cart-pole)
are kept for good; while a later task trains, its loss on a minibatch of ``B`` adds, for
every earlier task, the loss summed over that task's ``M`` points times ``B / M``. Here
:meth:`CoresetReplay.sample` returns ``B`` transitions of the current task followed by
``B`` drawn uniformly with replacement from each earlier task's coreset: a loss summed over
the batch then has, per earlier task, the same expectation as HyperCRL's scaled term
(``B`` times the mean over its coreset). A batch therefore grows by ``B`` per finished
task.

The current task's transitions are kept first in, first out up to ``capacity``. A window
ends a task at the next ``on_task_start`` (true or inferred): its coreset replaces any
earlier coreset of the same task (a cycle keeps the newest). Transitions keep their task
ids (-1 in task-agnostic runs); sampling uses the component's own generator, seeded from
the run's seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.seeding import derive_seed
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch

from .transitions import TransitionArrays, batch_of

_STREAM = 0xC05E


class CoresetReplay(Component):
    """Component ``coreset`` (role ``replay``); see the module docstring."""

    role = "replay"

    class Config(PluginConfig):
        """Sizes of the current task's memory and of each coreset."""

        capacity: PositiveInt = Field(
            default=100_000, description="Current-task transitions kept (first in, first out)."
        )
        coreset_size: PositiveInt = Field(
            default=50,
            description="Transitions kept of each finished task (HyperCRL: 50 pendulum, 30 "
            "cart-pole).",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.current = TransitionArrays.for_spec(config.capacity, env_spec)
        self.window: int | None = None
        """The task whose transitions :attr:`current` holds (``None`` before any window)."""
        self.coresets: dict[int, dict[str, np.ndarray]] = {}
        """Finished task -> its coreset's transitions."""
        self.rng = np.random.default_rng(_STREAM)

    def on_run_start(self, ctx: RunContext) -> None:
        """Seed the sampling and selection generator from the run's seed."""
        self.rng = np.random.default_rng(derive_seed(ctx.seed, _STREAM))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Close the previous window: keep ``coreset_size`` of its transitions, drop the
        rest."""
        if self.window is not None and self.current.size > 0:
            size = min(self.config.coreset_size, self.current.size)
            chosen = self.rng.choice(self.current.size, size=size, replace=False)
            self.coresets[self.window] = self.current.rows(chosen)
        self.current.clear()
        self.window = task.index

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Store the transition in the current task's memory."""
        self.current.add(step)

    def __len__(self) -> int:
        """Current-task transitions (what a minibatch's first part is drawn from)."""
        return self.current.size

    def sample(self, batch_size: int) -> TransitionBatch:
        """``batch_size`` current-task transitions, then ``batch_size`` of each earlier
        task's coreset, each drawn uniformly with replacement.

        Raises:
            ValueError: no current-task transition is stored yet.
        """
        if self.current.size == 0:
            raise ValueError("the coreset replay holds no transition of the current task yet")
        parts = [self.current.rows(self.rng.integers(self.current.size, size=batch_size))]
        for task in sorted(self.coresets):
            if task == self.window:
                continue  # training on it again: its fresh transitions are the current ones
            coreset = self.coresets[task]
            index = self.rng.integers(len(coreset["obs"]), size=batch_size)
            parts.append({name: values[index] for name, values in coreset.items()})
        return batch_of(parts)

    def state_dict(self) -> dict[str, Any]:
        """The current memory, every coreset and the generator's state."""
        return {
            "current": self.current.state_dict(),
            "window": self.window,
            "coresets": {
                task: {name: torch.as_tensor(v) for name, v in coreset.items()}
                for task, coreset in self.coresets.items()
            },
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.current.load_state_dict(state["current"])
        self.window = None if state["window"] is None else int(state["window"])
        self.coresets = {
            int(task): {name: v.numpy().copy() for name, v in coreset.items()}
            for task, coreset in state["coresets"].items()
        }
        self.rng.bit_generator.state = state["rng"]
