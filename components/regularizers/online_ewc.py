"""Online EWC (Schwarz et al. 2018, "Progress & Compress", ICML, section 2.3, eq. 6-7).

One running penalty instead of one per task: at the end of task ``t``

    F* <- gamma * F* + F_t          theta* <- theta_t

and the loss adds ``lambda/2 * sum_i F*_i (theta_i - theta*_i)^2``. ``gamma < 1`` lets old
tasks' importance fade, bounding the penalty's growth over long sequences; ``gamma = 1``
is Continual World's implementation of "EWC". The Fisher estimate is the one of
:func:`.ewc.diagonal_fisher`, clipped like EWC's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import nn

from .ewc import FisherConfig, FisherRegularizer
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


class OnlineEWCPenalty:
    """``lambda/2 * sum_i F*_i (theta_i - theta*_i)^2`` with a decayed running Fisher.

    Args:
        strength: ``lambda``.
        gamma: decay of the earlier tasks' Fisher at each consolidation.
        fisher_floor: each new task's Fisher entries are clipped to at least this.
    """

    def __init__(self, strength: float, gamma: float, fisher_floor: float = 1e-5) -> None:
        self.strength = strength
        self.gamma = gamma
        self.fisher_floor = fisher_floor
        self.fisher: torch.Tensor | None = None
        """``F*`` (flat), or ``None`` before the first consolidation."""
        self.anchor: torch.Tensor | None = None
        """``theta*`` (flat): the weights at the last consolidation."""
        self.layout: Layout = ()
        """The parameters the flat vectors are laid out for."""

    @property
    def active(self) -> bool:
        """Whether any task was consolidated."""
        return self.fisher is not None

    def consolidate(self, task: int, module: nn.Module, fisher: Mapping[str, torch.Tensor]) -> None:
        """``F* <- gamma F* + F_t`` and ``theta* <- theta_t`` (``task`` is not needed).

        Raises:
            KeyError: the module or the Fisher has other parameters than before.
        """
        if self.fisher is not None:
            check_layout(module, self.layout, "the online EWC penalty")
        self.layout = layout_of(module)
        new = flatten(fisher, self.layout).clamp_min(self.fisher_floor)
        self.fisher = new if self.fisher is None else self.gamma * self.fisher + new
        self.anchor = flat_snapshot(module)

    def __call__(self, module: nn.Module) -> torch.Tensor:
        """The penalty, differentiable in the module's parameters.

        Raises:
            RuntimeError: nothing was consolidated yet.
        """
        if self.fisher is None or self.anchor is None:
            raise RuntimeError("OnlineEWCPenalty has no task yet: call consolidate() first")
        check_layout(module, self.layout, "the online EWC penalty")
        theta = flat_parameters(module)
        return 0.5 * self.strength * weighted_squared_distance(theta, self.anchor, self.fisher)

    def state_dict(self) -> dict[str, Any]:
        """Running Fisher and anchor by parameter name (empty before any consolidation)."""
        if self.fisher is None or self.anchor is None:
            return {"fisher": {}, "anchor": {}}
        return {
            "fisher": unflatten(self.fisher, self.layout),
            "anchor": unflatten(self.anchor, self.layout),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.layout = layout_from(state["anchor"])
        consolidated = bool(self.layout)
        self.fisher = flatten(state["fisher"], self.layout) if consolidated else None
        self.anchor = flatten(state["anchor"], self.layout) if consolidated else None


class OnlineEWCRegularizer(FisherRegularizer):
    """Component ``online-ewc``: ``loss_online_ewc`` from the running Fisher and last anchor."""

    class Config(FisherConfig):
        """Options of online EWC."""

        gamma: float = Field(
            default=0.95,
            gt=0.0,
            le=1.0,
            description="Decay of earlier tasks' Fisher per task end (Schwarz et al. 2018 "
            "tune it per domain; 0.95 is our default, 1.0 gives Continual World's EWC).",
        )

    config: Config
    loss_key = "loss_online_ewc"

    def _make_penalty(self, config: Config) -> OnlineEWCPenalty:
        """One running Fisher, decayed at every task end."""
        return OnlineEWCPenalty(config.strength, config.gamma, config.fisher_floor)
