"""Soft actor-critic with twin critics and automatic temperature tuning.

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905):
two Q critics trained on the soft Bellman residual (eq. 5) against Polyak-averaged target
critics with the clipped double-Q target (the minimum of the two), a tanh-squashed Gaussian
actor trained with the reparameterised policy loss (eq. 7), and the temperature loss
(eq. 18) that drives the policy's entropy towards a target, ``-|A|`` by default. The
squashed log-likelihood is that of the first SAC paper (arXiv:1801.01290, appendix C,
eq. 21).

The runner sums the three losses and takes one backward pass and one optimiser step, so
each loss is written to reach only its own parameters: the critic targets are computed
without gradient, the actor loss evaluates the critics with their parameters held constant
(:func:`constant_parameters`) and uses a detached temperature, and the temperature loss
uses detached log-probabilities. Adam's per-parameter updates then make the single step
equal to three separate ones (critic and actor both see the critics as they were before
the step; the usual implementations step the critics first).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn
from torch.distributions import (
    AffineTransform,
    Distribution,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
    kl_divergence,
    register_kl,
)

from l2rl.agents.off_policy import replay_batches
from l2rl.agents.requirements import check_multi_head, required_replay
from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, BatchSource
from l2rl.types import EnvSpec, Losses, Step, TransitionBatch

from .networks import ContinuousQNetwork, MultiHeadMLP, frame_scale

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Bounds of the actor's log standard deviation (those of the authors' implementation)."""


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """``sum_i log(1 - tanh(u_i)^2)``, summed over the last dimension.

    Written as ``2 (log 2 - u - softplus(-2u))``, which is exact and stays finite where
    ``tanh(u)`` rounds to +-1.
    """
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)


def squashed_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised tanh-Gaussian sample in ``[-1, 1]`` and its log-density.

    ``u = mean + std * noise``, ``a = tanh(u)`` and (arXiv:1801.01290, appendix C, eq. 21)
    ``log pi(a|s) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2)``.

    Returns:
        ``(a, log_prob)`` of shapes ``[batch, action_dim]`` and ``[batch]``.
    """
    pre_tanh = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    return torch.tanh(pre_tanh), gaussian - tanh_log_det_jacobian(pre_tanh)


def soft_q_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """The soft Bellman target ``r + gamma (1 - done) (min_j Q'_j(s', a') - alpha log pi(a'|s'))``.

    Args:
        rewards, terminated: ``[batch]``; terminated transitions do not bootstrap.
        next_q: ``min_j Q'_j(s', a')`` of target critics at a fresh ``a' ~ pi(.|s')``.
        next_log_prob: ``log pi(a'|s')``.
        alpha: the temperature.
        gamma: discount factor.
    """
    return rewards + gamma * ~terminated * (next_q - alpha * next_log_prob)


@contextmanager
def constant_parameters(module: nn.Module) -> Iterator[None]:
    """Within the block, operations treat ``module``'s parameters as constants.

    Autograd decides when an operation runs whether its inputs need gradients, so a graph
    built inside the block passes gradient through ``module`` to its inputs but never into
    its parameters; graphs built before or after are unaffected. Each parameter's own flag
    is restored on exit (a frozen one stays frozen). This costs microseconds, where
    evaluating through detached copies with ``torch.func.functional_call`` cost ~0.5 ms
    per update here.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class SquashedNormal(TransformedDistribution):
    """The SAC policy over env actions: ``low + (high - low) (tanh(u) + 1) / 2``, ``u`` Gaussian.

    ``log_prob`` takes env-space actions (replayed ones, say); actions on the bounds are
    pulled just inside them so their log-density stays finite. The KL divergence between
    two of these with the same bounds is the KL of their Gaussians (a shared bijection
    leaves it unchanged), registered with :func:`torch.distributions.kl_divergence`.

    Args:
        loc, scale: the Gaussian's mean and standard deviation, ``[batch, action_dim]``.
        center, half_range: ``(high + low) / 2`` and ``(high - low) / 2`` of the space.
    """

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        center: torch.Tensor,
        half_range: torch.Tensor,
    ) -> None:
        self.center, self.half_range = center, half_range
        self.gaussian: Distribution = Independent(Normal(loc, scale), 1)
        """The pre-squash Gaussian over ``u``."""
        super().__init__(
            self.gaussian,
            [TanhTransform(cache_size=1), AffineTransform(center, half_range, event_dim=1)],
        )

    @property
    def mode(self) -> torch.Tensor:
        """The deterministic action: the squashed Gaussian mean."""
        return self.center + self.half_range * torch.tanh(self.gaussian.mean)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of env-space actions ``value`` (``[batch, action_dim]`` -> ``[batch]``)."""
        unit = ((value - self.center) / self.half_range).clamp(-1 + 1e-6, 1 - 1e-6)
        pre_tanh = torch.atanh(unit)
        log_det = tanh_log_det_jacobian(pre_tanh) + self.half_range.log().sum(-1)
        return self.gaussian.log_prob(pre_tanh) - log_det


def _kl_squashed(p: SquashedNormal, q: SquashedNormal) -> torch.Tensor:
    """``KL(p || q)`` of two squashed Gaussians with the same bounds: that of the Gaussians."""
    if not (torch.equal(p.center, q.center) and torch.equal(p.half_range, q.half_range)):
        raise ValueError("KL between SquashedNormals needs the same action bounds")
    return kl_divergence(p.gaussian, q.gaussian)


register_kl(SquashedNormal, SquashedNormal)(_kl_squashed)  # type: ignore[no-untyped-call]


class TwinQ(nn.Module):
    """Two independent ``Q(s, a)`` critics."""

    def __init__(self, q1: ContinuousQNetwork, q2: ContinuousQNetwork) -> None:
        super().__init__()
        self.q1, self.q2 = q1, q2

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, heads: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both critics' values ``[batch]`` of unit-range ``action`` in ``obs``."""
        return self.q1(obs, action, heads), self.q2(obs, action, heads)


class SACNetworks(nn.Module):
    """What SAC learns and regularizers protect: the actor and the twin critics.

    The target critics (lagging copies) and the temperature are not part of it.

    Attributes:
        actor: outputs ``[mean, log_std]`` of the pre-squash Gaussian, ``2 x action_dim``.
        critics: the twin Q critics; they take actions scaled to ``[-1, 1]``.
    """

    def __init__(self, actor: MultiHeadMLP, critics: TwinQ) -> None:
        super().__init__()
        self.actor = actor
        self.critics = critics


class SACAgent(Agent):
    """SAC for Box actions: tanh-Gaussian actor, twin critics, learned temperature.

    The networks work in unit range: the actor's squashed actions lie in ``[-1, 1]`` and
    are mapped affinely to the space's bounds for the env; replayed actions are mapped
    back before they reach the critics. Log-probabilities (and so the entropy target
    ``-|A|``) are those of the unit-range action; the affine map changes them by a
    constant. For the first ``random_steps`` env steps of the run the agent acts uniformly
    at random; updates start once the replay holds ``learning_starts`` transitions.

    The agent implements :class:`~l2rl.core.PolicyAgent`: ``policy_distribution`` is a
    :class:`SquashedNormal` over env-space actions; ``state_value`` is ``min_j Q_j(s, a*)``
    at the deterministic action ``a*`` (the squashed mean, the action the agent is
    evaluated with), a deterministic value so that a regularizer comparing values of two
    agents compares like with like.

    Args:
        config: validated options.
        env_spec: a ``Box`` observation space and a 1-D ``Box`` action space with finite
            bounds.
        services: must carry a replay (``services.replay``).
        seed: seeds initialisation, action sampling and random exploration.

    Raises:
        ConfigError: no replay, an unsupported space, or ``multi_head`` in a task-agnostic
            scenario.
    """

    class Config(PluginConfig):
        """Options of the SAC agent."""

        gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="Discount factor.")
        tau: float = Field(
            default=0.005, gt=0.0, le=1.0, description="Polyak rate of the target critics."
        )
        actor_lr: float = Field(default=3e-4, gt=0.0, description="Adam learning rate, actor.")
        critic_lr: float = Field(default=3e-4, gt=0.0, description="Adam learning rate, critics.")
        alpha_lr: float = Field(
            default=3e-4, gt=0.0, description="Adam learning rate, log temperature."
        )
        batch_size: PositiveInt = Field(default=256, description="Transitions per minibatch.")
        learning_starts: PositiveInt = Field(
            default=1_000, description="Updates begin once the replay holds this many transitions."
        )
        random_steps: int = Field(
            default=1_000,
            ge=0,
            description="Env steps at the start of the run with uniformly random actions.",
        )
        train_every: PositiveInt = Field(
            default=1, description="Env steps between updates (counted by the global step)."
        )
        gradient_steps: PositiveInt = Field(
            default=1, description="Optimiser steps (minibatches) per update."
        )
        hidden_sizes: list[PositiveInt] = Field(
            default_factory=lambda: [256, 256],
            description="Hidden layer widths of the actor's and each critic's MLP.",
        )
        init_alpha: float = Field(default=1.0, gt=0.0, description="Initial temperature.")
        autotune_alpha: bool = Field(
            default=True, description="Learn the temperature (eq. 18); else keep init_alpha."
        )
        target_entropy: float | None = Field(
            default=None, description="Entropy target of the temperature loss (None: -|A|)."
        )
        multi_head: bool = Field(
            default=False,
            description="One actor and one critic head per task (task-aware runs only).",
        )
        max_grad_norm: float | None = Field(
            default=None,
            gt=0.0,
            description="Clip the global gradient norm (all three losses) to this (None: no clip).",
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        action_space, obs_space = env_spec.action_space, env_spec.observation_space
        if not (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1):
            raise ConfigError(f"SAC needs a 1-D Box action space, got {action_space}")
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ConfigError(f"SAC needs finite action bounds, got {action_space}")
        if not isinstance(obs_space, gym.spaces.Box):
            raise ConfigError(f"SAC needs a Box observation space, got {obs_space}")
        replay = required_replay(services, "SAC", config.learning_starts)
        check_multi_head(config.multi_head, env_spec, "SAC")
        super().__init__(config, env_spec, services, seed)
        self.replay: BatchSource = replay
        self.max_grad_norm = config.max_grad_norm
        self.action_dim = int(action_space.shape[0])
        self.action_low = action_space.low.astype(np.float32)
        self.action_high = action_space.high.astype(np.float32)
        low, high = torch.from_numpy(self.action_low), torch.from_numpy(self.action_high)
        self.center, self.half_range = (high + low) / 2, (high - low) / 2
        self.target_entropy = (
            -float(self.action_dim) if config.target_entropy is None else config.target_entropy
        )
        obs_dim = int(np.prod(obs_space.shape))
        scale = frame_scale(obs_space)
        num_heads = env_spec.num_tasks if config.multi_head else 1
        sizes = config.hidden_sizes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            actor = MultiHeadMLP(obs_dim, 2 * self.action_dim, sizes, num_heads, scale)
            critics = TwinQ(
                ContinuousQNetwork(obs_dim, self.action_dim, sizes, num_heads, scale),
                ContinuousQNetwork(obs_dim, self.action_dim, sizes, num_heads, scale),
            )
        self.nets = SACNetworks(actor, critics)
        self.target_critics = copy.deepcopy(critics).requires_grad_(False)
        self._critic_params: list[torch.Tensor] = list(critics.parameters())
        self._target_params: list[torch.Tensor] = list(self.target_critics.parameters())
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(config.init_alpha)), requires_grad=config.autotune_alpha
        )
        groups: list[dict[str, Any]] = [
            {"params": list(actor.parameters()), "lr": config.actor_lr},
            {"params": list(critics.parameters()), "lr": config.critic_lr},
        ]
        if config.autotune_alpha:
            groups.append({"params": [self.log_alpha], "lr": config.alpha_lr})
        # foreach: one fused update per group; 1.8 vs 2.7 ms per step for 64x64 nets here.
        self.optimizer = torch.optim.Adam(groups, foreach=True)
        # Private streams: sampling never touches the global torch or numpy generators.
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        """Env steps observed (the random-action phase lasts ``random_steps`` of them)."""

    # --- the policy ---------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        """The current temperature."""
        return float(self.log_alpha.detach().exp())

    def _heads(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        return task_ids if self.config.multi_head else None

    def _gaussian(
        self, obs: torch.Tensor, heads: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log-std of the pre-squash Gaussian."""
        mean, log_std = self.nets.actor(obs, heads).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _sample(
        self, obs: torch.Tensor, heads: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised unit-range action and its log-prob, noise from our generator."""
        mean, log_std = self._gaussian(obs, heads)
        noise = torch.randn(mean.shape, generator=self.generator)
        return squashed_gaussian_sample(mean, log_std, noise)

    def to_env(self, unit_action: torch.Tensor) -> torch.Tensor:
        """Map actions in ``[-1, 1]`` affinely onto the action space's bounds."""
        return self.center + self.half_range * unit_action

    def to_unit(self, env_action: torch.Tensor) -> torch.Tensor:
        """Map env-space actions back to ``[-1, 1]`` (clamped)."""
        return ((env_action - self.center) / self.half_range).clamp(-1.0, 1.0)

    def policy_distribution(self, obs: torch.Tensor, task_ids: torch.Tensor) -> SquashedNormal:
        """The acting policy as a :class:`SquashedNormal` over env-space actions."""
        mean, log_std = self._gaussian(obs, self._heads(task_ids))
        return SquashedNormal(mean, log_std.exp(), self.center, self.half_range)

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """``min_j Q_j(s, tanh(mean))``: the value of the deterministic action, ``[batch]``."""
        heads = self._heads(task_ids)
        mean, _ = self._gaussian(obs, heads)
        value: torch.Tensor = torch.min(*self.nets.critics(obs, torch.tanh(mean), heads))
        return value

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> np.ndarray:
        """Uniform at first, then a policy sample when ``explore``; else the squashed mean."""
        if explore and self.steps < self.config.random_steps:
            return self.rng.uniform(self.action_low, self.action_high).astype(np.float32)
        action: np.ndarray = self._policy_actions(np.asarray(obs)[None], task_id, explore)[0]
        return action

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[np.ndarray]:
        """Deterministic actions of a stack in one forward pass; exploring ones one by one,
        so the random draws come in the same order as :meth:`act`'s."""
        if explore:
            return [self.act(o, task_id, True) for o in obs]
        return list(self._policy_actions(obs, task_id, False))

    def _policy_actions(self, obs: np.ndarray, task_id: int | None, explore: bool) -> np.ndarray:
        """Env actions of a stack of observations, one forward pass: policy samples when
        ``explore``, else the squashed means."""
        if self.config.multi_head and task_id is None:
            raise ValueError("multi-head SAC needs the task id to act")
        heads = None
        if task_id is not None and self.config.multi_head:
            heads = torch.full((len(obs),), task_id)
        with torch.inference_mode():
            obs_t = torch.as_tensor(obs)
            if explore:
                unit, _ = self._sample(obs_t, heads)
            else:
                unit = torch.tanh(self._gaussian(obs_t, heads)[0])
            actions: np.ndarray = self.to_env(unit).numpy()
            return actions

    def observe(self, step: Step) -> None:
        """Count the env step (for the random-action phase)."""
        self.steps += 1

    # --- the update ---------------------------------------------------------------------
    def batches(self, global_step: int) -> Iterator[TransitionBatch]:
        """``gradient_steps`` replay minibatches every ``train_every`` steps once warm."""
        c = self.config
        return replay_batches(
            self.replay,
            global_step,
            train_every=c.train_every,
            learning_starts=c.learning_starts,
            gradient_steps=c.gradient_steps,
            batch_size=c.batch_size,
        )

    def losses(self, batch: TransitionBatch) -> Losses:
        """Critic (eq. 5), actor (eq. 7) and, when tuned, temperature (eq. 18) losses."""
        heads = self._heads(batch.task_ids)
        alpha = self.log_alpha.exp()
        with torch.no_grad():
            next_action, next_log_prob = self._sample(batch.next_obs, heads)
            next_q = torch.min(*self.target_critics(batch.next_obs, next_action, heads))
            target = soft_q_target(
                batch.rewards, batch.terminated, next_q, next_log_prob, alpha, self.config.gamma
            )
        q1, q2 = self.nets.critics(batch.obs, self.to_unit(batch.actions), heads)
        critic_loss = 0.5 * ((q1 - target).pow(2).mean() + (q2 - target).pow(2).mean())

        action, log_prob = self._sample(batch.obs, heads)
        # Critics as constants: the actor loss moves the actor only, while the gradient
        # still flows through the critics to the action.
        with constant_parameters(self.nets.critics):
            q_pi = torch.min(*self.nets.critics(batch.obs, action, heads))
        losses = {
            "loss_critic": critic_loss,
            "loss_actor": (alpha.detach() * log_prob - q_pi).mean(),
        }
        if self.config.autotune_alpha:
            losses["loss_alpha"] = -(alpha * (log_prob.detach() + self.target_entropy)).mean()
        return losses

    def after_optimizer_step(self) -> None:
        """Polyak-average the target critics towards the critics by ``tau``."""
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, self.config.tau)

    def networks(self) -> SACNetworks:
        """Actor and twin critics (not the target critics, not the temperature)."""
        return self.nets

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimiser, target critics, temperature, step count, random streams."""
        return {
            **super().state_dict(),
            "target_critics": self.target_critics.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "steps": self.steps,
            "generator": self.generator.get_state(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.target_critics.load_state_dict(state["target_critics"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.steps = int(state["steps"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
