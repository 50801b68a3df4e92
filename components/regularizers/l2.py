"""L2 to the previous task's weights: ``lambda * sum_i (theta_i - theta*_i)^2``.

The anchor ``theta*`` is the network at the end of the most recent task; every parameter is
held to it with the same strength. It is the baseline the importance-weighted penalties
(EWC, SI) improve on (Kirkpatrick et al. 2017, section 2; Continual World, Wołczyk et al.
2021, uses it with ``lambda = 1e5``).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from l2rl.config import PluginConfig
from l2rl.core import RunContext
from l2rl.types import EnvSpec, TaskInfo

from .adapters import PenaltyRegularizer
from .params import QuadraticPenalty, flat_snapshot, layout_of


class L2Penalty(QuadraticPenalty):
    """``strength * sum_i (theta_i - theta*_i)^2`` to the last consolidated weights.

    Args:
        strength: ``lambda``.
    """

    what = "the L2 anchor"
    missing = "no anchor"

    def __init__(self, strength: float) -> None:
        super().__init__(strength)
        self.anchor: torch.Tensor | None = None
        """``theta*`` (flat): the weights at the last :meth:`consolidate`, or ``None``."""

    def _weighted_anchors(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """The anchor, unweighted, once there is one."""
        return [] if self.anchor is None else [(None, self.anchor)]

    def consolidate(self, module: nn.Module) -> None:
        """Make the module's current weights the anchor (a task ended)."""
        self.layout = layout_of(module)
        self.anchor = flat_snapshot(module)


class L2Regularizer(PenaltyRegularizer):
    """Component ``l2``: adds ``loss_l2`` from the end of the first task on.

    Task-aware runs only consolidate: a task-agnostic run has no task ends, and the
    component warns that it will add nothing.
    """

    class Config(PluginConfig):
        """Options of the L2 regularizer."""

        strength: float = Field(
            default=1e5,
            ge=0.0,
            description="lambda in lambda * sum (theta - theta*)^2; Continual World uses 1e5.",
        )

    config: Config
    penalty: L2Penalty
    loss_key = "loss_l2"

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.penalty = L2Penalty(config.strength)

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Anchor to the weights that solved this task."""
        self.penalty.consolidate(ctx.agent.networks())
