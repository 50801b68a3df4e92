"""Proximal Policy Optimisation with generalised advantage estimation.

PPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms") maximises the clipped
surrogate objective of its eq. (7) on rollouts of the current policy; advantages are the
generalised advantage estimates of Schulman et al. 2016 ("High-Dimensional Continuous
Control Using Generalized Advantage Estimation"), eq. (16). The agent collects ``n_steps``
transitions per training env (``num_envs`` envs stepped in lockstep by the runner), then
:meth:`PPOAgent.batches` yields ``n_epochs`` passes of shuffled minibatches over that
rollout and discards it. The runner owns the optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from l2rl.agents.requirements import check_multi_head
from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices
from l2rl.types import EnvSpec, Losses, Step

from .networks import MultiHeadMLP, check_heads, frame_scale


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    ends: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16) of a flat sequence.

    The sequence holds trajectory pieces back to back; ``ends[t]`` marks the last
    transition of a piece (the episode terminated or was truncated, the rollout or the
    training window cut it), where the sum of eq. (16) stops. Every transition bootstraps
    from the value of its own next observation unless it *terminated*:
    ``delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + gamma lam (1 - ends_t) A_{t+1}``. A truncated transition therefore
    bootstraps from ``V(s'_t)`` and stops the sum, which is what eq. (16) gives for a
    trajectory whose continuation is unknown.

    Args:
        rewards, values, next_values: ``[n]`` floats; ``values[t] = V(s_t)``,
            ``next_values[t] = V(s'_t)``.
        terminated, ends: ``[n]`` bools.
        gamma: discount factor.
        lam: the GAE parameter lambda.

    Returns:
        ``[n]`` float32 advantages.
    """
    deltas = rewards + gamma * next_values * ~terminated - values
    decay = gamma * lam * ~ends
    advantages = np.empty(len(deltas), dtype=np.float32)
    running = 0.0
    # Python floats: a reversed scalar loop over a few thousand items beats tensor ops.
    for t in range(len(deltas) - 1, -1, -1):
        running = float(deltas[t]) + float(decay[t]) * running
        advantages[t] = running
    return advantages


def clipped_surrogate_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """``-L^CLIP`` of Schulman et al. 2017, eq. (7), as a loss to minimise.

    ``L^CLIP = mean(min(r A, clip(r, 1 - eps, 1 + eps) A))`` with the probability ratio
    ``r = pi(a|s) / pi_old(a|s)``: the objective gains nothing from moving ``r`` beyond
    ``1 +- eps`` in the direction the advantage rewards.
    """
    ratio = torch.exp(log_probs - old_log_probs)
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float | None,
) -> torch.Tensor:
    """``0.5 (V - R)^2`` averaged; with ``clip_range``, the pessimistic clipped form.

    Clipping (not in the paper; from OpenAI baselines' PPO2) takes the larger of the plain
    error and the error of ``V_old + clip(V - V_old, -c, c)``, so a value estimate gains
    nothing from moving more than ``c`` away from the rollout's.
    """
    error = (values - returns) ** 2
    if clip_range is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        error = torch.max(error, (clipped - returns) ** 2)
    return 0.5 * error.mean()


def _orthogonal_init(net: MultiHeadMLP, head_gain: float) -> None:
    """Orthogonal weights (gain sqrt 2 in the torso, ``head_gain`` on heads), zero biases.

    The usual PPO initialisation: a policy head of gain 0.01 starts near-uniform (discrete)
    or near-zero-mean (continuous), so early rollouts explore evenly.
    """
    for layer in net.torso:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, math.sqrt(2))
            nn.init.zeros_(layer.bias)
    for head in net.heads:
        assert isinstance(head, nn.Linear)
        nn.init.orthogonal_(head.weight, head_gain)
        nn.init.zeros_(head.bias)


class PPONetworks(nn.Module):
    """The policy (actor), the value function (critic) and, for Box actions, the log-std.

    Separate torsos for actor and critic. For Box actions the Gaussian's log standard
    deviation is a learned, state-independent parameter, one row per head.

    Attributes:
        actor: logits (Discrete) or action means (Box), ``[batch, n]``.
        critic: state values, ``[batch, 1]``.
        log_std: ``[num_heads, action_dim]`` for Box actions, ``None`` for Discrete.
    """

    log_std: nn.Parameter | None

    def __init__(
        self,
        actor: MultiHeadMLP,
        critic: MultiHeadMLP,
        log_std: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.log_std = None if log_std is None else nn.Parameter(log_std)


@dataclass(frozen=True)
class PPOBatch:
    """A PPO minibatch: transitions of the rollout with what the update needs.

    Field names shared with :class:`~l2rl.types.TransitionBatch` (``obs``, ``actions``,
    ``task_ids``) mean the same, so a component can read them from either.

    Attributes:
        obs: observations.
        actions: the actions sampled (int64 for Discrete; for Box the unclipped sample).
        task_ids: int64, -1 where the task is unknown.
        log_probs: ``log pi_old(a|s)`` at collection.
        advantages: GAE advantages (not normalised).
        returns: value targets, ``advantages + values``.
        values: ``V_old(s)`` at the end of the rollout (for value clipping).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    task_ids: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])


class Rollout:
    """The transitions of the rollout in progress, one list per field.

    Actions are the agent's samples (unclipped for Box spaces) with their log-probs at
    collection; ``task_ids`` hold -1 where the task is unknown.
    """

    FIELDS = (
        "obs",
        "actions",
        "log_probs",
        "rewards",
        "next_obs",
        "terminated",
        "truncated",
        "task_ids",
        "env_index",
        "first",
    )

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {f: [] for f in self.FIELDS}

    def __len__(self) -> int:
        return len(self.columns["obs"])

    def add(self, step: Step, action: Any, log_prob: float) -> None:
        """Append ``step`` with the action sample and log-prob the agent acted with."""
        values = (
            np.array(step.obs),  # a copy: an env may reuse its observation buffer
            action,
            log_prob,
            step.reward,
            np.array(step.next_obs),
            step.terminated,
            step.truncated,
            -1 if step.task_id is None else step.task_id,
            step.env_index,
            step.first,
        )
        for field, value in zip(self.FIELDS, values, strict=True):
            self.columns[field].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field stacked, env by env and in time order within an env."""
        # A stable sort keeps each env's transitions in time order, so consecutive rows of
        # one env are consecutive steps unless an episode or window ended between them.
        order = np.argsort(np.array(self.columns["env_index"]), kind="stable")
        return {f: np.array(v)[order] for f, v in self.columns.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The columns as tensors (nothing while empty)."""
        if not len(self):
            return {}
        return {f: torch.as_tensor(np.array(v)) for f, v in self.columns.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.columns = {f: [] for f in self.FIELDS}
        for field, tensor in state.items():
            array = tensor.numpy()
            self.columns[field] = list(array) if array.ndim > 1 else array.tolist()


class PPOAgent(Agent):
    """PPO with a clipped surrogate, GAE, and Discrete or Box actions; optional task heads.

    Acting samples from the policy when ``explore`` and takes its mode otherwise (argmax of
    the logits, or the Gaussian mean). Box actions are clipped to the action space for the
    env, while the rollout keeps the unclipped sample, whose log-probability is the one
    the ratio needs. ``observe`` stores each transition with the log-probability cached
    when its action was chosen (by ``act``, or ``act_batch`` for ``num_envs`` envs, matched
    by ``Step.env_index``). Once the rollout holds ``n_steps x num_envs`` transitions,
    values of every observation and next observation are computed in one batched pass,
    then GAE; terminated transitions do not bootstrap, truncated ones (time limits, and
    pieces cut by the end of a training window) bootstrap from ``V(next_obs)``.

    The agent implements :class:`~l2rl.core.PolicyAgent`.

    Args:
        config: validated options.
        env_spec: a ``Box`` observation space and a ``Discrete`` (from 0) or 1-D ``Box``
            action space.
        services: must carry no replay (PPO is on-policy).
        seed: seeds initialisation, action sampling and minibatch shuffling.

    Raises:
        ConfigError: a replay is configured, an unsupported space, or ``multi_head`` in a
            task-agnostic scenario.
    """

    class Config(PluginConfig):
        """Options of the PPO agent."""

        gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="Discount factor.")
        gae_lambda: float = Field(
            default=0.95, ge=0.0, le=1.0, description="GAE lambda (1: Monte Carlo, 0: TD(0))."
        )
        lr: float = Field(default=3e-4, gt=0.0, description="Adam learning rate.")
        n_steps: PositiveInt = Field(
            default=128, description="Transitions collected per training env per rollout."
        )
        n_epochs: PositiveInt = Field(default=4, description="Passes over each rollout.")
        num_minibatches: PositiveInt = Field(
            default=4, description="Minibatches per pass (the rollout is split evenly)."
        )
        clip_range: float = Field(
            default=0.2, gt=0.0, description="Ratio clipping epsilon of eq. (7)."
        )
        value_clip_range: float | None = Field(
            default=None,
            gt=0.0,
            description="If set, clip value updates to this distance from the rollout's values.",
        )
        value_coef: float = Field(default=0.5, ge=0.0, description="Weight of the value loss.")
        entropy_coef: float = Field(default=0.0, ge=0.0, description="Weight of the entropy bonus.")
        normalize_advantages: bool = Field(
            default=True, description="Normalise advantages to zero mean, unit std per minibatch."
        )
        hidden_sizes: list[PositiveInt] = Field(
            default_factory=lambda: [64, 64],
            description="Hidden layer widths of the actor's and the critic's MLPs.",
        )
        log_std_init: float = Field(
            default=0.0, description="Initial log standard deviation of Box-action policies."
        )
        multi_head: bool = Field(
            default=False,
            description="One policy and one value head per task (task-aware runs only).",
        )
        max_grad_norm: float | None = Field(
            default=0.5, gt=0.0, description="Clip the gradient norm to this (None: no clip)."
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        action_space, obs_space = env_spec.action_space, env_spec.observation_space
        if services.replay is not None:
            raise ConfigError("PPO is on-policy; set replay: null")
        if not isinstance(obs_space, gym.spaces.Box):
            raise ConfigError(f"PPO needs a Box observation space, got {obs_space}")
        if isinstance(action_space, gym.spaces.Discrete):
            if action_space.start != 0:
                raise ConfigError(f"PPO needs a Discrete action space from 0, got {action_space}")
            num_outputs = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            num_outputs = int(action_space.shape[0])
        else:
            raise ConfigError(f"PPO needs a Discrete or a 1-D Box action space, got {action_space}")
        check_multi_head(config.multi_head, env_spec, "PPO")
        super().__init__(config, env_spec, services, seed)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.max_grad_norm = config.max_grad_norm
        if not self.discrete:
            assert isinstance(action_space, gym.spaces.Box)
            self.action_low = action_space.low.astype(np.float32)
            self.action_high = action_space.high.astype(np.float32)
        num_heads = env_spec.num_tasks if config.multi_head else 1
        obs_dim = int(np.prod(obs_space.shape))
        scale = frame_scale(obs_space)
        # fork_rng keeps the caller's global torch stream untouched by our initialisation.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            actor = MultiHeadMLP(obs_dim, num_outputs, config.hidden_sizes, num_heads, scale)
            critic = MultiHeadMLP(obs_dim, 1, config.hidden_sizes, num_heads, scale)
            _orthogonal_init(actor, head_gain=0.01)
            _orthogonal_init(critic, head_gain=1.0)
        log_std = (
            None
            if self.discrete
            else torch.full((num_heads, num_outputs), config.log_std_init, dtype=torch.float32)
        )
        self.nets = PPONetworks(actor, critic, log_std)
        # eps 1e-5 as in the PPO reference implementations (baselines); foreach: one fused
        # update for all parameters, cheaper than a Python loop over them on CPU.
        self.optimizer = torch.optim.Adam(
            self.nets.parameters(), lr=config.lr, eps=1e-5, foreach=True
        )
        # A private generator: sampling and shuffling never touch the global torch stream.
        self.generator = torch.Generator().manual_seed(seed)
        self.num_envs = 1
        """Training envs, learned from ``act_batch``; a rollout is ``n_steps`` per env."""
        self._pending: dict[int, tuple[Any, float]] = {}
        self.rollout = Rollout()

    # --- the policy ---------------------------------------------------------------------
    def _heads(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        return task_ids if self.config.multi_head else None

    def policy_distribution(self, obs: torch.Tensor, task_ids: torch.Tensor) -> Distribution:
        """``Categorical(logits)`` for Discrete actions; for Box, a diagonal Gaussian.

        The Gaussian is over the *unclipped* action (an ``Independent`` ``Normal``, so
        ``log_prob`` sums over action dimensions); the env receives it clipped to the space.
        """
        heads = self._heads(task_ids)
        out = self.nets.actor(obs, heads)
        # No argument validation: the parameters come from our own network, and checking
        # them on every call held PPO on 4 CartPole envs at ~4.8k instead of ~7k steps/s.
        if self.nets.log_std is None:
            return Categorical(logits=out, validate_args=False)
        if heads is None:
            log_std = self.nets.log_std[0].expand_as(out)
        else:
            log_std = self.nets.log_std[check_heads(heads, len(self.nets.log_std))]
        normal = Normal(out, log_std.exp(), validate_args=False)
        return Independent(normal, 1, validate_args=False)

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The critic's ``V(s)``, shape ``[batch]``."""
        return self.nets.critic(obs, self._heads(task_ids)).squeeze(1)  # type: ignore[no-any-return]

    def _sample(self, dist: Distribution) -> torch.Tensor:
        """Draw from ``dist`` with the agent's own generator."""
        if isinstance(dist, Categorical):
            return torch.multinomial(dist.probs, 1, generator=self.generator).squeeze(1)
        assert isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)
        normal = dist.base_dist
        noise = torch.randn(normal.loc.shape, generator=self.generator)
        return normal.loc + normal.scale * noise

    def _env_action(self, action: torch.Tensor) -> Any:
        """What the env receives: an int, or the sample clipped to the Box."""
        if self.discrete:
            return int(action)
        return np.clip(action.numpy(), self.action_low, self.action_high)

    def _task_tensor(self, task_id: int | None, rows: int) -> torch.Tensor:
        if self.config.multi_head and task_id is None:
            raise ValueError("multi-head PPO needs the task id to act")
        return torch.full((rows,), -1 if task_id is None else task_id, dtype=torch.int64)

    @property
    def untrained_task_heads(self) -> bool:
        """With ``multi_head``, each task's policy head stays untrained until its task trains."""
        return self.config.multi_head

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Any:
        """Sample an action when ``explore`` (and cache its log-prob), else the mode."""
        return self._act(obs[None], task_id, explore)[0]

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Sequence[Any]:
        """One forward pass for the stacked observations of the ``num_envs`` training envs."""
        if explore:
            self.num_envs = len(obs)
        return self._act(obs, task_id, explore)

    def _act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[Any]:
        with torch.inference_mode():
            dist = self.policy_distribution(
                torch.as_tensor(obs), self._task_tensor(task_id, len(obs))
            )
            if not explore:
                mode = dist.probs.argmax(1) if isinstance(dist, Categorical) else dist.mean
                return [self._env_action(a) for a in mode]
            actions = self._sample(dist)
            log_probs = dist.log_prob(actions).tolist()
        # Evaluation never explores, so it never overwrites the training envs' entries.
        self._pending = {
            i: (a.item() if self.discrete else a.numpy(), lp)
            for i, (a, lp) in enumerate(zip(actions, log_probs, strict=True))
        }
        return [self._env_action(a) for a in actions]

    # --- the rollout --------------------------------------------------------------------
    def observe(self, step: Step) -> None:
        """Store ``step`` with the action sample and log-prob cached when acting on it.

        Raises:
            RuntimeError: no exploring action was chosen for ``step.env_index`` since its
                last transition.
        """
        try:
            action, log_prob = self._pending.pop(step.env_index)
        except KeyError:
            raise RuntimeError(
                f"PPO observed a step of env {step.env_index} it did not act on "
                "(act/act_batch with explore=True must precede observe)"
            ) from None
        self.rollout.add(step, action, log_prob)

    @property
    def rollout_size(self) -> int:
        """Transitions per rollout: ``n_steps`` for each of the ``num_envs`` envs."""
        return self.config.n_steps * self.num_envs

    def batches(self, global_step: int) -> Iterator[PPOBatch]:
        """When the rollout is full: ``n_epochs`` x ``num_minibatches`` minibatches of it.

        The rollout is turned into tensors and cleared before the first minibatch, so the
        next rollout starts fresh however the iterator is consumed.
        """
        if len(self.rollout) < self.rollout_size:
            return
        data = self._finish_rollout()
        n = len(data)
        size = math.ceil(n / self.config.num_minibatches)
        for _ in range(self.config.n_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, size):
                index = order[start : start + size]
                yield PPOBatch(**{k: v[index] for k, v in vars(data).items()})

    def _finish_rollout(self) -> PPOBatch:
        """Tensors of the rollout, env by env in time order, with advantages and returns."""
        columns = self.rollout.arrays()
        self.rollout = Rollout()
        obs, next_obs, env_index = columns["obs"], columns["next_obs"], columns["env_index"]
        n = len(obs)
        # A piece continues into the next row only if that row is the same env's next step
        # of the same episode (rows are env by env in time order; Step.first marks resets).
        continues = np.zeros(n, dtype=bool)
        continues[:-1] = (env_index[:-1] == env_index[1:]) & ~columns["first"][1:]
        ends = columns["terminated"] | columns["truncated"] | ~continues
        task_ids = torch.as_tensor(columns["task_ids"], dtype=torch.int64)
        with torch.no_grad():
            both = self.state_value(
                torch.cat([torch.as_tensor(obs), torch.as_tensor(next_obs)]), task_ids.repeat(2)
            )
        values, next_values = both[:n].numpy(), both[n:].numpy()
        advantages = gae(
            columns["rewards"].astype(np.float32),
            values,
            next_values,
            columns["terminated"],
            ends,
            self.config.gamma,
            self.config.gae_lambda,
        )
        return PPOBatch(
            obs=torch.as_tensor(obs),
            actions=torch.as_tensor(columns["actions"]),
            task_ids=task_ids,
            log_probs=torch.as_tensor(columns["log_probs"], dtype=torch.float32),
            advantages=torch.from_numpy(advantages),
            returns=torch.from_numpy(advantages + values),
            values=torch.from_numpy(values),
        )

    # --- the update ---------------------------------------------------------------------
    def losses(self, batch: PPOBatch) -> Losses:
        """Clipped surrogate (eq. 7), value loss and entropy bonus on one minibatch."""
        c = self.config
        dist = self.policy_distribution(batch.obs, batch.task_ids)
        advantages = batch.advantages
        if c.normalize_advantages and len(batch) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        values = self.state_value(batch.obs, batch.task_ids)
        return {
            "loss_policy": clipped_surrogate_loss(
                dist.log_prob(batch.actions), batch.log_probs, advantages, c.clip_range
            ),
            "loss_value": c.value_coef
            * value_loss(values, batch.values, batch.returns, c.value_clip_range),
            "loss_entropy": -c.entropy_coef * dist.entropy().mean(),
        }

    def networks(self) -> PPONetworks:
        """Actor, critic and log-std: every learned parameter of the agent."""
        return self.nets

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimiser, the sampling generator, ``num_envs`` and the open rollout."""
        return {
            **super().state_dict(),
            "generator": self.generator.get_state(),
            "num_envs": self.num_envs,
            "rollout": self.rollout.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Cached actions not yet observed are dropped: the runner acts again after a restore.
        """
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.num_envs = int(state["num_envs"])
        self.rollout.load_state_dict(state["rollout"])
        self._pending = {}
