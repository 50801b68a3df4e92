"""L2 to the previous task's weights: ``lambda * sum_i (theta_i - theta*_i)^2``.

The anchor ``theta*`` is the network at the end of the most recent task; every parameter is
held to it with the same strength. It is the baseline the importance-weighted penalties
(EWC, SI) improve on (Kirkpatrick et al. 2017, section 2; Continual World, Wołczyk et al.
2021, uses it with ``lambda = 1e5``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import nn

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, Losses, TaskInfo

from .adapters import warn_without_boundaries
from .params import (
    Layout,
    check_layout,
    flat_parameters,
    flat_snapshot,
    flatten,
    layout_from,
    layout_of,
    unflatten,
    weighted_squared_distance,
)


class L2Penalty:
    """``strength * sum_i (theta_i - theta*_i)^2`` to the last consolidated weights.

    Args:
        strength: ``lambda``.
    """

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.anchor: torch.Tensor | None = None
        """``theta*`` (flat): the weights at the last :meth:`consolidate`, or ``None``."""
        self.layout: Layout = ()
        """The parameters ``anchor`` is laid out for."""

    def consolidate(self, module: nn.Module) -> None:
        """Make the module's current weights the anchor (a task ended)."""
        self.layout = layout_of(module)
        self.anchor = flat_snapshot(module)

    def __call__(self, module: nn.Module) -> torch.Tensor:
        """The penalty, differentiable in the module's parameters.

        Raises:
            RuntimeError: nothing was consolidated yet.
        """
        if self.anchor is None:
            raise RuntimeError("L2Penalty has no anchor yet: call consolidate() first")
        check_layout(module, self.layout, "the L2 anchor")
        return self.strength * weighted_squared_distance(flat_parameters(module), self.anchor)

    def state_dict(self) -> dict[str, Any]:
        """The anchor by parameter name (empty before the first consolidation)."""
        return {"anchor": {} if self.anchor is None else unflatten(self.anchor, self.layout)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.layout = layout_from(state["anchor"])
        self.anchor = flatten(state["anchor"], self.layout) if self.layout else None


class L2Regularizer(Component):
    """Component ``l2``: adds ``loss_l2`` from the end of the first task on.

    Task-aware runs only consolidate: a task-agnostic run has no task ends, and the
    component warns that it will add nothing.
    """

    role = "regularizer"

    class Config(PluginConfig):
        """Options of the L2 regularizer."""

        strength: float = Field(
            default=1e5,
            ge=0.0,
            description="lambda in lambda * sum (theta - theta*)^2; Continual World uses 1e5.",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.penalty = L2Penalty(config.strength)

    def on_run_start(self, ctx: RunContext) -> None:
        """Warn if the run gives no task boundaries."""
        warn_without_boundaries(ctx, f"regularizer {self.name!r}")

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Anchor to the weights that solved this task."""
        self.penalty.consolidate(ctx.agent.networks())

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """``loss_l2`` once an anchor exists."""
        if self.penalty.anchor is None:
            return {}
        return {"loss_l2": self.penalty(ctx.agent.networks())}

    def state_dict(self) -> dict[str, Any]:
        """The anchor."""
        return self.penalty.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.penalty.load_state_dict(state)
