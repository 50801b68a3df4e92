"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3 and its multi-task sum).

    L(theta) = L_current(theta) + lambda/2 sum_{t<current} sum_i F_{t,i} (theta_i - theta*_{t,i})^2

``theta*_t`` is the network at the end of task ``t`` and ``F_t`` the diagonal of the Fisher
information of the policy on task ``t``'s data,

    F_i = E_{s ~ D_t, a ~ pi(.|s)} [ (d log pi(a|s) / d theta_i)^2 ],

estimated at the task's end from a uniform sample of the window's observations with
actions drawn from the policy itself (the true Fisher, not the "empirical" one that would
use the stored actions). With ``fisher: empirical`` it is instead the mean squared
gradient of the agent's own loss on single remembered transitions
(:func:`empirical_fisher`), for agents whose loss is a negative log-likelihood of what they
predict rather than a policy: a model-based agent's dynamics model, as in HyperCRL's EWC
baseline. Kirkpatrick et al. keep one penalty per earlier task (section
"EWC allows continual learning in a supervised learning context"); Continual World
(Wołczyk et al. 2021) uses ``lambda = 1e4`` and clips ``F >= 1e-5``. Continual World's
own code keeps instead one summed Fisher and the latest anchor, which is online EWC with
``gamma = 1`` (:mod:`.online_ewc`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.config import PluginConfig
from l2rl.core import RunContext
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch

from .adapters import (
    PenaltyRegularizer,
    WindowSampling,
    observation_fields,
    require_policy_agent,
    stream_seed,
    transition_fields,
    transition_row,
)
from .memory import Reservoir
from .params import (
    QuadraticPenalty,
    Tensors,
    check_layout,
    flat_snapshot,
    flatten,
    layout_from,
    layout_of,
    trainable_parameters,
    unflatten,
)

Policy = Callable[[torch.Tensor, torch.Tensor], torch.distributions.Distribution]
"""``(obs, task_ids) -> action distribution``, differentiable in the module's parameters."""

_SAMPLE_STREAM = 0xE3C0
_FISHER_STREAM = 0xE3C1


def diagonal_fisher(
    module: nn.Module,
    policy: Policy,
    obs: torch.Tensor,
    task_ids: torch.Tensor,
    batch_size: int = 256,
) -> Tensors:
    """``E[(d log pi(a|s) / d theta)^2]`` over ``obs`` with ``a ~ pi(.|s)``, per parameter.

    The square is of each sample's own gradient (not of the batch mean), which is what
    the Fisher's diagonal needs; per-sample gradients come from one batched backward pass
    per ``batch_size`` observations. Actions are drawn with torch's global generator, so
    seed it for a reproducible estimate. The policy's rows must be independent (no batch
    statistics), as they are for an MLP.

    Args:
        module: whose trainable parameters the Fisher is taken over.
        policy: the action distribution per observation, computed with ``module``.
        obs: observations ``[n, *obs_shape]``.
        task_ids: task id per observation (``-1`` where unknown).
        batch_size: observations per backward pass (memory: ``batch_size`` gradients).

    Raises:
        ValueError: ``obs`` is empty.
    """
    if len(obs) == 0:
        raise ValueError("the Fisher needs at least one observation")
    params = trainable_parameters(module)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, len(obs), batch_size):
        dist = policy(obs[start : start + batch_size], task_ids[start : start + batch_size])
        with torch.no_grad():
            actions = dist.sample()
        log_prob = dist.log_prob(actions)
        # A multi-dimensional action without Independent gives one log-prob per dimension.
        log_prob = log_prob.reshape(len(log_prob), -1).sum(1)
        # Row i of the identity selects sample i: gradient i is d log pi(a_i|s_i)/d theta.
        grads = torch.autograd.grad(
            log_prob,
            list(params.values()),
            grad_outputs=torch.eye(len(log_prob)),
            is_grads_batched=True,
            allow_unused=True,
        )
        for name, grad in zip(params, grads, strict=True):
            if grad is not None:
                total[name] += grad.pow(2).sum(0)
    return {name: value / len(obs) for name, value in total.items()}


def empirical_fisher(
    module: nn.Module,
    loss: Callable[[TransitionBatch], torch.Tensor],
    rows: Mapping[str, torch.Tensor],
) -> Tensors:
    """``mean_n (d loss_n / d theta)^2`` over the transitions ``rows``, per parameter.

    ``loss_n`` is ``loss`` on the one-transition batch ``n``: with a loss that is a negative
    log-likelihood (a regression model's squared error), this is the empirical Fisher
    HyperCRL's EWC baseline estimates on its dynamics model (``model/regularizer.py``,
    ``estimate_fisher`` with ``empirical_fisher``: batches of one, squared gradients).

    Raises:
        ValueError: ``rows`` is empty.
    """
    count = len(rows["obs"])
    if count == 0:
        raise ValueError("the Fisher needs at least one transition")
    params = trainable_parameters(module)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for n in range(count):
        single = TransitionBatch(**{k: v[n : n + 1] for k, v in rows.items()})
        grads = torch.autograd.grad(loss(single), list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads, strict=True):
            if grad is not None:
                total[name] += grad.pow(2)
    return {name: value / count for name, value in total.items()}


class FisherPenalty(QuadraticPenalty):
    """What :class:`FisherRegularizer` holds: ``lambda/2 * sum F (theta - theta*)^2`` terms.

    ``strength`` is ``lambda``; each Fisher taken in is clipped to at least
    ``fisher_floor`` (see :class:`EWCPenalty`).
    """

    scale = 0.5

    def __init__(self, strength: float, fisher_floor: float = 1e-5) -> None:
        super().__init__(strength)
        self.fisher_floor = fisher_floor

    def consolidate(self, task: int, module: nn.Module, fisher: Mapping[str, torch.Tensor]) -> None:
        """Take in the Fisher and weights at the end of ``task``."""
        raise NotImplementedError

    def _clipped(self, module: nn.Module, fisher: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``fisher`` flat and clipped; the layout becomes the module's.

        Raises:
            KeyError: the module or the Fisher has other parameters than the terms held.
        """
        if self.active:
            check_layout(module, self.layout, self.what)
        self.layout = layout_of(module)
        return flatten(fisher, self.layout).clamp_min(self.fisher_floor)


class EWCPenalty(FisherPenalty):
    """``lambda/2 * sum_t sum_i F_{t,i} (theta_i - theta*_{t,i})^2``, one term per task.

    Args:
        strength: ``lambda``.
        fisher_floor: each Fisher entry is clipped to at least this (Continual World: 1e-5),
            so that no parameter is left entirely free.
    """

    what = "the EWC penalty"
    missing = "no task"

    def __init__(self, strength: float, fisher_floor: float = 1e-5) -> None:
        super().__init__(strength, fisher_floor)
        self.terms: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        """task -> (Fisher, anchor), flat, of that task's end; a revisit replaces its own."""

    def _weighted_anchors(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """Every task's term."""
        return list(self.terms.values())

    def consolidate(self, task: int, module: nn.Module, fisher: Mapping[str, torch.Tensor]) -> None:
        """Add (or replace) task ``task``'s term: its clipped Fisher and the current weights.

        Raises:
            KeyError: the module or the Fisher has other parameters than earlier terms.
        """
        self.terms[task] = (self._clipped(module, fisher), flat_snapshot(module))

    def state_dict(self) -> dict[str, Any]:
        """Every task's Fisher and anchor, by parameter name."""
        return {
            "terms": {
                task: {"fisher": unflatten(f, self.layout), "anchor": unflatten(a, self.layout)}
                for task, (f, a) in self.terms.items()
            }
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        terms = state["terms"]
        self.layout = layout_from(next(iter(terms.values()))["anchor"]) if terms else ()
        self.terms = {
            int(task): (flatten(term["fisher"], self.layout), flatten(term["anchor"], self.layout))
            for task, term in terms.items()
        }


class FisherConfig(PluginConfig):
    """Options shared by EWC and online EWC."""

    strength: float = Field(
        default=1e4,
        ge=0.0,
        description="lambda in lambda/2 * sum F (theta - theta*)^2 (Continual World: 1e4).",
    )
    fisher_floor: float = Field(
        default=1e-5,
        ge=0.0,
        description="Clip each Fisher entry to at least this (Continual World: 1e-5).",
    )
    fisher_samples: PositiveInt = Field(
        default=2560,
        description="Observations of each task, a uniform sample of its window, the Fisher "
        "is estimated on (Continual World: 10 batches of 256).",
    )
    fisher_batch_size: PositiveInt = Field(
        default=256, description="Observations per batched backward pass of the estimate."
    )
    fisher: Literal["policy", "empirical"] = Field(
        default="policy",
        description="policy: the Fisher of the agent's policy, actions drawn from it "
        "(needs a PolicyAgent); empirical: squared gradients of the agent's own summed loss "
        "on single remembered transitions (a dynamics model's, as HyperCRL's EWC baseline).",
    )


class FisherRegularizer(WindowSampling, PenaltyRegularizer):
    """Shared adapter of EWC and online EWC: sample the window, estimate F at its end.

    With the policy Fisher the agent must be a :class:`~l2rl.core.PolicyAgent`; with the
    empirical one its ``losses`` must take a :class:`~l2rl.types.TransitionBatch`.
    ``networks()`` are the parameters held. A task-agnostic run has no task ends, so
    nothing is consolidated (the component warns).
    """

    config: FisherConfig
    penalty: FisherPenalty
    sample_stream = _SAMPLE_STREAM

    def __init__(self, config: FisherConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.penalty = self._make_penalty(config)
        fields = (
            transition_fields(env_spec)
            if config.fisher == "empirical"
            else observation_fields(env_spec.observation_space)
        )
        self.window = Reservoir(config.fisher_samples, fields, _SAMPLE_STREAM)

    def _window_row(self, step: Step) -> dict[str, Any]:
        """The observation (policy Fisher) or the whole transition (empirical Fisher)."""
        if self.config.fisher == "empirical":
            return transition_row(step)
        return super()._window_row(step)

    @property
    def samples(self) -> Reservoir:
        """The window's sample of observations (:attr:`window`), saved as ``samples``."""
        return self.window

    def _make_penalty(self, config: Any) -> FisherPenalty:
        """The penalty this method keeps; each subclass names its own."""
        raise NotImplementedError

    def on_run_start(self, ctx: RunContext) -> None:
        """Check the agent, seed the sample, warn if the run has no task boundaries."""
        if self.config.fisher == "policy":
            require_policy_agent(ctx.agent, f"{self.role} {self.name!r}")
        super().on_run_start(ctx)

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Estimate this task's Fisher on the window's sample and consolidate."""
        if len(self.window) == 0:
            return
        rows = self.window.rows()
        network = ctx.agent.networks()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(ctx, _FISHER_STREAM, task.block))
            if self.config.fisher == "empirical":
                agent = ctx.agent

                def loss(batch: TransitionBatch) -> torch.Tensor:
                    return torch.stack(list(agent.losses(batch).values())).sum()

                fisher = empirical_fisher(network, loss, rows)
            else:
                policy = require_policy_agent(ctx.agent, f"{self.role} {self.name!r}")
                fisher = diagonal_fisher(
                    network,
                    policy.policy_distribution,
                    rows["obs"],
                    rows["task_ids"],
                    self.config.fisher_batch_size,
                )
        self.penalty.consolidate(task.index, network, fisher)
        total = sum(float(f.sum()) for f in fisher.values())
        count = sum(f.numel() for f in fisher.values())
        ctx.logger.scalar(f"{self.name}/fisher_mean", total / count, ctx.global_step)

    def state_dict(self) -> dict[str, Any]:
        """The penalty and the current window's sample."""
        return {"penalty": self.penalty.state_dict(), "samples": self.window.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.penalty.load_state_dict(state["penalty"])
        self.window.load_state_dict(state["samples"])


class EWCRegularizer(FisherRegularizer):
    """Component ``ewc``: ``loss_ewc``, one Fisher-weighted term per finished task."""

    Config = FisherConfig
    loss_key = "loss_ewc"

    def _make_penalty(self, config: FisherConfig) -> EWCPenalty:
        """One term per task (Kirkpatrick et al.'s multi-task sum)."""
        return EWCPenalty(config.strength, config.fisher_floor)
