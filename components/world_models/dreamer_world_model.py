"""``dreamer-world-model``: a DreamerV3-style world model as a learning component.

The model (Hafner et al. 2023, eq. 4-5) encodes each observation ``x_t``, filters it
through the :class:`~l2rl.components.world_models.rssm.RSSM` and trains, from replayed
sequences, the sum of

* ``loss_decoder``: the decoder's squared error against the observation target:
  ``0.5 || dec(s_t) - symlog(x_t) ||^2`` for vectors (symlog squared error) and, for
  images, DreamerV3's ``|| dec(s_t) - y_t ||^2`` summed over pixels and channels,
* ``loss_reward``: twohot cross-entropy of the reward head (255 bins, output layer
  zero-initialised) against ``r_t``,
* ``loss_continue``: binary cross-entropy of the continue head against ``1 - terminal``,
* ``loss_kl``: ``0.5 max(1, KL[sg(q) || p]) + 0.1 max(1, KL[q || sg(p)])``,

each averaged over batch and time, with its own Adam optimizer (lr 1e-4, gradient norm
clipped to 1000 as in DreamerV3) on its own schedule: one batch of ``batch_size``
sequences of ``sequence_length`` every ``train_every`` env steps once ``learning_starts``
steps were taken. It is a :class:`~l2rl.core.Learner` (``learner_name`` "world_model")
the runner trains beside the agent, and offers the ``world_model`` service:
:meth:`DreamerWorldModel.features` and :meth:`DreamerWorldModel.imagine`.

**Observations.** A 1-D ``Box`` is a vector: MLP encoder and decoder on ``symlog(x)``.
A 3-D ``Box`` ``(H, W, C)`` with finite bounds is an image (channels last, e.g. MinAtar's
10x10xC or 64x64x3 frames): DreamerV3's CNN encoder and decoder
(:mod:`~l2rl.components.world_models.conv`, options ``cnn_depth`` and
``cnn_min_resolution``) on ``y = (x - low) / (high - low) - 0.5``, the frame scaled by the
Box's own bounds to ``[-0.5, 0.5]`` (DreamerV3's ``x / 255 - 0.5`` for 0..255 frames, and
right for 0/1 frames such as MinAtar's too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import AgentServices, Component, Learner, SequenceSource
from l2rl.dreamer_math import (
    BINS,
    ActionEncoding,
    balanced_kl_loss,
    bins,
    frozen,
    mlp,
    symlog,
    twohot_loss,
    twohot_mean,
)
from l2rl.types import EnvSpec, Losses, SequenceBatch

from .conv import ConvDecoder, ConvEncoder
from .rssm import RSSM, LatentState


class WorldModelNetworks(nn.Module):
    """Encoder, RSSM, decoder, reward and continue heads.

    Args:
        obs_shape: ``(D,)`` for vectors (MLP encoder and decoder) or ``(H, W, C)`` for
            images (:class:`~l2rl.components.world_models.conv.ConvEncoder` and
            :class:`~l2rl.components.world_models.conv.ConvDecoder`).
        action_dim: size of the encoded action.
        config: the model's options.
    """

    def __init__(
        self, obs_shape: tuple[int, ...], action_dim: int, config: DreamerWorldModel.Config
    ) -> None:
        super().__init__()
        units, layers = config.units, config.layers
        self.encoder: nn.Module
        self.decoder: nn.Module
        if len(obs_shape) == 3:
            height, width, channels = obs_shape
            image = (height, width, channels)
            encoder = ConvEncoder(image, config.cnn_depth, config.cnn_min_resolution)
            self.encoder, embed_dim = encoder, encoder.embed_dim
        else:
            self.encoder, embed_dim = mlp(obs_shape[0], units, layers), units
        self.rssm = RSSM(
            embed_dim,
            action_dim,
            config.deter,
            config.latents,
            config.classes,
            units,
            config.unimix,
        )
        features = self.rssm.feature_dim
        if len(obs_shape) == 3:
            self.decoder = ConvDecoder(features, image, config.cnn_depth, config.cnn_min_resolution)
        else:
            self.decoder = mlp(features, units, layers, obs_shape[0])
        self.reward = mlp(features, units, layers, BINS)
        self.cont = mlp(features, units, layers, 1)
        # DreamerV3 zero-initialises the reward head's output: predictions start at 0.
        last = self.reward[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.bins: torch.Tensor
        self.register_buffer("bins", bins(BINS), persistent=False)


class DreamerWorldModel(Learner):
    """The world model's learner: networks, optimizer, schedule and losses.

    Args:
        config: the component's options.
        env_spec: a 1-D ``Box`` (vector) or a 3-D ``Box`` ``(H, W, C)`` with finite bounds
            (image) observation space; ``Discrete`` or 1-D ``Box`` actions.
    """

    learner_name = "world_model"

    class Config(PluginConfig):
        """Sizes and schedule (DreamerV3's defaults where they fit 2 CPU cores)."""

        deter: PositiveInt = Field(default=256, description="Size of the GRU state h.")
        latents: PositiveInt = Field(default=32, description="Categoricals in z (L).")
        classes: PositiveInt = Field(default=32, description="Classes per categorical (K).")
        units: PositiveInt = Field(default=256, description="Width of every MLP.")
        layers: PositiveInt = Field(default=2, description="Hidden layers of each MLP.")
        unimix: float = Field(default=0.01, ge=0.0, lt=1.0, description="Uniform mix.")
        lr: float = Field(default=1e-4, gt=0.0, description="Adam learning rate.")
        max_grad_norm: float = Field(default=1000.0, gt=0.0, description="Gradient clip.")
        batch_size: PositiveInt = Field(default=16, description="Sequences per batch.")
        sequence_length: PositiveInt = Field(default=64, description="Steps per sequence.")
        train_every: PositiveInt = Field(default=5, description="Env steps between updates.")
        learning_starts: int = Field(default=1000, ge=0, description="Steps before training.")
        seed: int = Field(default=0, description="Seeds initialisation and sampling.")
        cnn_depth: PositiveInt = Field(
            default=32,
            description="Image observations: channels of the CNN's first stage, doubled at "
            "each further stage (DreamerV3's depth).",
        )
        cnn_min_resolution: PositiveInt = Field(
            default=4,
            description="Image observations: the CNN halves the image until both sides are "
            "at most this (DreamerV3: 4).",
        )

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        obs_space, action_space = env_spec.observation_space, env_spec.action_space
        if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) in (1, 3)):
            raise ConfigError(
                "dreamer-world-model needs a 1-D Box (vector) or a 3-D Box (H, W, C image) "
                f"observation space, got {obs_space}"
            )
        self.image = len(obs_space.shape) == 3
        self._image_low: torch.Tensor | None = None
        self._image_range: torch.Tensor | None = None
        if self.image:
            low = torch.as_tensor(obs_space.low, dtype=torch.float32)
            span = torch.as_tensor(obs_space.high, dtype=torch.float32) - low
            if not (torch.isfinite(span).all() and (span > 0).all()):
                raise ConfigError(
                    "dreamer-world-model scales image observations by their Box bounds, "
                    f"which must be finite with high > low, got {obs_space}"
                )
            self._image_low, self._image_range = low, span
        self.encode_actions = ActionEncoding.of(action_space, "dreamer-world-model")
        """One-hot discrete actions, float continuous ones: ``[..., action_dim]``."""
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.nets = WorldModelNetworks(tuple(obs_space.shape), self.encode_actions.dim, config)
        self.optimizer = torch.optim.Adam(self.nets.parameters(), lr=config.lr, eps=1e-8)
        self.max_grad_norm = config.max_grad_norm
        self.source: SequenceSource | None = None

    def networks(self) -> WorldModelNetworks:
        """Every trained module."""
        return self.nets

    def batches(self, global_step: int) -> Iterator[SequenceBatch]:
        """One batch of sequences every ``train_every`` steps after ``learning_starts``."""
        cfg = self.config
        if self.source is None or global_step < cfg.learning_starts:
            return
        if global_step % cfg.train_every == 0:
            yield self.source.sample_sequences(cfg.batch_size, cfg.sequence_length)

    def observation_target(self, obs: torch.Tensor) -> torch.Tensor:
        """What the encoder reads and the decoder reconstructs: ``symlog(x)`` for vectors;
        ``(x - low) / (high - low) - 0.5`` for images, in ``[-0.5, 0.5]`` by the Box's
        bounds (not ``/ 255``: MinAtar's frames are 0/1)."""
        obs = obs.to(torch.float32)
        if self._image_low is None or self._image_range is None:
            return symlog(obs)
        return (obs - self._image_low) / self._image_range - 0.5

    def losses(self, batch: SequenceBatch) -> Losses:
        """The four loss terms of the module docstring on one batch of sequences."""
        nets = self.nets
        target = self.observation_target(batch.obs)
        embed = nets.encoder(target)
        actions = self.encode_actions(batch.actions)
        post, prior, feats = nets.rssm.observe(embed, actions, batch.is_first)
        decoded = nets.decoder(feats)
        kl, _ = balanced_kl_loss(post, prior)
        continues = (~batch.terminated).to(torch.float32)
        error = (decoded - target).pow(2)
        # DreamerV3's image loss sums over H, W and C with no 0.5 (its MSE distribution).
        decoder = error.sum((-3, -2, -1)).mean() if self.image else 0.5 * error.sum(-1).mean()
        return {
            "loss_decoder": decoder,
            "loss_reward": twohot_loss(nets.reward(feats), batch.rewards, nets.bins).mean(),
            "loss_continue": F.binary_cross_entropy_with_logits(
                nets.cont(feats).squeeze(-1), continues
            ),
            "loss_kl": kl.mean(),
        }

    # --- the world_model service ------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Size of :meth:`features`."""
        return self.nets.rssm.feature_dim

    def features(self, state: LatentState) -> torch.Tensor:
        """The feature vector ``[h, z]`` of model states."""
        return self.nets.rssm.features(state)

    def initial(self, batch: int) -> LatentState:
        """The state before an episode's first observation."""
        return self.nets.rssm.initial(batch)

    @torch.no_grad()
    def observe_step(
        self,
        state: LatentState,
        prev_action: torch.Tensor,
        obs: torch.Tensor,
        is_first: torch.Tensor,
    ) -> LatentState:
        """The posterior state after seeing ``obs`` (``[N, *obs_shape]``), for acting.

        ``prev_action`` is the action that led to ``obs``; rows where ``is_first`` is set
        start from :meth:`initial` with a zero action, as in training.
        """
        rssm = self.nets.rssm
        keep = (~is_first).to(torch.float32).unsqueeze(-1)
        state = LatentState(state.deter * keep, state.stoch * keep.unsqueeze(-1))
        deter = rssm.deter_step(state, self.encode_actions(prev_action) * keep)
        embed = self.nets.encoder(self.observation_target(obs))
        return LatentState(deter, rssm.sample(rssm.posterior(deter, embed)))

    @torch.no_grad()
    def observe_sequences(self, batch: SequenceBatch) -> LatentState:
        """Posterior states of every step of replayed sequences, ``[B, T, ...]`` (detached):
        the start states of imagination and the inputs of exploration heads."""
        nets = self.nets
        embed = nets.encoder(self.observation_target(batch.obs))
        _, _, feats = nets.rssm.observe(embed, self.encode_actions(batch.actions), batch.is_first)
        deter, stoch = feats[..., : nets.rssm.deter], feats[..., nets.rssm.deter :]
        shape = (*stoch.shape[:-1], nets.rssm.latents, nets.rssm.classes)
        return LatentState(deter, stoch.reshape(shape))

    def imagine(
        self, start: LatentState, policy: Callable[[torch.Tensor], torch.Tensor], horizon: int
    ) -> dict[str, torch.Tensor]:
        """Roll ``policy`` (features -> action tensor) out in the model from ``start``
        (states with any leading dimensions, taken as ``N`` flattened ones).

        Returns ``features`` ``[H + 1, N, F]`` (the start first), ``actions`` ``[H, N, ...]``,
        and the predicted ``rewards`` and ``continues`` (the continue head's mode, 0 or 1)
        ``[H, N]`` of the imagined states.
        Gradients flow from these into the policy's actions (backprop through the dynamics,
        as Dreamer's continuous actor needs) but never into the model's own parameters:
        the model learns from its losses only, and its ``.grad`` stays untouched.
        """
        rssm = self.nets.rssm
        # Starts may come with leading [B, T] dims (observe_sequences): N = B * T.
        state = LatentState(
            start.deter.reshape(-1, rssm.deter), start.stoch.reshape(-1, rssm.latents, rssm.classes)
        )
        with frozen(self.nets):
            feats, actions = [rssm.features(state)], []
            for _ in range(horizon):
                action = policy(feats[-1])
                state = rssm.imagine_step(state, self.encode_actions(action))
                feats.append(rssm.features(state))
                actions.append(action)
            stacked = torch.stack(feats)
            return {
                "features": stacked,
                "actions": torch.stack(actions),
                "rewards": twohot_mean(self.nets.reward(stacked[1:]), self.nets.bins),
                # The continue head's mode, as DreamerV3's imagination uses it.
                "continues": (self.nets.cont(stacked[1:]).squeeze(-1) > 0).to(torch.float32),
            }


class DreamerWorldModelComponent(Component):
    """The ``dreamer-world-model`` component: trains a :class:`DreamerWorldModel` from the
    replay's sequences and offers the model as the run's ``world_model`` service.

    It needs a replay that serves sequences (every chunked replay does); it gets it in
    :meth:`wire`.
    """

    role = "world_model"
    Config = DreamerWorldModel.Config
    config: DreamerWorldModel.Config

    def __init__(self, config: DreamerWorldModel.Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.model = DreamerWorldModel(config, env_spec)

    def wire(self, services: AgentServices) -> None:
        """Take the replay's sequences to train on.

        Raises:
            ConfigError: no replay serves sequences.
        """
        if services.sequences is None:
            raise ConfigError(
                "dreamer-world-model trains on replayed sequences: configure a replay that "
                "serves them (fifo, reservoir, task-balanced, wmar, continual-dreamer)"
            )
        self.model.source = services.sequences

    def learners(self) -> tuple[DreamerWorldModel]:
        """The world model."""
        return (self.model,)

    def service(self) -> DreamerWorldModel:
        """The model itself fills the ``world_model`` slot."""
        return self.model

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimizer (the sampling generator is torch's global one)."""
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
