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

import torch
from pydantic import Field
from torch import nn

from .ewc import FisherConfig, FisherPenalty, FisherRegularizer
from .params import flat_snapshot


class OnlineEWCPenalty(FisherPenalty):
    """``lambda/2 * sum_i F*_i (theta_i - theta*_i)^2`` with a decayed running Fisher.

    Args:
        strength: ``lambda``.
        gamma: decay of the earlier tasks' Fisher at each consolidation.
        fisher_floor: each new task's Fisher entries are clipped to at least this.
    """

    vectors = ("fisher", "anchor")
    what = "the online EWC penalty"
    missing = "no task"

    def __init__(self, strength: float, gamma: float, fisher_floor: float = 1e-5) -> None:
        super().__init__(strength, fisher_floor)
        self.gamma = gamma
        self.fisher: torch.Tensor | None = None
        """``F*`` (flat), or ``None`` before the first consolidation."""
        self.anchor: torch.Tensor | None = None
        """``theta*`` (flat): the weights at the last consolidation."""

    def _weighted_anchors(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """The running Fisher and the last anchor, once consolidated."""
        if self.fisher is None or self.anchor is None:
            return []
        return [(self.fisher, self.anchor)]

    def consolidate(self, task: int, module: nn.Module, fisher: Mapping[str, torch.Tensor]) -> None:
        """``F* <- gamma F* + F_t`` and ``theta* <- theta_t`` (``task`` is not needed).

        Raises:
            KeyError: the module or the Fisher has other parameters than before.
        """
        new = self._clipped(module, fisher)
        self.fisher = new if self.fisher is None else self.gamma * self.fisher + new
        self.anchor = flat_snapshot(module)


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
