"""A DreamerV3-style actor-critic trained only in imagination (Hafner et al. 2023, sec. 3).

The agent owns no model of its own: the run's ``world_model`` service (e.g. the
``dreamer-world-model`` component) filters what the agent sees into latent states and rolls
the actor out in imagination. Each update (:meth:`DreamerAgent.losses`):

1. replayed sequences (``services.sequences``) are filtered into posterior states
   (:meth:`~l2rl.core.WorldModelService.observe_sequences`, no gradients), every step a
   start state ``s_0``;
2. the actor is rolled out for ``H = horizon`` steps in the model:
   ``s_1..s_H``, predicted rewards ``r_t`` and continues ``c_t``; an ``exploration`` service
   (Plan2Explore) may replace the rewards by its mix of extrinsic and intrinsic reward;
3. lambda-returns (eq. 7) ``R_t = r_t + gamma c_t ((1 - lambda) v(s_{t+1}) + lambda
   R_{t+1})``, ``R_H = v(s_H)``, with the critic ``v``;
4. critic loss: twohot cross-entropy of ``v(s_t)`` against ``sg(R_t)`` plus the same against
   the slow critic's prediction (DreamerV3's regulariser towards its EMA, rate 0.02);
5. actor loss (eq. 8-9): advantages ``(R_t - v(s_t)) / max(1, S)`` with ``S`` the EMA of the
   5th-95th percentile range of returns; REINFORCE ``-log pi(a_t|s_t) sg(adv)`` for
   discrete actions, backpropagation ``-adv`` through the model's dynamics for continuous
   ones; minus ``eta H[pi(.|s_t)]`` (entropy bonus 3e-4);

both weighted by the imagined discount ``prod_{i<t} gamma c_i`` (the start state's
continue from the data). Actor and critic share one Adam (two parameter groups, lr 3e-5,
eps 1e-5) and one gradient clip (DreamerV3 clips each network at 100 separately; here both
sit in one optimizer, so the global norm of the two is clipped). The critic's values that
enter the actor's advantage are computed with the critic's parameters out of the graph, so
a continuous actor's backprop reaches the actor only.

Acting filters each observation with :meth:`~l2rl.core.WorldModelService.observe_step` and
samples the actor (the mode when not exploring). Training and evaluation keep separate
latent states, reset by :meth:`DreamerAgent.on_episode_start`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, SequenceSource, WorldModelService
from l2rl.dreamer_math import (
    BINS,
    ReturnNormalizer,
    bins,
    frozen,
    lambda_returns,
    mlp,
    twohot_loss,
    twohot_mean,
    unimix_logits,
)
from l2rl.types import EnvSpec, Losses

# Bounds of the continuous actor's standard deviation (DreamerV3's bounded normal).
_MIN_STD, _MAX_STD = 0.1, 1.0


@dataclass
class StartStates:
    """Imagination starts: the model's latent states of replayed sequences ``[B, T]`` and
    their continue flags flattened to ``[B * T]`` (0 where the state is terminal)."""

    states: Any
    continues: torch.Tensor


@dataclass
class _Stream:
    """The latent state one acting stream (training envs, or evaluation) carries."""

    state: Any
    prev_action: torch.Tensor
    first: torch.Tensor


class ActorCritic(nn.Module):
    """Actor, critic and the slow critic (an EMA copy, not trained by the optimizer)."""

    def __init__(self, feature_dim: int, action_dim: int, config: DreamerAgent.Config) -> None:
        super().__init__()
        units, layers = config.units, config.layers
        self.actor = mlp(feature_dim, units, layers, action_dim)
        self.critic = mlp(feature_dim, units, layers, BINS)
        # Zero-initialised critic output: values start at 0, as in DreamerV3.
        last = self.critic[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.bins: torch.Tensor
        self.register_buffer("bins", bins(BINS), persistent=False)


class DreamerAgent(Agent):
    """Dreamer's actor-critic (module docstring), learning in a world model's imagination.

    Args:
        config: validated options.
        env_spec: ``Discrete`` or 1-D ``Box`` actions; any observation the world model reads.
        services: must carry a ``world_model`` and a replay serving ``sequences``.
        seed: seeds initialisation.

    Raises:
        ConfigError: no world model, no replay serving sequences, or an action space the
            actor cannot produce.
    """

    class Config(PluginConfig):
        """DreamerV3's actor-critic settings; sizes and schedule fit 2 CPU cores."""

        horizon: PositiveInt = Field(default=15, description="Imagination horizon H.")
        gamma: float = Field(default=1 - 1 / 333, gt=0.0, le=1.0, description="Discount.")
        lam: float = Field(default=0.95, ge=0.0, le=1.0, description="Lambda of the returns.")
        lr: float = Field(default=3e-5, gt=0.0, description="Adam lr of actor and critic.")
        entropy: float = Field(default=3e-4, ge=0.0, description="Entropy bonus eta.")
        slow_critic_rate: float = Field(
            default=0.02, gt=0.0, le=1.0, description="EMA rate of the slow critic per update."
        )
        slow_critic_reg: float = Field(
            default=1.0, ge=0.0, description="Weight of the critic's pull to the slow critic."
        )
        return_decay: float = Field(
            default=0.99, gt=0.0, lt=1.0, description="EMA decay of the return range S."
        )
        units: PositiveInt = Field(default=256, description="Width of actor and critic MLPs.")
        layers: PositiveInt = Field(default=2, description="Hidden layers of each MLP.")
        unimix: float = Field(default=0.01, ge=0.0, lt=1.0, description="Actor's uniform mix.")
        max_grad_norm: float = Field(default=100.0, gt=0.0, description="Gradient clip.")
        batch_size: PositiveInt = Field(default=16, description="Sequences of start states.")
        sequence_length: PositiveInt = Field(default=64, description="Steps per sequence.")
        train_every: PositiveInt = Field(default=5, description="Env steps between updates.")
        learning_starts: int = Field(
            default=1000, ge=0, description="Env steps before the first update."
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        if services.world_model is None:
            raise ConfigError(
                "dreamer learns in imagination: configure a world model component "
                "(e.g. dreamer-world-model)"
            )
        if services.sequences is None:
            raise ConfigError("dreamer needs a replay that serves sequences (e.g. fifo)")
        space = env_spec.action_space
        if isinstance(space, gym.spaces.Discrete) and space.start == 0:
            self.num_actions: int | None = int(space.n)
            action_dim = self.num_actions
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
                raise ConfigError(f"dreamer needs bounded continuous actions, got {space}")
            self.num_actions, action_dim = None, int(space.shape[0])
            self._low = torch.as_tensor(space.low, dtype=torch.float32)
            self._high = torch.as_tensor(space.high, dtype=torch.float32)
        else:
            raise ConfigError(f"dreamer cannot act in {space}")
        super().__init__(config, env_spec, services, seed)
        self.world_model: WorldModelService = services.world_model
        self.sequences: SequenceSource = services.sequences
        self.exploration = services.exploration
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.nets = ActorCritic(
                self.world_model.feature_dim,
                2 * action_dim if self.continuous else action_dim,
                config,
            )
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.nets.actor.parameters()},
                {"params": self.nets.critic.parameters()},
            ],
            lr=config.lr,
            eps=1e-5,
        )
        self.max_grad_norm = config.max_grad_norm
        self.returns = ReturnNormalizer(decay=config.return_decay)
        self._streams: dict[bool, _Stream] = {
            True: self._new_stream(env_spec.num_envs),
            False: self._new_stream(1),
        }

    @property
    def continuous(self) -> bool:
        """Whether actions are continuous (reparameterised, backprop through the model)."""
        return self.num_actions is None

    # --- the policy -------------------------------------------------------------------
    def policy(self, features: torch.Tensor) -> torch.distributions.Distribution:
        """``pi(a | s)`` on model features: a categorical with 1% uniform mix, or a normal
        with ``tanh`` mean and std in ``[0.1, 1]`` in the unit box (DreamerV3's bounded
        normal) for continuous actions."""
        out = self.nets.actor(features)
        if self.num_actions is not None:
            return torch.distributions.Categorical(logits=unimix_logits(out, self.config.unimix))
        mean, std = out.chunk(2, dim=-1)
        std = (_MAX_STD - _MIN_STD) * torch.sigmoid(std + 2.0) + _MIN_STD
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)

    def _to_env(self, unit_action: torch.Tensor) -> torch.Tensor:
        """A continuous action from the unit box to the action space's bounds."""
        unit = unit_action.clamp(-1.0, 1.0)
        return self._low + (unit + 1.0) * 0.5 * (self._high - self._low)

    def _imagination_policy(self, features: torch.Tensor) -> torch.Tensor:
        """Sample an action the world model can take (env units), with gradients for
        continuous actions (reparameterised) and none for discrete ones."""
        dist = self.policy(features)
        if self.continuous:
            return self._to_env(dist.rsample())
        return dist.sample()

    # --- acting -----------------------------------------------------------------------
    def _new_stream(self, size: int) -> _Stream:
        action_shape = () if self.num_actions is not None else self._low.shape
        dtype = torch.long if self.num_actions is not None else torch.float32
        return _Stream(
            state=self.world_model.initial(size),
            prev_action=torch.zeros(size, *action_shape, dtype=dtype),
            first=torch.ones(size, dtype=torch.bool),
        )

    def on_episode_start(self, env_indices: Sequence[int], evaluation: bool) -> None:
        """Restart the latent state of those envs (or evaluation slots) at their next
        observation; a stream too small for them starts afresh at their size."""
        indices = list(env_indices)
        stream = self._streams[not evaluation]
        if indices and max(indices) >= len(stream.first):
            stream = self._streams[not evaluation] = self._new_stream(max(indices) + 1)
        stream.first[indices] = True

    @torch.no_grad()
    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[Any]:
        """Filter ``obs`` into the posterior and sample the actor (its mode if not
        ``explore``). Training (``explore``) and evaluation keep separate states."""
        stream = self._streams[explore]
        if len(obs) != len(stream.first):
            stream = self._streams[explore] = self._new_stream(len(obs))
        stream.state = self.world_model.observe_step(
            stream.state, stream.prev_action, torch.as_tensor(obs), stream.first
        )
        stream.first = torch.zeros_like(stream.first)
        dist = self.policy(self.world_model.features(stream.state))
        if isinstance(dist, torch.distributions.Categorical):
            probs = dist.probs
            action = torch.multinomial(probs, 1).squeeze(-1) if explore else probs.argmax(-1)
            stream.prev_action = action
            return [int(a) for a in action]
        env_action = self._to_env(dist.sample() if explore else dist.mean)
        stream.prev_action = env_action
        return [a.numpy().astype(self.env_spec.action_space.dtype) for a in env_action]

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Any:
        """One env's action; see :meth:`act_batch`."""
        return self.act_batch(np.asarray(obs)[None], task_id, explore)[0]

    # --- the policy on stored observations (PolicyAgent: EWC, behaviour cloning) -------
    def _replayed_features(self, obs: torch.Tensor) -> torch.Tensor:
        """Model features of replayed frames, each filtered as an episode's first: a
        stored transition carries no history, so this is the posterior the agent would act
        from at an episode start (the same for Markov observations up to ``h``)."""
        n = len(obs)
        fresh = self._new_stream(n)
        state = self.world_model.observe_step(fresh.state, fresh.prev_action, obs, fresh.first)
        return self.world_model.features(state)

    def policy_distribution(
        self, obs: torch.Tensor, task_ids: torch.Tensor
    ) -> torch.distributions.Distribution:
        """:meth:`policy` on the one-step posterior of each observation (differentiable in
        the actor's parameters)."""
        return self.policy(self._replayed_features(obs))

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The critic's value on the one-step posterior of each observation."""
        value: torch.Tensor = twohot_mean(
            self.nets.critic(self._replayed_features(obs)), self.nets.bins
        )
        return value

    # --- learning ---------------------------------------------------------------------
    def batches(self, global_step: int) -> Iterator[StartStates]:
        """Posterior start states of one batch of replayed sequences every
        ``train_every`` steps once ``learning_starts`` steps were taken."""
        c = self.config
        if global_step < c.learning_starts or global_step % c.train_every != 0:
            return
        batch = self.sequences.sample_sequences(c.batch_size, c.sequence_length)
        states = self.world_model.observe_sequences(batch)
        continues = (~batch.terminated).flatten().to(torch.float32)
        yield StartStates(states, continues)

    def losses(self, batch: StartStates) -> Losses:
        """The actor and critic losses of the module docstring on one batch of starts."""
        c, nets = self.config, self.nets
        rollout = self.world_model.imagine(batch.states, self._imagination_policy, c.horizon)
        feats, actions = rollout["features"], rollout["actions"]
        rewards = rollout["rewards"]
        if self.exploration is not None:
            rewards = self.exploration.imagined_reward(feats, actions, rewards)
        with frozen(nets.critic):
            values = twohot_mean(nets.critic(feats), nets.bins)
        returns = lambda_returns(rewards, rollout["continues"], values, c.gamma, c.lam)
        with torch.no_grad():
            all_continues = torch.cat([batch.continues[None], rollout["continues"]])
            weight = torch.cumprod(c.gamma * all_continues, 0)[:-1] / c.gamma
            self.returns.update(returns)
            slow = twohot_mean(nets.slow_critic(feats[:-1].detach()), nets.bins)

        logits = nets.critic(feats[:-1].detach())
        critic = twohot_loss(logits, returns.detach(), nets.bins)
        critic = critic + c.slow_critic_reg * twohot_loss(logits, slow, nets.bins)

        dist = self.policy(feats[:-1].detach())
        advantage = (returns - values[:-1]) / self.returns.scale()
        # Continuous: the advantage itself, differentiable through the dynamics;
        # discrete: REINFORCE on the detached advantage.
        objective = advantage if self.continuous else dist.log_prob(actions) * advantage.detach()
        actor = -objective - c.entropy * dist.entropy()
        return {
            "loss_actor": (weight * actor).mean(),
            "loss_critic": (weight * critic).mean(),
        }

    def after_optimizer_step(self) -> None:
        """Move the slow critic towards the critic by ``slow_critic_rate``."""
        with torch.no_grad():
            for slow, fast in zip(
                self.nets.slow_critic.parameters(), self.nets.critic.parameters(), strict=True
            ):
                slow.lerp_(fast, self.config.slow_critic_rate)

    def networks(self) -> ActorCritic:
        """Actor, critic and slow critic (only actor and critic are optimised)."""
        return self.nets

    # The latent acting state is not checkpointed: a resume inside a window starts new
    # episodes (l2rl.checkpoint), and says so in the run's resumes.jsonl.
    resumes_mid_episode = False

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer and the return normaliser (acting states restart with the
        next episode)."""
        return {**super().state_dict(), "returns": self.returns.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.returns.load_state_dict(state["returns"])
