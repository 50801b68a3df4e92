"""``hypercrl``: a task-conditioned hypernetwork that generates an agent's target network.

HyperCRL (Huang, Xie, Feng, Shkurti 2020, "Continual Model-Based Reinforcement Learning
with Hypernetworks", arXiv:2009.11997; code rvl-lab-utoronto/HyperCRL) generates the
weights of a network with a hypernetwork (:class:`~.network.HyperNetwork`),
``W_t = h(e_t, Theta)``, one learned embedding ``e_t`` in ``R^10`` (``N(0, 1)`` at creation)
per task. Learning task ``T`` minimises (paper eq. 4, von Oswald et al. 2020 eq. 2)

    L_task(f(x; h(e_T, Theta)))
        + beta * B * (1 / |P|) sum_{t in P} || h(e_t, Theta*) - h(e_t, Theta + dTheta) ||^2

over ``Theta`` and ``e_T``, ``P`` the earlier tasks. ``h(e_t, Theta*)`` are the outputs
stored when task ``T`` started, ``dTheta`` the step the ``Theta`` optimiser would take on
the task loss alone (the look-ahead, detached: :func:`adam_look_ahead`), and ``B`` the
agent's :attr:`loss_scale` (HyperCRL's task loss sums over its minibatch, so the code
multiplies the regulariser by the batch size). Earlier embeddings are frozen. As in
``hypercrl/hnet_exp.py``: two Adam optimisers created afresh at every task start, one
for ``Theta`` and one for the current embedding (lr 1e-4 each), the embedding trained on
the task loss only, each gradient clipped to norm 5 on its own; ``beta`` 0.05, or 0.005
for the chunked hypernetwork, which also lets earlier embeddings move (``e_t + de_t`` in
the regulariser, the embeddings in the ``Theta`` optimiser).

Wiring. The agent calls :meth:`HyperCRL.bind` with its target module and runs it through
``torch.func.functional_call`` with :meth:`HyperCRL.weights`, so its losses reach
``Theta`` and ``e_T``. The two optimisers belong to two learners ("hypernetwork" and
"hypernetwork-embedding") that :attr:`~l2rl.core.Learner.trains_with` the agent: every
agent update steps them. The regulariser's gradient is added in ``after_backward``, once
the task loss's gradient (which ``dTheta`` needs) exists, exactly where HyperCRL calls its
second ``backward``; its value is logged as ``train/hypernetwork/loss_output_regularizer``.

Tasks. Embeddings are kept per task index (a cycle reuses its task's embedding; inferred
tasks of a task-agnostic run with a detector work the same way). A task evaluated before
it trains has no embedding; it is evaluated with the embedding being trained (before any
training: the first task's, untrained), i.e. with the weights the agent acts with now.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from l2rl.config import PluginConfig
from l2rl.core import Component, Learner, RunContext
from l2rl.types import EnvSpec, Losses, TaskInfo

from .network import HyperNetwork


def adam_look_ahead(optimizer: torch.optim.Optimizer) -> dict[int, Tensor]:
    """The change ``optimizer.step()`` would make now, without making it (detached).

    For each parameter with a gradient, Adam's update (Kingma & Ba 2015, Algorithm 1) from
    its current state: ``m' = b1 m + (1 - b1) g``, ``v' = b2 v + (1 - b2) g^2`` and
    ``dtheta = -lr / (1 - b1^t) * m' / (sqrt(v') / sqrt(1 - b2^t) + eps)`` at step ``t``,
    as ``torch.optim.Adam`` computes it (HyperCRL's ``optim_step.adam_step``).

    Returns:
        ``id(parameter) -> dtheta`` for the parameters that have a gradient.

    Raises:
        TypeError: not a plain Adam (no AMSGrad, weight decay or maximisation).
    """
    if type(optimizer) is not torch.optim.Adam:
        raise TypeError(f"the look-ahead step is Adam's; got {type(optimizer).__name__}")
    deltas: dict[int, Tensor] = {}
    for group in optimizer.param_groups:
        if group["amsgrad"] or group["weight_decay"] or group["maximize"]:
            raise TypeError("the look-ahead step supports plain Adam only")
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = param.grad.detach()
            state = optimizer.state.get(param, {})
            step = float(state["step"]) + 1.0 if state else 1.0
            exp_avg = state["exp_avg"] if state else torch.zeros_like(grad)
            exp_avg_sq = state["exp_avg_sq"] if state else torch.zeros_like(grad)
            m = beta1 * exp_avg + (1.0 - beta1) * grad
            v = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
            denom = v.sqrt() / math.sqrt(1.0 - beta2**step) + group["eps"]
            deltas[id(param)] = -group["lr"] / (1.0 - beta1**step) * m / denom
    return deltas


def output_regularizer(
    network: HyperNetwork,
    embeddings: Mapping[int, Tensor],
    targets: Mapping[int, Mapping[str, Tensor]],
    theta_delta: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """``(1 / |P|) sum_{t in P} || target_t - h(e_t, Theta + dTheta) ||^2`` over all tensors.

    Args:
        network: the hypernetwork ``h``.
        embeddings: ``e_t`` (moved by ``de_t`` already, where they move) per task ``t``.
        targets: the stored outputs ``h(e_t, Theta*)`` per task; the same keys.
        theta_delta: ``dTheta`` by name of ``network.theta``'s parameters, or ``None``.
    """
    if set(embeddings) != set(targets) or not targets:
        raise ValueError(
            f"need one embedding per stored target: embeddings for {sorted(embeddings)}, "
            f"targets for {sorted(targets)}"
        )
    total = torch.zeros(())
    for task, target in targets.items():
        generated = network(embeddings[task], theta_delta)
        total = total + sum((target[n] - generated[n]).pow(2).sum() for n in target)
    return total / len(targets)


class _ParameterView(nn.Module):
    """A module that holds given parameters (shared, not copied): a learner's networks()."""

    def __init__(self, **parts: nn.Module | nn.Parameter | list[nn.Parameter]) -> None:
        super().__init__()
        for name, part in parts.items():
            if isinstance(part, list):
                setattr(self, name, nn.ParameterList(part))
            else:
                setattr(self, name, part)


class _HyperLearner(Learner):
    """One of the hypernetwork's two optimisers; it has no batches of its own: it steps
    with every update of the learner it trains with (:attr:`Learner.trains_with`)."""

    def __init__(self, name: str, trains_with: str, max_grad_norm: float) -> None:
        self.learner_name = name
        self.trains_with = trains_with
        self.max_grad_norm = max_grad_norm
        self.view: nn.Module = nn.Module()
        self.optimizer = torch.optim.Adam([{"params": []}])

    def batches(self, global_step: int) -> Iterator[Any]:
        return iter(())

    def losses(self, batch: Any) -> Losses:
        raise RuntimeError(f"{self.learner_name} trains through {self.trains_with}'s losses")

    def networks(self) -> nn.Module:
        return self.view


class HyperCRL(Component):
    """Component ``hypercrl`` (role ``hypernetwork``): see the module docstring.

    It offers the ``weights`` service (:class:`~l2rl.core.WeightService`). Its learners
    train with the learner it is aimed at (``learner``, the agent by default).
    """

    role = "hypernetwork"

    class Config(PluginConfig):
        """HyperCRL's settings (``hypercrl/tools/default_arg.py``)."""

        embedding_dim: PositiveInt = Field(default=10, description="Size of each e_t.")
        embedding_std: float = Field(
            default=1.0, gt=0.0, description="e_t ~ N(0, std^2) when a task is first seen."
        )
        hidden: list[PositiveInt] = Field(
            default=[16, 16],
            min_length=1,
            description="Hidden widths of h (HyperCRL: [16, 16] for a [32, 32] target, "
            "[50, 50] for [200, 200], [128, 128] for [256, 256]; chunked [20, 20] for "
            "[200, 200]).",
        )
        chunk_dim: PositiveInt | None = Field(
            default=None,
            description="Outputs per chunk for the chunked hypernetwork (HyperCRL: 2000 for "
            "a [200, 200] target); null: one head per target tensor.",
        )
        chunk_embedding_dim: PositiveInt = Field(
            default=20, description="Size of each chunk embedding (chunked only)."
        )
        beta: float | None = Field(
            default=None,
            ge=0.0,
            description="Weight of the output regulariser; null: HyperCRL's 0.05, or 0.005 "
            "chunked.",
        )
        lr: float = Field(default=1e-4, gt=0.0, description="Adam lr of Theta and e_t.")
        max_grad_norm: float = Field(
            default=5.0, gt=0.0, description="Gradient clip of Theta and of e_t, each."
        )
        look_ahead: bool = Field(
            default=True, description="Regularise h(e_t, Theta + dTheta); false: dTheta = 0."
        )
        plastic_previous_embeddings: bool | None = Field(
            default=None,
            description="Let earlier embeddings move (trained by the regulariser only); "
            "null: HyperCRL's choice, true chunked and false whole.",
        )
        log_every_updates: PositiveInt = Field(
            default=100, description="Log the regulariser every this many of its updates."
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        chunked = config.chunk_dim is not None
        self.beta = config.beta if config.beta is not None else (0.005 if chunked else 0.05)
        plastic = config.plastic_previous_embeddings
        self.plastic = chunked if plastic is None else plastic
        self.network: HyperNetwork | None = None
        self.embeddings = nn.ParameterList()
        self.loss_scale = 1.0
        self.slots: dict[int, int] = {}
        """Task index -> position of its embedding in :attr:`embeddings`."""
        self.current = 0
        """Position of the embedding being trained (or claimed next, before any task)."""
        self.targets: dict[int, dict[str, Tensor]] = {}
        """Embedding position -> ``h(e_t, Theta*)`` stored at the current task's start."""
        self._claimed = False
        self._regularized = 0
        self.theta_learner = _HyperLearner("hypernetwork", self.learner, config.max_grad_norm)
        self.embedding_learner = _HyperLearner(
            "hypernetwork-embedding", self.learner, config.max_grad_norm
        )

    # --- the weights service ----------------------------------------------------------
    @property
    def bound(self) -> bool:
        """Whether :meth:`bind` was called (or a state loaded)."""
        return self.network is not None

    def bind(self, target: nn.Module, loss_scale: float) -> None:
        """Build ``h`` for ``target``'s parameters and the first task's embedding.

        Binding again to a target of the same shapes and scale changes nothing (a second
        agent built on the same services, as a restore check builds one).

        Raises:
            RuntimeError: already bound to another target (one per hypernetwork).
            ValueError: ``loss_scale`` is not positive, or ``target`` has no parameters.
        """
        shapes = {name: p.shape for name, p in target.named_parameters()}
        if self.network is not None:
            if self.network.target_shapes == shapes and self.loss_scale == loss_scale:
                return
            raise RuntimeError(
                f"component {self.name!r} already generates a target network of shapes "
                f"{dict(self.network.target_shapes)} (loss_scale {self.loss_scale})"
            )
        self._build(shapes, loss_scale)
        self._add_embedding()
        self._rebuild_learners()

    def _build(self, shapes: Mapping[str, torch.Size], loss_scale: float) -> None:
        if loss_scale <= 0:
            raise ValueError(f"loss_scale must be positive, got {loss_scale}")
        c = self.config
        self.network = HyperNetwork(
            shapes, c.embedding_dim, c.hidden, c.chunk_dim, c.chunk_embedding_dim
        )
        self.loss_scale = float(loss_scale)

    def weights(self, task: int | None) -> dict[str, Tensor]:
        """``h(e_task, Theta)``; a task without an embedding (or ``None``) gets the one
        being trained."""
        network = self._bound()
        slot = self.current if task is None else self.slots.get(task, self.current)
        generated: dict[str, Tensor] = network(self.embeddings[slot])
        return generated

    def _bound(self) -> HyperNetwork:
        if self.network is None:
            raise RuntimeError(
                f"component {self.name!r} has no target network: the agent must call "
                "bind(target, loss_scale) (does the agent support the weights service?)"
            )
        return self.network

    # --- tasks ------------------------------------------------------------------------
    def _add_embedding(self) -> None:
        emb = torch.randn(self.config.embedding_dim) * self.config.embedding_std
        self.embeddings.append(nn.Parameter(emb))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Claim (or create) the task's embedding, store the outputs for every other
        task's embedding and restart both optimisers."""
        network = self._bound()
        if task.index in self.slots:
            self.current = self.slots[task.index]
        else:
            if self._claimed:
                self._add_embedding()
                self.current = len(self.embeddings) - 1
            self.slots[task.index] = self.current
            self._claimed = True
        with torch.no_grad():
            self.targets = {
                slot: {n: w.detach().clone() for n, w in network(self.embeddings[slot]).items()}
                for slot in self.slots.values()
                if slot != self.current
            }
        self._rebuild_learners()

    def _rebuild_learners(self) -> None:
        """Freeze or free each embedding and give both learners fresh Adams (HyperCRL
        creates both optimisers anew at every task)."""
        network = self._bound()
        current = self.embeddings[self.current]
        previous = [e for i, e in enumerate(self.embeddings) if i != self.current]
        for emb in previous:
            emb.requires_grad_(self.plastic)
            emb.grad = None  # its last task's; no optimizer of this task applies it
        current.requires_grad_(True)
        moving = previous if self.plastic else []
        self.theta_learner.view = _ParameterView(theta=network.theta, previous=moving)
        self.theta_learner.optimizer = torch.optim.Adam(
            [*network.theta.parameters(), *moving], lr=self.config.lr
        )
        self.embedding_learner.view = _ParameterView(current=current)
        self.embedding_learner.optimizer = torch.optim.Adam([current], lr=self.config.lr)

    # --- the regulariser --------------------------------------------------------------
    def after_backward(self, ctx: RunContext) -> None:
        """Add ``beta * B * reg`` 's gradient to the task loss's (see the module docstring)."""
        if not self.targets or self.beta == 0.0:
            return
        network = self._bound()
        names = {id(p): n for n, p in network.theta.named_parameters()}
        deltas = adam_look_ahead(self.theta_learner.optimizer) if self.config.look_ahead else {}
        theta_delta = {names[k]: d for k, d in deltas.items() if k in names}
        embeddings = {}
        for slot in self.targets:
            emb = self.embeddings[slot]
            embeddings[slot] = emb + deltas[id(emb)] if id(emb) in deltas else emb
        reg = output_regularizer(network, embeddings, self.targets, theta_delta)
        (self.beta * self.loss_scale * reg).backward()  # type: ignore[no-untyped-call]
        self._regularized += 1
        if self._regularized % self.config.log_every_updates == 0:
            tag = f"train/{self.theta_learner.learner_name}/loss_output_regularizer"
            ctx.logger.scalar(tag, float(reg.detach()), ctx.global_step)

    # --- learners and state -----------------------------------------------------------
    def learners(self) -> tuple[Learner, Learner]:
        """The ``Theta`` learner and the current embedding's learner."""
        self._bound()
        return (self.theta_learner, self.embedding_learner)

    def state_dict(self) -> dict[str, Any]:
        """``Theta``, every embedding, the task map, stored targets and both optimisers."""
        network = self._bound()
        return {
            "target_shapes": {n: list(shape) for n, shape in network.target_shapes.items()},
            "loss_scale": self.loss_scale,
            "theta": network.theta.state_dict(),
            "embeddings": [e.detach().clone() for e in self.embeddings],
            "slots": dict(self.slots),
            "current": self.current,
            "claimed": self._claimed,
            "targets": self.targets,
            "regularized": self._regularized,
            "theta_optimizer": self.theta_learner.optimizer.state_dict(),
            "embedding_optimizer": self.embedding_learner.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; an instance not bound yet is built
        for the target the state was saved with (``bind`` would then refuse a second).

        Raises:
            ValueError: bound to a target of other shapes than the saved one.
        """
        shapes = {n: torch.Size(shape) for n, shape in state["target_shapes"].items()}
        if self.network is None:
            self._build(shapes, float(state["loss_scale"]))
        network = self._bound()
        if network.target_shapes != shapes:
            raise ValueError(
                f"component {self.name!r} generates {dict(network.target_shapes)}, but the "
                f"state was saved for {shapes}"
            )
        self.loss_scale = float(state["loss_scale"])
        network.theta.load_state_dict(state["theta"])
        self.embeddings = nn.ParameterList(nn.Parameter(e.clone()) for e in state["embeddings"])
        self.slots = {int(k): int(v) for k, v in state["slots"].items()}
        self.current = int(state["current"])
        self._claimed = bool(state["claimed"])
        self.targets = {int(k): dict(v) for k, v in state["targets"].items()}
        self._regularized = int(state["regularized"])
        self._rebuild_learners()
        self.theta_learner.optimizer.load_state_dict(state["theta_optimizer"])
        self.embedding_learner.optimizer.load_state_dict(state["embedding_optimizer"])
