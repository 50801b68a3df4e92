"""``policy-distillation``: a sleep phase that distils the policy into itself on stored
observations of every finished task, towards the outputs it had when each task ended.

At each task's end it records, as behaviour cloning does
(:class:`~l2rl.components.regularizers.behavior_cloning.BehaviorCloning`: a uniform sample
of the task's observations and the final policy's outputs and state values on them,
ClonEx's targets), the task's memory. Then it sleeps: ``sleep_updates`` optimiser steps of
the agent on memory batches drawn uniformly over all recorded tasks, each minimising

    kl_weight * mean KL(mu_task(.|s) || pi_theta(.|s))
        + value_weight * mean (V_theta(s) - V_task(s))^2

(CLEAR's cloning terms, Rolnick et al. 2019, eq. 1-2, with distillation's weights: the only
objective of the sleep). Unlike ``behavior-cloning``, nothing is added to the wake updates:
consolidation happens only in the sleep phase, as in the wake/sleep scheme of L2RLCF (its
generative replay is the other consolidator). The agent must be a
:class:`~l2rl.core.PolicyAgent`; task ends come from a task-aware run or a detector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field, PositiveInt

from l2rl.core import RunContext
from l2rl.types import Losses, TaskInfo

from ..regularizers.behavior_cloning import BehaviorCloning


class PolicyDistillation(BehaviorCloning):
    """Component ``policy-distillation`` (role ``consolidator``); see the module docstring."""

    role = "consolidator"

    class Config(BehaviorCloning.Config):
        """Options: behaviour cloning's memory, and the sleep's length and weights."""

        kl_weight: float = Field(default=1.0, ge=0.0, description="Weight of the policy KL.")
        value_weight: float = Field(
            default=0.5, ge=0.0, description="Weight of the state-value regression."
        )
        memory_per_task: PositiveInt = Field(
            default=2000, description="Observations kept per finished task."
        )
        sleep_updates: PositiveInt = Field(
            default=200, description="Optimiser steps of each sleep phase."
        )

    config: Config

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """Nothing in wake updates: this consolidator acts only in the sleep phase."""
        return {}

    def sleep_batches(self, ctx: RunContext, task: TaskInfo) -> Iterator[dict[str, Any]]:
        """``sleep_updates`` memory batches over every recorded task (task included)."""
        if len(self.memory) == 0:
            return
        for _ in range(self.config.sleep_updates):
            yield self.memory.sample(self.config.batch_size)

    def sleep_losses(self, ctx: RunContext, batch: Any) -> Losses:
        """The cloning terms on one memory batch."""
        kl, value = self.clone_terms(ctx, batch)
        return {"loss_distill_kl": kl, "loss_distill_value": value}
