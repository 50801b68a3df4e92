"""Behaviour cloning on replayed observations (CLEAR: Rolnick et al. 2019, NeurIPS, eq. 1-2).

On observations of earlier tasks the loss adds

    0.01 * KL(mu_old(.|s) || pi_theta(.|s))  +  0.005 * (V_theta(s) - V_old(s))^2

averaged over a memory batch: the policy is pulled towards the stored old policy ``mu_old``
and the value towards the stored old value. CLEAR mixes replay 50:50 with new experience
for its RL loss too; here that mixing is the replay role's job, and this component adds
only the two cloning terms, on its own memory batch (``batch_size``, by default the size
of a usual new-data minibatch, so the cloning batch matches the new data 1:1).

When ``mu_old`` and ``V_old`` are recorded. CLEAR stores the *behaviour* policy's outputs
at collection time, which its V-trace correction needs anyway. We record them at the end
of each task instead, on a uniform sample of the task's observations, as ClonEx does
(Wołczyk et al. 2022, "Disentangling Transfer in Continual Reinforcement Learning",
NeurIPS, behaviour cloning from the final policy of each task): without V-trace the
collection-time outputs have no use, and for an agent whose early-window policy is poor
(DQN's epsilon-greedy start) cloning those would pull towards the untrained network rather
than the one that solved the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    Normal,
    TransformedDistribution,
    kl_divergence,
)

from l2rl.config import PluginConfig
from l2rl.core import RunContext
from l2rl.types import EnvSpec, Losses, TaskInfo

from .adapters import WindowSampling, observation_fields, require_policy_agent, stream_seed
from .memory import EpisodicMemory, Reservoir

_SAMPLE_STREAM = 0xBC00
_MEMORY_STREAM = 0xBC01
_RECORD_CHUNK = 1024
"""Observations per forward pass when recording the old policy at a task's end."""


def _base(dist: Distribution) -> Distribution:
    # A KL divergence is unchanged by applying the same bijection to both distributions
    # (e.g. SAC's tanh squashing), so transformed policies compare by their bases.
    while isinstance(dist, TransformedDistribution):
        dist = dist.base_dist
    return dist


def distribution_parameters(dist: Distribution) -> dict[str, torch.Tensor]:
    """The detached parameters that define ``dist``, to store and rebuild it later.

    Supported: ``Categorical`` (logits), ``Normal`` and ``Independent(Normal)`` (loc,
    scale), each possibly inside a ``TransformedDistribution``.

    Raises:
        TypeError: another kind of distribution.
    """
    base = _base(dist)
    inner = base.base_dist if isinstance(base, Independent) else base
    if isinstance(inner, Categorical):
        return {"logits": inner.logits.detach()}
    if isinstance(inner, Normal):
        return {"loc": inner.loc.detach(), "scale": inner.scale.detach()}
    raise TypeError(f"behaviour cloning cannot store a {type(inner).__name__} policy")


def distribution_like(like: Distribution, params: Mapping[str, torch.Tensor]) -> Distribution:
    """The distribution ``params`` define, with the structure of ``like``'s base.

    Raises:
        TypeError: ``like`` is not a supported kind (see :func:`distribution_parameters`).
    """
    base = _base(like)
    inner = base.base_dist if isinstance(base, Independent) else base
    rebuilt: Distribution
    if isinstance(inner, Categorical):
        rebuilt = Categorical(logits=params["logits"])
    elif isinstance(inner, Normal):
        rebuilt = Normal(params["loc"], params["scale"])
    else:
        raise TypeError(f"behaviour cloning cannot rebuild a {type(inner).__name__} policy")
    if isinstance(base, Independent):
        rebuilt = Independent(rebuilt, base.reinterpreted_batch_ndims)
    return rebuilt


def policy_kl(old: Mapping[str, torch.Tensor], new: Distribution) -> torch.Tensor:
    """``KL(mu_old || pi_new)`` per observation, ``[batch]``, differentiable in ``new``."""
    kl = kl_divergence(distribution_like(new, old), _base(new))
    # A Normal without Independent gives one KL per action dimension; they add up.
    return kl.reshape(len(kl), -1).sum(1)


def clone_losses(
    new_policy: Distribution,
    new_values: torch.Tensor,
    old_policy: Mapping[str, torch.Tensor],
    old_values: torch.Tensor,
    kl_weight: float,
    value_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLEAR's cloning terms: ``kl_weight * mean KL(mu_old || pi)`` and ``value_weight * mean
    (V - V_old)^2`` over the batch."""
    kl = policy_kl(old_policy, new_policy).mean()
    value = (new_values - old_values).pow(2).mean()
    return kl_weight * kl, value_weight * value


class BehaviorCloning(WindowSampling):
    """Component ``behavior-cloning``: ``loss_bc_kl`` and ``loss_bc_value`` on a memory batch.

    During a window it keeps a uniform sample of the window's observations; at the window's
    end it records the agent's policy parameters and state values on them as that task's
    memory. The agent must be a :class:`~l2rl.core.PolicyAgent`. A task-agnostic run has
    no task ends, so the memory stays empty and no loss is added (it warns).
    """

    class Config(PluginConfig):
        """Options of behaviour cloning (CLEAR's weights)."""

        kl_weight: float = Field(
            default=0.01, ge=0.0, description="Weight of KL(mu_old || pi) (CLEAR: 0.01)."
        )
        value_weight: float = Field(
            default=0.005, ge=0.0, description="Weight of (V - V_old)^2 (CLEAR: 0.005)."
        )
        memory_per_task: PositiveInt = Field(
            default=10_000, description="Observations kept per finished task."
        )
        batch_size: PositiveInt = Field(
            default=128,
            description="Memory observations per update (match the agent's batch "
            "for CLEAR's 50:50).",
        )

    config: Config
    sample_stream = _SAMPLE_STREAM

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.window = Reservoir(
            config.memory_per_task, observation_fields(env_spec.observation_space), _SAMPLE_STREAM
        )
        self.memory = EpisodicMemory(_MEMORY_STREAM)

    def on_run_start(self, ctx: RunContext) -> None:
        """Check the agent, seed sample and memory, warn without task boundaries."""
        require_policy_agent(ctx.agent, f"{self.role} {self.name!r}")
        super().on_run_start(ctx)
        self.memory.reseed(stream_seed(ctx, _MEMORY_STREAM))

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the final policy and value on the window's sample as the task's memory."""
        if len(self.window) == 0:
            return
        agent = require_policy_agent(ctx.agent, f"{self.role} {self.name!r}")
        rows = self.window.rows()
        recorded: list[dict[str, torch.Tensor]] = []
        # no_grad, not inference_mode: the stored outputs later enter differentiable KLs.
        with torch.no_grad():
            for start in range(0, len(rows["obs"]), _RECORD_CHUNK):
                obs = rows["obs"][start : start + _RECORD_CHUNK]
                ids = rows["task_ids"][start : start + _RECORD_CHUNK]
                params = distribution_parameters(agent.policy_distribution(obs, ids))
                recorded.append(
                    {
                        **{f"policy.{k}": v for k, v in params.items()},
                        "value": agent.state_value(obs, ids),
                    }
                )
        annotations = {k: torch.cat([r[k] for r in recorded]) for k in recorded[0]}
        self.memory.store(task.index, {**rows, **annotations})

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """The cloning terms on a memory batch, once a task was recorded."""
        if len(self.memory) == 0:
            return {}
        kl, value = self.clone_terms(ctx, self.memory.sample(self.config.batch_size))
        return {"loss_bc_kl": kl, "loss_bc_value": value}

    def clone_terms(
        self, ctx: RunContext, rows: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted KL and value terms (:func:`clone_losses`) on memory ``rows``."""
        agent = require_policy_agent(ctx.agent, f"{self.role} {self.name!r}")
        old_policy = {k[len("policy.") :]: v for k, v in rows.items() if k.startswith("policy.")}
        return clone_losses(
            agent.policy_distribution(rows["obs"], rows["task_ids"]),
            agent.state_value(rows["obs"], rows["task_ids"]),
            old_policy,
            rows["value"],
            self.config.kl_weight,
            self.config.value_weight,
        )

    def state_dict(self) -> dict[str, Any]:
        """The window's sample and the recorded memory."""
        return {"window": self.window.state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.window.load_state_dict(state["window"])
        self.memory.load_state_dict(state["memory"])
