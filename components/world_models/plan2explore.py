"""``plan2explore``: ensemble-disagreement exploration for Dreamer-style agents.

Plan2Explore (Sekar et al. 2020, "Planning to Explore via Self-Supervised World Models",
section "Latent disagreement") trains an ensemble of ``K`` one-step models
``q(z_{t+1} | w_k, s_t, a_t)`` on the world model's posterior states with the Gaussian
likelihood, and rewards an imagined transition by how much the members disagree about its
outcome: the paper's ``D(s_t, a_t) = Var_k(mu_k(s_t, a_t))``, which DreamerV2's
implementation (``danijar/dreamerv2``, ``dreamerv2/expl.py``: ``Plan2Explore``, the code
Continual-Dreamer runs, Kessler et al. 2023, ``skezle/continual-dreamer``) computes as the
**standard deviation** across members, averaged over the output dimensions. This module
follows that implementation; its defaults are DreamerV2's ``configs.yaml``:

* targets: the next step's stochastic latent, ``z_{t+1}`` flattened one-hot
  (``disag_target: stoch``), predicted from ``[features_t, a_t]`` (``disag_action_cond:
  True``) by ``disag_models: 10`` heads; the heads are ``expl_head``-sized MLPs (4 layers of
  400 units), built with :func:`~l2rl.components.world_models.rssm.mlp`, so their blocks are
  DreamerV3's Linear, LayerNorm, SiLU where DreamerV2's are Linear, ELU without a norm;
* loss: ``-sum_k mean_t log N(z_{t+1}; mu_k(s_t, a_t), I)``, i.e. ``sum_k mean_t 0.5
  ||mu_k - z_{t+1}||^2`` without the constant ``0.5 D ln 2 pi`` (DreamerV2's ``mse`` head is
  a unit-variance Normal);
* optimizer ``expl_opt``: Adam, lr 3e-4, eps 1e-5, gradient norm clipped to 100, weight
  decay 1e-6 applied as DreamerV2 does (``w <- (1 - 1e-6) w`` before every step: AdamW with
  ``weight_decay = 1e-6 / lr``);
* reward: ``intrinsic_weight * norm_i(disagreement) + extrinsic_weight * norm_e(extrinsic)``
  with a :class:`StreamNorm` each (``expl_reward_norm``: momentum 1.0, which leaves the
  magnitude at 1, so the default normalises nothing), no log (``disag_log: False``).
  DreamerV2's weights are 1.0 / 0.0 (``expl_intr_scale`` / ``expl_extr_scale``); ours
  default to Continual-Dreamer's 0.9 / 0.9 (the ``--expl_intr_scale=0.9
  --expl_extr_scale=0.9`` of its README's Plan2Explore runs).

One deliberate difference in the time alignment: DreamerV2 conditions the heads on the
action stored in the same row as ``s_t`` (``data['action'][t]``, and ``seq['action'][t]`` in
imagination), which in Dreamer's layout is the action that *led to* ``s_t``, so its heads
never see the action whose outcome they predict. Here the input is the action taken *at*
``s_t`` (``actions[:, t + 1]`` of a :class:`~l2rl.types.SequenceBatch`, ``actions[t]`` of an
imagined rollout), as the paper's ``q(. | s_t, a_t)`` defines it, so the reward of the
transition ``t -> t + 1`` lines up with the world model's reward of state ``t + 1``. Pairs
whose step ``t + 1`` starts a new episode are dropped.

The component has role ``exploration`` and offers the
:class:`~l2rl.core.ExplorationService` (:meth:`DisagreementEnsemble.imagined_reward`); its
learner (``learner_name`` "plan2explore") trains beside the world model on its own schedule
of replayed sequences, reading the posteriors of the model as it is at that step (DreamerV2
reuses the world model's batch and the posteriors computed before the model's update).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import AgentServices, Component, Learner, SequenceSource, WorldModelService
from l2rl.dreamer_math import ActionEncoding, mlp
from l2rl.types import EnvSpec, Losses, SequenceBatch

Target = Literal["stoch", "deter", "features"]
"""What the heads predict of the next state: DreamerV2's ``disag_target`` choices that a
latent world model offers (``embed`` needs the encoder, which the service does not expose)."""


class StreamNorm:
    """DreamerV2's ``StreamNorm`` (``dreamerv2/common/other.py``) for scalar rewards.

    Each call first updates a running magnitude ``m <- momentum m + (1 - momentum)
    mean|x|`` (starting at 1), then returns ``scale * x / (m + eps)``. Momentum 1 keeps
    ``m = 1``, so ``x`` passes through unchanged (DreamerV2's default); momentum 0
    normalises by the current batch alone. The magnitude is a statistic, not a function
    the reward is differentiated through: gradients flow through ``x`` only.

    >>> norm = StreamNorm(momentum=0.0)
    >>> norm(torch.tensor([1.0, -3.0])).tolist()
    [0.5, -1.5]
    """

    def __init__(self, momentum: float = 1.0, scale: float = 1.0, eps: float = 1e-8) -> None:
        self.momentum, self.scale, self.eps = momentum, scale, eps
        # float64 as in DreamerV2, so a long run's running average does not drift.
        self.mag = torch.ones((), dtype=torch.float64)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Update the magnitude with ``values``, then normalise them."""
        self.update(values)
        return self.transform(values)

    def update(self, values: torch.Tensor) -> None:
        """Move the running magnitude towards ``mean |values|``."""
        if self.momentum == 1.0:
            # 1 * m + 0 * mean|x| is m, except that a non-finite batch would turn it NaN.
            return
        batch = values.detach().abs().mean().to(torch.float64)
        self.mag = self.momentum * self.mag + (1.0 - self.momentum) * batch

    def transform(self, values: torch.Tensor) -> torch.Tensor:
        """``scale * values / (magnitude + eps)``."""
        return values / (self.mag.to(values.dtype) + self.eps) * self.scale

    def state_dict(self) -> dict[str, Any]:
        """The running magnitude."""
        return {"mag": self.mag.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.mag = state["mag"].to(torch.float64).clone()


@dataclass(frozen=True)
class EnsemblePairs:
    """Training pairs of the ensemble, one row per valid ``(t, t + 1)`` step of a batch.

    Attributes:
        inputs: ``[features_t, a_t]`` (or ``features_t`` alone), ``[N, input_dim]``.
        targets: what the heads predict of step ``t + 1``, ``[N, target_dim]``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


class EnsembleHeads(nn.Module):
    """``K`` independent MLP heads; ``forward`` stacks their predictions ``[K, ..., out]``.

    Args:
        count: ``K``.
        in_dim: size of the inputs.
        out_dim: size of each prediction.
        units: hidden width.
        layers: hidden layers (0: each head is one linear map).
    """

    def __init__(self, count: int, in_dim: int, out_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(mlp(in_dim, units, layers, out_dim) for _ in range(count))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every member's prediction for ``inputs`` ``[..., in_dim]``: ``[K, ..., out_dim]``."""
        return torch.stack([member(inputs) for member in self.members])


def _merge_batch_dims(state: Any) -> Any:
    """A ``[B, T]`` dataclass state as ``B * T`` states (every tensor field flattened).

    World-model states are batched along their leading dimension (the service's contract),
    and the RSSM's :meth:`~l2rl.components.world_models.rssm.RSSM.features` flattens ``z``
    from dimension 1, so the ``[B, T]`` states of
    :meth:`~l2rl.core.WorldModelService.observe_sequences` go in as ``B * T`` states. States
    that are not dataclasses are passed through for the model to handle.
    """
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        return state
    merged = {
        f.name: value.flatten(0, 1)
        for f in dataclasses.fields(state)
        if isinstance(value := getattr(state, f.name), torch.Tensor)
    }
    return dataclasses.replace(state, **merged)


class DisagreementEnsemble(Learner):
    """Plan2Explore's ensemble: its learner, and the ``exploration`` service.

    The heads' sizes come from the world model (its feature size and the size of the
    chosen target), so they are built when the component is wired (:meth:`bind`), or when
    a saved state is loaded into an unwired instance (the state records the sizes).

    Args:
        config: the component's options.
        env_spec: ``Discrete`` actions are encoded one-hot, 1-D ``Box`` actions as floats.
    """

    learner_name = "plan2explore"

    class Config(PluginConfig):
        """Ensemble, reward and schedule (DreamerV2's ``configs.yaml`` unless noted)."""

        ensemble_size: int = Field(
            default=10, ge=2, description="Heads K (disag_models); disagreement needs 2."
        )
        units: PositiveInt = Field(default=400, description="Hidden width of each head.")
        layers: int = Field(default=4, ge=0, description="Hidden layers of each head.")
        target: Target = Field(
            default="stoch",
            description="What the heads predict of the next state (disag_target): the "
            "flattened one-hot z, the deterministic h, or the model's features.",
        )
        action_conditioned: bool = Field(
            default=True, description="Heads read the action too (disag_action_cond)."
        )
        log_disagreement: bool = Field(
            default=False, description="Reward log(disagreement) instead (disag_log)."
        )
        intrinsic_weight: float = Field(
            default=0.9,
            ge=0.0,
            description="Weight of the normalised disagreement (Continual-Dreamer 0.9; "
            "DreamerV2 expl_intr_scale 1.0).",
        )
        extrinsic_weight: float = Field(
            default=0.9,
            ge=0.0,
            description="Weight of the normalised extrinsic reward (Continual-Dreamer 0.9; "
            "DreamerV2 expl_extr_scale 0.0).",
        )
        norm_momentum: float = Field(
            default=1.0,
            ge=0.0,
            le=1.0,
            description="StreamNorm momentum of both rewards (expl_reward_norm); 1 = off.",
        )
        norm_scale: float = Field(default=1.0, gt=0.0, description="StreamNorm scale.")
        norm_eps: float = Field(default=1e-8, gt=0.0, description="StreamNorm epsilon.")
        lr: float = Field(default=3e-4, gt=0.0, description="Adam learning rate (expl_opt).")
        adam_eps: float = Field(default=1e-5, gt=0.0, description="Adam epsilon (expl_opt).")
        weight_decay: float = Field(
            default=1e-6,
            ge=0.0,
            lt=1.0,
            description="Decoupled decay per step, w <- (1 - wd) w (expl_opt wd).",
        )
        max_grad_norm: float = Field(default=100.0, gt=0.0, description="Gradient clip.")
        batch_size: PositiveInt = Field(
            default=16, description="Sequences per batch (as the world model's default)."
        )
        sequence_length: int = Field(
            default=64, ge=2, description="Steps per sequence (as the world model's default)."
        )
        train_every: PositiveInt = Field(default=5, description="Env steps between updates.")
        learning_starts: int = Field(default=1000, ge=0, description="Steps before training.")
        seed: int = Field(default=0, description="Seeds the heads' initialisation.")

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        self.encode_actions = ActionEncoding.of(env_spec.action_space, "plan2explore")
        """One-hot discrete actions (indices), float continuous ones: ``[..., dim]``."""
        self.config = config
        self.max_grad_norm = config.max_grad_norm
        self.heads: EnsembleHeads | None = None
        self.sizes: dict[str, int] | None = None
        self.world_model: WorldModelService | None = None
        self.source: SequenceSource | None = None
        norm = {"momentum": config.norm_momentum, "scale": config.norm_scale}
        self.intrinsic_norm = StreamNorm(**norm, eps=config.norm_eps)
        self.extrinsic_norm = StreamNorm(**norm, eps=config.norm_eps)

    # --- construction -----------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the heads and the optimizer exist (after :meth:`bind` or a load)."""
        return self.heads is not None

    def build(self, feature_dim: int, target_dim: int) -> None:
        """Create the heads for ``feature_dim`` features and ``target_dim`` targets, and the
        optimizer (seeded by ``config.seed``, leaving torch's global generator as it was)."""
        cfg = self.config
        in_dim = feature_dim + (self.encode_actions.dim if cfg.action_conditioned else 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.heads = EnsembleHeads(cfg.ensemble_size, in_dim, target_dim, cfg.units, cfg.layers)
        # DreamerV2 decays w <- (1 - wd) w before each Adam step; AdamW's decay is
        # w <- (1 - lr * weight_decay) w, also before the step.
        self.optimizer = torch.optim.AdamW(
            self.heads.parameters(),
            lr=cfg.lr,
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay / cfg.lr,
        )
        self.sizes = {"feature_dim": feature_dim, "target_dim": target_dim}

    def bind(self, world_model: WorldModelService, source: SequenceSource) -> None:
        """Train on ``source``'s sequences through ``world_model``; build the heads for it.

        Raises:
            ConfigError: the model's states have no tensor named like the target.
        """
        probe = world_model.initial(1)
        target = self.config.target
        if target != "features" and not isinstance(getattr(probe, target, None), torch.Tensor):
            raise ConfigError(
                f"plan2explore's target {target!r} needs world-model states with a {target!r} "
                f"tensor (DreamerV3-style RSSM states), but {type(probe).__name__} has none; "
                "set target: features for this world model"
            )
        self.world_model, self.source = world_model, source
        feature_dim = int(world_model.features(probe).reshape(1, -1).shape[1])
        target_dim = int(self._targets(probe).reshape(1, -1).shape[1])
        if self.built:
            self._check_sizes({"feature_dim": feature_dim, "target_dim": target_dim})
        else:
            self.build(feature_dim, target_dim)

    def _check_sizes(self, sizes: Mapping[str, int]) -> None:
        if dict(sizes) != self.sizes:
            raise ValueError(f"plan2explore's heads are sized {self.sizes}, not {dict(sizes)}")

    def networks(self) -> EnsembleHeads:
        """The heads (every trained parameter).

        Raises:
            RuntimeError: not built yet (wire the component first).
        """
        if self.heads is None:
            raise RuntimeError("plan2explore's heads are built when it is wired to a world model")
        return self.heads

    # --- training ---------------------------------------------------------------------
    def _targets(self, state: Any) -> torch.Tensor:
        """The configured target of (leading-batch) states ``state``."""
        if self.config.target == "features":
            assert self.world_model is not None
            return self.world_model.features(state)
        value: torch.Tensor = getattr(state, self.config.target)
        return value

    def training_pairs(self, batch: SequenceBatch) -> EnsemblePairs:
        """The ensemble's ``(input, target)`` rows of replayed sequences (detached).

        Row ``t`` of ``batch`` holds ``obs_t`` with the action that led to it, so the action
        taken at ``obs_t`` is ``actions[:, t + 1]``: the pair of steps ``(t, t + 1)`` is
        ``[features_t, a_t] -> target_{t + 1}``, kept only where ``obs_{t + 1}`` does not start
        a new episode (across that boundary ``t + 1`` does not follow from ``t``).
        """
        if self.world_model is None:
            raise RuntimeError("plan2explore needs a world model: wire the component first")
        b, t = batch.is_first.shape
        with torch.no_grad():
            flat = _merge_batch_dims(self.world_model.observe_sequences(batch))
            features = self.world_model.features(flat).reshape(b, t, -1).to(torch.float32)
            targets = self._targets(flat).reshape(b, t, -1).to(torch.float32)
        inputs = features[:, :-1]
        if self.config.action_conditioned:
            inputs = torch.cat([inputs, self.encode_actions(batch.actions[:, 1:])], dim=-1)
        valid = ~batch.is_first[:, 1:]
        return EnsemblePairs(inputs[valid], targets[:, 1:][valid])

    def batches(self, global_step: int) -> Iterator[EnsemblePairs]:
        """Pairs from one batch of sequences every ``train_every`` steps after
        ``learning_starts``; none when every pair of the batch crosses an episode start."""
        cfg = self.config
        if self.source is None or global_step < cfg.learning_starts:
            return
        if global_step % cfg.train_every == 0:
            pairs = self.training_pairs(
                self.source.sample_sequences(cfg.batch_size, cfg.sequence_length)
            )
            if len(pairs):
                yield pairs

    def losses(self, batch: EnsemblePairs) -> Losses:
        """``loss_ensemble = sum_k mean_rows 0.5 ||mu_k(x) - y||^2``: the negative
        unit-variance Gaussian log-likelihood of the targets without its constant, summed
        over heads as DreamerV2 does (each head's gradient is its own term's)."""
        predictions = self.networks()(batch.inputs)  # [K, N, target_dim]
        squared = 0.5 * (predictions - batch.targets).pow(2).sum(-1)
        return {"loss_ensemble": squared.mean(-1).sum()}

    # --- the exploration service --------------------------------------------------------
    def disagreement(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """How much the heads disagree about the step after ``(features, actions)``.

        The standard deviation across the ``K`` heads' predictions (the population one,
        dividing by ``K``, as ``tf.math.reduce_std`` in DreamerV2), averaged over the
        prediction's dimensions; its log when ``log_disagreement``. ``features``
        ``[..., F]``, ``actions`` ``[...]`` (discrete indices) or ``[..., A]``; returns
        ``[...]``. Gradients reach ``features`` and ``actions`` (as far as their encoding is
        differentiable) but never the heads' parameters.
        """
        inputs = features
        if self.config.action_conditioned:
            encoded = self.encode_actions(actions).to(features.dtype)
            inputs = torch.cat([features, encoded], dim=-1)
        heads = self.networks()
        # Detached copies of the parameters: the graph gets them as constants, so the
        # actor's backward never writes into the heads' .grad, and nothing is toggled on
        # the heads themselves (nothing to restore if the caller's code raises).
        frozen = {name: p.detach() for name, p in heads.named_parameters()}
        predictions: torch.Tensor = torch.func.functional_call(heads, frozen, (inputs,))
        disagreement = predictions.std(dim=0, correction=0).mean(-1)
        if self.config.log_disagreement:
            disagreement = disagreement.log()
        return disagreement

    def imagined_reward(
        self, features: torch.Tensor, actions: torch.Tensor, extrinsic: torch.Tensor
    ) -> torch.Tensor:
        """The reward an exploring agent trains on in an imagined rollout, ``[H, N]``.

        ``intrinsic_weight * norm_i(D_t) + extrinsic_weight * norm_e(extrinsic_t)``, where
        ``D_t`` is the :meth:`disagreement` about step ``t + 1`` from ``features[t]`` and
        ``actions[t]`` (the action leading from ``t`` to ``t + 1``), so it is the reward of
        state ``t + 1``, like ``extrinsic[t]``. Each call updates both normalisers first
        (DreamerV2); with ``extrinsic_weight == 0`` the extrinsic term and its normaliser
        are skipped, also as DreamerV2 does.

        Args:
            features: ``[H + 1, N, F]``, the start state first.
            actions: ``[H, N]`` discrete indices or ``[H, N, A]``.
            extrinsic: ``[H, N]``, the world model's reward of states ``1..H``.

        Raises:
            ValueError: the shapes do not line up.
        """
        expected = (actions.shape[0], *features.shape[1:-1])  # (H, N)
        if (
            features.shape[0] != expected[0] + 1
            or tuple(extrinsic.shape) != expected
            or tuple(actions.shape[: len(expected)]) != expected
        ):
            raise ValueError(
                "imagined_reward needs features [H + 1, N, F], actions [H, N, ...] and "
                f"extrinsic [H, N]; got {tuple(features.shape)}, {tuple(actions.shape)} and "
                f"{tuple(extrinsic.shape)}"
            )
        cfg = self.config
        reward = cfg.intrinsic_weight * self.intrinsic_norm(
            self.disagreement(features[:-1], actions)
        )
        if cfg.extrinsic_weight:
            reward = reward + cfg.extrinsic_weight * self.extrinsic_norm(extrinsic)
        return reward

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Sizes, heads, optimizer and both normalisers (sizes ``None`` before building)."""
        state: dict[str, Any] = {
            "sizes": None if self.sizes is None else dict(self.sizes),
            "intrinsic_norm": self.intrinsic_norm.state_dict(),
            "extrinsic_norm": self.extrinsic_norm.state_dict(),
        }
        if self.heads is not None:
            state["networks"] = self.heads.state_dict()
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, building the heads if needed.

        Raises:
            ValueError: the heads are already built with other sizes.
        """
        sizes = state["sizes"]
        if sizes is not None:
            if self.built:
                self._check_sizes(sizes)
            else:
                self.build(int(sizes["feature_dim"]), int(sizes["target_dim"]))
            self.networks().load_state_dict(state["networks"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.intrinsic_norm.load_state_dict(state["intrinsic_norm"])
        self.extrinsic_norm.load_state_dict(state["extrinsic_norm"])


class Plan2Explore(Component):
    """The ``plan2explore`` component: trains a :class:`DisagreementEnsemble` on the world
    model's posterior states of replayed sequences, and offers it as the run's
    ``exploration`` service (:meth:`DisagreementEnsemble.imagined_reward`).

    It needs a world model (role ``world_model``) and a replay that serves sequences; it
    gets both in :meth:`wire`.
    """

    role = "exploration"
    Config = DisagreementEnsemble.Config
    config: DisagreementEnsemble.Config

    def __init__(self, config: DisagreementEnsemble.Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.ensemble = DisagreementEnsemble(config, env_spec)

    def wire(self, services: AgentServices) -> None:
        """Take the world model and the replay's sequences; build the heads for the model.

        Raises:
            ConfigError: no world model, or no replay serving sequences, or a world model
                whose states lack the configured target.
        """
        world_model, sequences = services.world_model, services.sequences
        missing = []
        if world_model is None:
            missing.append("a world model (role world_model, e.g. dreamer-world-model)")
        if sequences is None:
            missing.append(
                "a replay that serves sequences (fifo, reservoir, task-balanced, wmar, "
                "continual-dreamer)"
            )
        if world_model is None or sequences is None:
            raise ConfigError(
                "plan2explore trains its ensemble on a world model's states of replayed "
                "sequences; configure " + " and ".join(missing)
            )
        self.ensemble.bind(world_model, sequences)

    def learners(self) -> tuple[DisagreementEnsemble, ...]:
        """The ensemble, once built (wired, or loaded from a state)."""
        return (self.ensemble,) if self.ensemble.built else ()

    def service(self) -> DisagreementEnsemble:
        """The ensemble fills the ``exploration`` slot."""
        return self.ensemble

    def state_dict(self) -> dict[str, Any]:
        """The ensemble's state (heads, optimizer, normalisers)."""
        return {"ensemble": self.ensemble.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.ensemble.load_state_dict(state["ensemble"])
