"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, ICML, eq. 4-5).

Each parameter's importance is how much it moved the loss along the training path:

    w_k += -g_k * (theta_k(after step) - theta_k(before step))        every optimiser step
    Omega_k += w_k / ((Delta theta_k)^2 + xi),   w_k <- 0              at each task end

with ``Delta theta_k`` the parameter's total change over the task and ``xi = 1e-3`` a
damping term. The loss adds ``c * sum_k Omega_k (theta_k - theta~_k)^2`` (eq. 4), with
``theta~`` the weights at the end of the previous task. ``g`` is the gradient of the
*unregularised* loss, as in the paper's reference code: the penalty's own gradient is
subtracted from the one read after backward. ``c = 0.1`` is the paper's permuted-MNIST
setting (split MNIST used 1.0).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from l2rl.config import PluginConfig
from l2rl.core import RunContext
from l2rl.types import EnvSpec, TaskInfo, UpdateStats

from .adapters import PenaltyRegularizer
from .params import QuadraticPenalty, check_layout, flat_gradients, flat_snapshot, layout_of


class SIPenalty(QuadraticPenalty):
    """The path integral of each parameter's contribution to the loss, and its penalty.

    Call :meth:`begin` once (the start anchor), then around every optimiser step
    :meth:`record_gradient` (gradients present, not applied) and :meth:`record_step`
    (parameters changed), and :meth:`consolidate` at each task end. Vectors are flat over
    the module's trainable parameters (:mod:`.params`); the penalty is
    ``c * sum_k Omega_k (theta_k - theta~_k)^2``.

    Args:
        strength: ``c``.
        damping: ``xi``.
    """

    vectors = ("anchor", "omega", "path")
    what = "the SI state"
    missing = "no importances"

    def __init__(self, strength: float, damping: float = 1e-3) -> None:
        super().__init__(strength)
        self.damping = damping
        self.anchor: torch.Tensor | None = None
        """``theta~``: weights at the start of the current task."""
        self.omega: torch.Tensor | None = None
        """``Omega``: importances consolidated so far (``None`` before the first task end)."""
        self.path: torch.Tensor | None = None
        """``w``: the current task's running path integral."""
        self._grad: torch.Tensor | None = None
        self._before: torch.Tensor | None = None

    def _weighted_anchors(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """The importances and the anchor, once a task was consolidated."""
        if self.omega is None or self.anchor is None:
            return []
        return [(self.omega, self.anchor)]

    def begin(self, module: nn.Module) -> None:
        """Start the first task's path from the module's current weights."""
        self.layout = layout_of(module)
        self.anchor = flat_snapshot(module)
        self.path = torch.zeros_like(self.anchor)

    def penalty_gradient(self, module: nn.Module) -> torch.Tensor:
        """``d penalty / d theta = 2 c Omega (theta - theta~)``, zero before any task end."""
        theta = flat_snapshot(module)
        if self.omega is None or self.anchor is None:
            return torch.zeros_like(theta)
        return 2.0 * self.strength * self.omega * (theta - self.anchor)

    def record_gradient(self, module: nn.Module) -> None:
        """Read ``g`` (``.grad`` less this penalty's share) and the weights before the step."""
        self._grad = flat_gradients(module) - self.penalty_gradient(module)
        self._before = flat_snapshot(module)

    def record_step(self, module: nn.Module) -> None:
        """``w += -g * dtheta`` for the step just taken.

        Raises:
            RuntimeError: :meth:`begin` or :meth:`record_gradient` was not called first.
        """
        if self.path is None or self._grad is None or self._before is None:
            raise RuntimeError("call begin() and record_gradient() before record_step()")
        self.path -= self._grad * (flat_snapshot(module) - self._before)
        self._grad = self._before = None

    def consolidate(self, module: nn.Module) -> None:
        """``Omega += w / (Delta theta^2 + xi)``; restart the path at the current weights.

        Raises:
            RuntimeError: :meth:`begin` was not called.
        """
        if self.anchor is None or self.path is None:
            raise RuntimeError("call begin() before consolidate()")
        check_layout(module, self.layout, self.what)
        now = flat_snapshot(module)
        added = self.path / ((now - self.anchor).pow(2) + self.damping)
        self.omega = added if self.omega is None else self.omega + added
        self.anchor = now
        self.path = torch.zeros_like(now)


class SIRegularizer(PenaltyRegularizer):
    """Component ``si``: tracks the path integral every update and adds ``loss_si``.

    ``g`` is read in ``after_backward`` and ``dtheta`` in ``after_update``, so ``dtheta``
    is the optimiser's actual step (after clipping, momentum and any other component's
    changes). A task-agnostic run has no task ends: nothing is consolidated (it warns).
    """

    class Config(PluginConfig):
        """Options of synaptic intelligence."""

        strength: float = Field(
            default=0.1,
            ge=0.0,
            description="c in c * sum Omega (theta - theta~)^2 (Zenke et al.: 0.1 on permuted "
            "MNIST, 1.0 on split MNIST).",
        )
        damping: float = Field(
            default=1e-3, gt=0.0, description="xi in Omega += w / (Delta theta^2 + xi)."
        )

    config: Config
    penalty: SIPenalty
    loss_key = "loss_si"

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.penalty = SIPenalty(config.strength, config.damping)

    @property
    def si(self) -> SIPenalty:
        """The path integral, importances and penalty (:attr:`penalty`)."""
        return self.penalty

    def on_run_start(self, ctx: RunContext) -> None:
        """Start the path at the initial weights (unless restored), warn without boundaries."""
        super().on_run_start(ctx)
        if self.penalty.anchor is None:
            self.penalty.begin(ctx.agent.networks())

    def after_backward(self, ctx: RunContext) -> None:
        """Read the unregularised gradient and the weights before the step."""
        self.penalty.record_gradient(ctx.agent.networks())

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Add this step's ``-g * dtheta`` to the path integral."""
        self.penalty.record_step(ctx.agent.networks())

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Turn the task's path integral into importances; re-anchor."""
        self.penalty.consolidate(ctx.agent.networks())
