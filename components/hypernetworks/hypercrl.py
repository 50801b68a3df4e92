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

Task inference (``infer_task``; our rule, HyperCRL itself is task-aware). In a
task-agnostic run without a detector the component keeps the last ``infer_window``
transitions and, every ``infer_every`` steps, scores each embedding by the agent's own
loss on them with that embedding's generated network (:meth:`HyperCRL.loss_with`). The
embedding being trained stays while its loss is at most ``new_task_factor`` times its loss
at its last check. Otherwise the data changed: the embedding with the lowest loss takes
over if that loss is below the current one's by more than the factor (a task seen
before), and else a new embedding is added (a new task). Either change stores the
targets and restarts the optimisers as a task start does; the embedding left, which trained
on the new data until the check, is restored to its value at its last fitting check and
held to its outputs of then (not to those it drifted to). Losses are compared from
``infer_loss_floor`` up: a task fitted to a loss of 1e-19 would otherwise read float
noise at its next check as a change of data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Component, Learner, RunContext
from l2rl.types import EnvSpec, Losses, Step, TaskInfo, TransitionBatch

from ..replay.transitions import TransitionArrays
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
            # Written with as few full-size temporaries as possible: a hypernetwork's
            # Theta is large, and these run on every update.
            m = torch.lerp(exp_avg, grad, 1.0 - beta1)
            denom = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1.0 - beta2)
            denom.sqrt_().div_(math.sqrt(1.0 - beta2**step)).add_(group["eps"])
            deltas[id(param)] = m.div_(denom).mul_(-group["lr"] / (1.0 - beta1**step))
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
    theta = network.moved_theta(theta_delta) if theta_delta else None
    total = torch.zeros(())
    for task, target in targets.items():
        generated = network.generate(embeddings[task], theta)
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
        infer_task: bool = Field(
            default=False,
            description="Task-agnostic runs without a detector: choose the embedding by how "
            "well its generated network fits recent transitions, adding one when none does.",
        )
        infer_every: PositiveInt = Field(
            default=200, description="Env steps between embedding choices (infer_task)."
        )
        infer_window: PositiveInt = Field(
            default=200, description="Recent transitions the choice is scored on (infer_task)."
        )
        new_task_factor: float = Field(
            default=3.0,
            gt=1.0,
            description="The data changed when the trained embedding's loss exceeds this times "
            "its last one; another embedding takes over if its loss is this much lower, else a "
            "new one is added (infer_task).",
        )
        infer_loss_floor: float = Field(
            default=1e-4,
            ge=0.0,
            description="Losses below this count as this in the choice (a fitted task's loss "
            "is float noise; infer_task).",
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
        self.recent = (
            TransitionArrays.for_spec(config.infer_window, env_spec) if config.infer_task else None
        )
        """The last ``infer_window`` transitions (``infer_task`` only)."""
        self.baselines: dict[int, float] = {}
        """Embedding -> the agent's loss on recent transitions at its last check as the
        embedding trained (``infer_task``)."""
        self._since_inference = 0
        self._last_good: tuple[int, Tensor, dict[str, Tensor]] | None = None
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
        if task.index in self.slots:
            slot = self.slots[task.index]
        else:
            slot = self._new_slot()
            self.slots[task.index] = slot
        self._switch_to(slot)

    def _new_slot(self) -> int:
        """The first task's pending embedding, or a new one."""
        if self._claimed:
            self._add_embedding()
        self._claimed = True
        return len(self.embeddings) - 1

    def _switch_to(self, slot: int) -> None:
        """Train ``slot`` from now on: store every other embedding's outputs as the
        regulariser's targets and restart both optimisers."""
        self.current = slot
        self.targets = {
            other: self._outputs(emb) for other, emb in enumerate(self.embeddings) if other != slot
        }
        self._rebuild_learners()

    def _outputs(self, embedding: Tensor) -> dict[str, Tensor]:
        """``h(embedding, Theta)`` now, detached copies (a target, a fitting state)."""
        network = self._bound()
        with torch.no_grad():
            return {n: w.detach().clone() for n, w in network(embedding).items()}

    # --- task inference (task-agnostic runs) ------------------------------------------
    def on_run_start(self, ctx: RunContext) -> None:
        """Check that ``infer_task`` suits the run.

        Raises:
            ConfigError: ``infer_task`` in a task-aware run, or beside a task-change
                detector (which already tells the component when tasks change).
        """
        if not self.config.infer_task:
            return
        if ctx.env_spec.task_aware or ctx.infers_tasks:
            raise ConfigError(
                f"{self.name}: infer_task is for task-agnostic runs without a task-change "
                "detector; this run "
                + ("is task-aware" if ctx.env_spec.task_aware else "has a detector")
            )

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Keep the transition; every ``infer_every`` steps choose the embedding."""
        if self.recent is None:
            return
        self.recent.add(step)
        self._since_inference += 1
        if self._since_inference >= self.config.infer_every and (
            self.recent.size == self.recent.capacity
        ):
            self._since_inference = 0
            self.infer(ctx)

    def _remember_good(self) -> None:
        """Keep the current embedding and its outputs as they are at a check that fits."""
        embedding = self.embeddings[self.current].detach().clone()
        self._last_good = (self.current, embedding, self._outputs(embedding))

    def loss_with(self, agent: Learner, slot: int, batch: TransitionBatch) -> float:
        """The agent's summed loss on ``batch`` with embedding ``slot``'s network (no
        gradients; torch's global random stream left as it was)."""
        trained = self.current
        self.current = slot
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                return float(sum(agent.losses(batch).values()))
        finally:
            self.current = trained

    def infer(self, ctx: RunContext) -> None:
        """Choose the embedding for the recent transitions (the module docstring's rule).

        Each change is logged as ``<name>/embedding`` (the embedding now trained) and
        ``<name>/embeddings`` (how many exist).
        """
        assert self.recent is not None, "infer() needs infer_task"
        batch = self.recent.batch()
        factor = self.config.new_task_factor
        floor = self.config.infer_loss_floor
        losses = {
            k: max(self.loss_with(ctx.agent, k, batch), floor) for k in range(len(self.embeddings))
        }
        mine = losses[self.current]
        baseline = self.baselines.get(self.current)
        if baseline is None or mine <= factor * baseline:
            self.baselines[self.current] = mine
            self._remember_good()
            return
        others = {k: loss for k, loss in losses.items() if k != self.current}
        left, good = self.current, self._last_good
        self._claimed = True
        best = min(others, key=others.__getitem__) if others else None
        if best is not None and factor * others[best] < mine:
            self._switch_to(best)
            self.baselines[best] = others[best]
        else:
            self._switch_to(self._new_slot())
        if good is not None and good[0] == left:
            # Until this check the embedding left trained on the new data too: it is held
            # to its outputs, and restored to its value, of its last check that fitted.
            with torch.no_grad():
                self.embeddings[left].copy_(good[1])
            self.targets[left] = good[2]
        self._remember_good()
        ctx.logger.scalar(f"{self.name}/embedding", float(self.current), ctx.global_step)
        ctx.logger.scalar(f"{self.name}/embeddings", float(len(self.embeddings)), ctx.global_step)

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
            "recent": None if self.recent is None else self.recent.state_dict(),
            "baselines": dict(self.baselines),
            "since_inference": self._since_inference,
            "last_good": self._last_good,
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
        if self.recent is not None:
            self.recent.load_state_dict(state["recent"])
        self.baselines = {int(k): float(v) for k, v in state["baselines"].items()}
        self._since_inference = int(state["since_inference"])
        good = state["last_good"]
        self._last_good = None if good is None else (int(good[0]), good[1], dict(good[2]))
        self._rebuild_learners()
        self.theta_learner.optimizer.load_state_dict(state["theta_optimizer"])
        self.embedding_learner.optimizer.load_state_dict(state["embedding_optimizer"])
