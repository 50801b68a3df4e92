"""PackNet: iterative pruning and freezing (Mallya & Lazebnik 2018, CVPR, section 3).

Every prunable weight (the weight matrix or kernel of a linear or convolution layer) has
an *owner*, the position of the task it belongs to in training order. While
task ``t`` trains, only the weights it owns change; all start owned by the first task.
Near the end of task ``t``'s window the fraction ``p_t`` of its weights with the smallest
magnitude is pruned: set to zero and handed to task ``t + 1``; the rest of the window
retrains the kept weights with the pruned ones fixed at zero. From then on task ``t``'s
weights are frozen. Evaluating task ``j`` uses only the weights of tasks ``<= j`` (the
others are zeroed for the evaluation and restored afterwards), so PackNet needs the task id
at test time.

The pruning fraction. Mallya & Lazebnik prune a fixed fraction of each layer's free
weights per round (50% or 75% in their experiments; ``prune_fraction``). The default is
Continual World's equal-share rule (Wołczyk et al. 2021, ``methods/packnet.py``): with
``N`` tasks and ``t`` counted from 0, prune ``(N - t - 1) / (N - t)`` of the task's free
weights, so that every task ends with ``1/N`` of each layer and the last prunes nothing.
Following both, other parameters (biases, normalisation scales, a policy's learned
log-std) are not pruned: they train during the first task and stay frozen afterwards.
Continual World retrains for 100k steps after 1M-step tasks, i.e. prunes at about 90% of
an in-window budget (``prune_at = 0.9``).

Freezing has to survive the optimiser: zeroing gradients alone would still let Adam's
momentum move frozen weights, so their values are also restored after every step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, ParametersChanged, Step, TaskInfo, UpdateStats

from .params import Tensors, trainable_parameters

_PRUNABLE_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def _layer_weights(module: nn.Module) -> list[str]:
    """Names of the weights of the module's linear and convolution layers."""
    return [
        f"{prefix}.weight" if prefix else "weight"
        for prefix, layer in module.named_modules()
        if isinstance(layer, _PRUNABLE_LAYERS)
    ]


class PackNetMasks:
    """Which task owns each weight, and the pruning, freezing and views derived from it.

    Positions count tasks in the order they are first trained, from 0.

    Args:
        num_tasks: ``N``, the tasks the network must hold (for the equal-share rule).
        prune_fraction: prune this fixed fraction of a task's free weights after every task
            instead of the equal-share rule.
        exclude: names (or name prefixes) of parameters PackNet leaves alone, e.g. the
            per-task heads of a multi-head network.
    """

    def __init__(
        self, num_tasks: int, prune_fraction: float | None = None, exclude: Sequence[str] = ()
    ) -> None:
        if num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}")
        if prune_fraction is not None and not 0.0 <= prune_fraction < 1.0:
            raise ValueError(f"prune_fraction must be in [0, 1), got {prune_fraction}")
        self.num_tasks = num_tasks
        self.prune_fraction = prune_fraction
        self.exclude = tuple(exclude)
        self.owner: dict[str, torch.Tensor] = {}
        """Owner position of every weight of each prunable parameter (int64)."""
        self.position = -1
        """Position of the task training now (-1 before the first)."""
        self.frozen: Tensors = {}
        """Values the weights that may not change are restored to after each step."""
        self._view_backup: Tensors | None = None

    def managed(self, module: nn.Module) -> dict[str, nn.Parameter]:
        """The trainable parameters PackNet handles (all but the excluded ones)."""
        return {
            name: p
            for name, p in trainable_parameters(module).items()
            if not name.startswith(self.exclude)
        }

    def bind(self, module: nn.Module) -> None:
        """Give the first task every prunable weight (no-op once bound, e.g. restored)."""
        if not self.owner:
            managed = self.managed(module)
            self.owner = {
                name: torch.zeros(managed[name].shape, dtype=torch.int64)
                for name in _layer_weights(module)
                if name in managed
            }

    def follow(self, module: nn.Module) -> None:
        """Follow ``module``'s parameters as they are now (they grew or shrank): removed
        ones are dropped, new prunable weights belong to the task training now (free to
        train until its pruning) and are frozen at their current values otherwise."""
        if not self.owner:
            return  # not bound yet: bind takes the module as it is
        managed = self.managed(module)
        layers = [name for name in _layer_weights(module) if name in managed]
        position = max(self.position, 0)
        self.owner = {
            name: self.owner[name]
            if name in self.owner and self.owner[name].shape == managed[name].shape
            else torch.full(managed[name].shape, position, dtype=torch.int64)
            for name in layers
        }
        self.frozen = {
            name: self.frozen[name] if name in self.frozen else p.detach().clone()
            for name, p in managed.items()
        }

    def fraction_for(self, position: int) -> float:
        """The fraction of its free weights the task at ``position`` prunes."""
        if self.prune_fraction is not None:
            return self.prune_fraction
        left = self.num_tasks - position - 1
        return left / (left + 1) if left > 0 else 0.0

    def start_task(self, position: int, module: nn.Module) -> None:
        """Task at ``position`` starts training; freeze everything it does not own.

        Raises:
            ValueError: the module has no prunable parameters bound.
        """
        if not self.owner:
            raise ValueError("bind(module) before start_task: no prunable parameters known")
        self.position = position
        self.frozen = {name: p.detach().clone() for name, p in self.managed(module).items()}

    def trainable(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the entries of ``param`` the current task may change."""
        if name in self.owner:
            return self.owner[name] == self.position
        # Unpruned parameters (biases) belong to the first task.
        return torch.full(param.shape, self.position == 0, dtype=torch.bool)

    def prune(self, module: nn.Module) -> dict[str, int]:
        """Prune the current task's share by magnitude, per parameter; the pruned go to zero.

        In each prunable parameter, ``floor(n * fraction)`` of the ``n`` weights the task
        owns, those of smallest magnitude (ties by position), are set to zero and given to
        the next task; they are then fixed at zero for the rest of this task's window.

        Returns:
            Number of weights pruned per parameter.
        """
        fraction = self.fraction_for(self.position)
        counts: dict[str, int] = {}
        params = self.managed(module)
        with torch.no_grad():
            for name, owner in self.owner.items():
                p = params[name]
                free = (owner == self.position).flatten().nonzero().squeeze(1)
                k = math.floor(len(free) * fraction)
                magnitudes = p.detach().flatten()[free].abs()
                order = torch.argsort(magnitudes, stable=True)
                pruned = free[order[:k]]
                p.view(-1)[pruned] = 0.0
                owner.view(-1)[pruned] = self.position + 1
                self.frozen[name].view(-1)[pruned] = 0.0
                counts[name] = k
        return counts

    def mask_gradients_(self, module: nn.Module) -> None:
        """Zero the gradient of every entry the current task may not change."""
        for name, p in self.managed(module).items():
            if p.grad is not None:
                p.grad.mul_(self.trainable(name, p))

    def restore_frozen_(self, module: nn.Module) -> None:
        """Put back the values of every entry the current task may not change."""
        with torch.no_grad():
            for name, p in self.managed(module).items():
                p.copy_(torch.where(self.trainable(name, p), p, self.frozen[name]))

    def apply_view_(self, module: nn.Module, position: int) -> None:
        """Zero the weights of tasks after ``position`` (to evaluate that task).

        Raises:
            RuntimeError: a view is already applied.
        """
        if self._view_backup is not None:
            raise RuntimeError("a PackNet view is already applied; restore it first")
        params = self.managed(module)
        self._view_backup = {name: params[name].detach().clone() for name in self.owner}
        with torch.no_grad():
            for name, owner in self.owner.items():
                params[name].mul_(owner <= position)

    def restore_view_(self, module: nn.Module) -> None:
        """Undo :meth:`apply_view_` (no-op when no view is applied)."""
        if self._view_backup is None:
            return
        params = self.managed(module)
        with torch.no_grad():
            for name, saved in self._view_backup.items():
                params[name].copy_(saved)
        self._view_backup = None

    def owned_fraction(self, position: int) -> dict[str, float]:
        """Fraction of each prunable parameter that the task at ``position`` owns."""
        return {name: float((o == position).float().mean()) for name, o in self.owner.items()}

    def state_dict(self) -> dict[str, Any]:
        """Owners, current position and frozen values."""
        return {"owner": dict(self.owner), "position": self.position, "frozen": dict(self.frozen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.owner = {k: v.clone() for k, v in state["owner"].items()}
        self.position = int(state["position"])
        self.frozen = {k: v.clone() for k, v in state["frozen"].items()}


class PackNet(Component):
    """Component ``packnet``: prune within each window, freeze, mask at evaluation.

    Pruning happens at the first env step at or after ``start_step + ceil(prune_at *
    steps)`` of the window (:class:`~l2rl.types.TaskInfo`), so the remaining steps
    retrain the kept weights; a window too short to reach it prunes at its end. Each task
    may be trained once (PackNet has no rule for a task's second window), and the run must
    be task-aware.

    Raises:
        ConfigError: at construction, in a task-agnostic scenario.
    """

    role = "regularizer"

    class Config(PluginConfig):
        """Options of PackNet."""

        prune_at: float = Field(
            default=0.9,
            gt=0.0,
            lt=1.0,
            description="Prune after this fraction of each window; the rest retrains "
            "(Continual World: 100k retraining steps after 1M).",
        )
        prune_fraction: float | None = Field(
            default=None,
            ge=0.0,
            lt=1.0,
            description="Fixed fraction of a task's free weights to prune (Mallya & "
            "Lazebnik: 0.5 or 0.75); None: equal share, (N-t-1)/(N-t).",
        )
        exclude: list[str] = Field(
            default_factory=list,
            description="Parameter name prefixes PackNet leaves alone (e.g. 'heads.' of a "
            "multi-head network, as Continual World does).",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        if not env_spec.task_aware:
            raise ConfigError(
                "packnet needs task ids (which weights to use when evaluating a task): set "
                "scenario.task_aware=true"
            )
        super().__init__(config, env_spec)
        self.masks = PackNetMasks(env_spec.num_tasks, config.prune_fraction, config.exclude)
        self.order: list[int] = []
        """Task indices in the order they were trained (index = owner position)."""
        self.pruned = False
        """Whether the current window has pruned."""
        self.prune_step = 0
        """Global env step at which the current window prunes."""

    def on_run_start(self, ctx: RunContext) -> None:
        """Give every prunable weight to the first task."""
        self.masks.bind(ctx.agent.networks())

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Freeze the earlier tasks' weights; schedule this window's pruning.

        Raises:
            ValueError: the task was trained before (a cycle).
        """
        if task.index in self.order:
            raise ValueError(
                f"packnet trains each task once, but task {task.name!r} starts a second "
                "window (cycles are not supported)"
            )
        self.order.append(task.index)
        self.masks.start_task(len(self.order) - 1, ctx.agent.networks())
        self.pruned = False
        self.prune_step = task.start_step + math.ceil(self.config.prune_at * task.steps)

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Prune once the window reaches ``prune_at``."""
        if not self.pruned and ctx.global_step >= self.prune_step:
            self._prune(ctx)

    def after_backward(self, ctx: RunContext) -> None:
        """Only the current task's weights get gradients."""
        self.masks.mask_gradients_(ctx.agent.networks())

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Undo any optimiser movement (momentum) of weights the task may not change."""
        self.masks.restore_frozen_(ctx.agent.networks())

    def on_eval_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Evaluate a trained task with the weights of tasks up to it only."""
        if task.index in self.order:
            self.masks.apply_view_(ctx.agent.networks(), self.order.index(task.index))

    def on_eval_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Restore the training weights (no-op if the task had no view)."""
        self.masks.restore_view_(ctx.agent.networks())

    def on_parameters_changed(self, ctx: RunContext, change: ParametersChanged) -> None:
        """The agent's network grew or shrank: the masks follow its layout."""
        if change.learner == self.learner:
            self.masks.follow(ctx.agent.networks())

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Prune now if the window was too short to reach ``prune_at``."""
        if not self.pruned:
            self._prune(ctx)

    def _prune(self, ctx: RunContext) -> None:
        counts = self.masks.prune(ctx.agent.networks())
        self.pruned = True
        total = float(sum(counts.values()))
        ctx.logger.scalar(f"{self.name}/pruned_weights", total, ctx.global_step)

    def state_dict(self) -> dict[str, Any]:
        """Masks, training order and the current window's pruning state."""
        return {
            "masks": self.masks.state_dict(),
            "order": list(self.order),
            "pruned": self.pruned,
            "prune_step": self.prune_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.masks.load_state_dict(state["masks"])
        self.order = [int(t) for t in state["order"]]
        self.pruned = bool(state["pruned"])
        self.prune_step = int(state["prune_step"])
