"""Window-end checkpoints: what the runner saves so that a resumed run is the same run.

A checkpoint holds the window it closed, the schedule it was written for, the step and
update counters, torch's global RNG state (policy-gradient agents sample from it) and the
state of the agent and of every component (their learners' optimizers included). It is
written atomically at the end of every training window, so the last one on disk is always
whole, even after a crash or a run aborted by the NaN guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from l2rl.core import Agent, Component, RunContext
from l2rl.logging.files import atomic_torch_save

Schedule = list[tuple[int, int]]
"""``(task index, steps)`` of every block: a checkpoint only resumes the schedule it ran."""


def write_checkpoint(
    path: Path,
    *,
    block: int,
    schedule: Schedule,
    ctx: RunContext,
    episodes: int,
    agent: Agent,
    components: Sequence[Component],
) -> None:
    """Save the run's state at the end of ``block`` to ``path`` (atomically)."""
    atomic_torch_save(
        path,
        {
            "block": block,
            "schedule": schedule,
            "global_step": ctx.global_step,
            "learner_updates": dict(ctx.learner_updates),
            "episodes": episodes,
            "torch_rng": torch.get_rng_state(),
            "agent": agent.state_dict(),
            "components": {c.name: c.state_dict() for c in components},
        },
    )


def restore_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    schedule: Schedule,
    ctx: RunContext,
    agent: Agent,
    components: Sequence[Component],
) -> tuple[int, int]:
    """Load ``checkpoint`` into the run; returns ``(block it closed, episodes so far)``.

    Raises:
        ValueError: it was written for another schedule or another set of components.
    """
    if [tuple(b) for b in checkpoint["schedule"]] != schedule:
        raise ValueError("the checkpoint was written for a different schedule")
    names = sorted(c.name for c in components)
    if sorted(checkpoint["components"]) != names:
        raise ValueError(
            f"the checkpoint holds components {sorted(checkpoint['components'])}, "
            f"the run has {names}"
        )
    agent.load_state_dict(checkpoint["agent"])
    for component in components:
        component.load_state_dict(checkpoint["components"][component.name])
    ctx.global_step = int(checkpoint["global_step"])
    ctx.learner_updates.update(checkpoint["learner_updates"])
    torch.set_rng_state(checkpoint["torch_rng"])
    return int(checkpoint["block"]), int(checkpoint["episodes"])
