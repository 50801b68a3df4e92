"""The core interfaces of l2rl: Agent, Component, and what the runner hands them.

The runner (:mod:`l2rl.runner`) is the only training loop. Written out, it is::

    ctx = RunContext(agent, env_spec, ...)
    hooks.fire(on_run_start, ctx)
    evaluate every task (block = -1)              # zero-shot scores, R[0, j]
    for block, (task, steps) in enumerate(scenario.schedule):
        if task_aware:
            agent.on_task_start(task); hooks.fire(on_task_start, ctx, task)
        for _ in range(steps):                                # over num_envs envs in lockstep
            action = agent.act(obs, task_id, explore=True)    # act_batch when num_envs > 1
            step = Step(obs, action, reward, next_obs, ...)  # from env.step
            agent.observe(step); hooks.fire(on_step, ctx, step)
            for learner in (agent, *learners of the components):
                for batch in learner.batches(global_step):    # empty when no update is due
                    # update hooks and c.losses go to the components aimed at this learner
                    hooks.fire(before_update, ctx)            # ctx.learner = learner's name
                    losses = learner.losses(batch) | c.losses(ctx, batch) for those c
                    abort if a loss is not finite (NonFiniteError: learner, key, step)
                    # "stepped": the learner and those that train with it (a hypernetwork)
                    zero every stepped optimizer; sum(losses).backward()
                    hooks.fire(after_backward, ctx)           # gradient projection, masks
                    per stepped learner: abort if a gradient is not finite, clip to its
                        max_grad_norm, optimizer.step(), abort if a parameter is not finite
                    hooks.fire(after_update, ctx, UpdateStats(...))   # e.g. frozen weights
                    each stepped learner's after_optimizer_step()     # target networks
            if eval due: for each task j:
                hooks.fire(on_eval_task_start, ctx, task_j)     # task-aware only
                hooks.fire(on_eval_hidden_task_start, ctx)      # task-agnostic only
                evaluate task j; hooks.fire(on_eval_task_end, ctx, task_j)   # reversed
                -> hooks.fire(on_eval, ctx, records)   # task-agnostic: task index hidden
        evaluate every task (block end)               # rows R[k, j]
        if task_aware:
            hooks.fire(on_task_end, ctx, task); hooks.fire(on_consolidate, ctx, task)
    hooks.fire(on_run_end, ctx)                       # end hooks run in reverse order

Agents never import components: what an agent needs from one (a batch source, later a world
model or generated weights) arrives through :class:`AgentServices` from the builder.
Components reach the agent through ``ctx.agent``.

Every :class:`Learner` is trained by that one update path: the agent, and any learner a
component offers through :meth:`Component.learners` (a world model, a hypernetwork). Each
steps its own optimizer on its own losses; a component's ``losses`` and update hooks belong
to the learner named by its ``learner`` attribute (default the agent).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from l2rl.config import PluginConfig
from l2rl.evaluation import EpisodeOutcomes
from l2rl.types import (
    EnvSpec,
    EvalRecord,
    Losses,
    ParametersChanged,
    SequenceBatch,
    SkillEvent,
    Step,
    TaskInfo,
    TransitionBatch,
    UpdateStats,
)

if TYPE_CHECKING:
    from l2rl.types import TaskSpec


@runtime_checkable
class BatchSource(Protocol):
    """Anything that hands out minibatches of stored transitions (the replay role)."""

    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
        ...

    def sample(self, batch_size: int) -> TransitionBatch:
        """A minibatch of ``batch_size`` transitions, or of a whole multiple of it where the
        replay's rule adds as many rows per remembered part (the ``coreset`` replay draws
        ``batch_size`` from the current task and from each earlier task's coreset)."""
        ...


@runtime_checkable
class BoundedSource(Protocol):
    """A batch source that can say how many transitions it can ever hold at once.

    Agents check it against what they need before their first update, so a replay too
    small to start learning fails at build time (a replay without it is checked at run
    time only: windows without an update are flagged in the run's metrics).
    """

    @property
    def max_transitions(self) -> int:
        """The most transitions that can be sampled at any one time."""
        ...


@runtime_checkable
class PolicyAgent(Protocol):
    """An agent that exposes its policy and value on stored observations.

    Regularizers that need more than parameters use this: EWC's Fisher needs
    ``log pi(a|s)``, behaviour cloning (CLEAR) needs the policy distribution and the state
    value on replayed observations. ``task_ids`` holds -1 where the task is unknown.
    """

    def policy_distribution(
        self, obs: torch.Tensor, task_ids: torch.Tensor
    ) -> torch.distributions.Distribution:
        """The (differentiable) action distribution the agent acts from, per observation."""
        ...

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The (differentiable) state-value estimate, shape ``[batch]``."""
        ...


@runtime_checkable
class SequenceSource(Protocol):
    """Hands out runs of consecutive stored steps (a replay offering sequences)."""

    def sample_sequences(self, batch_size: int, length: int) -> SequenceBatch:
        """``batch_size`` runs of ``length`` consecutive steps (Dreamer's layout)."""
        ...


@runtime_checkable
class WorldModelService(Protocol):
    """What a world model offers the agent and other components.

    Latent states are the model's own type (batched along their leading dimension); users
    only pass them back. ``features`` maps a state to the vector an actor, critic or
    exploration head reads. Agents act from :meth:`observe_step` posteriors and train in
    :meth:`imagine` rollouts started from :meth:`observe_sequences` posteriors.
    """

    @property
    def feature_dim(self) -> int:
        """Size of :meth:`features`."""
        ...

    def features(self, state: Any) -> torch.Tensor:
        """The feature vector of latent ``state``, ``[..., feature_dim]``."""
        ...

    def initial(self, batch: int) -> Any:
        """``batch`` states before an episode's first observation."""
        ...

    def observe_step(
        self, state: Any, prev_action: torch.Tensor, obs: torch.Tensor, is_first: torch.Tensor
    ) -> Any:
        """The posterior after ``obs`` (``[N, ...]``), reached by ``prev_action`` from
        ``state``; rows with ``is_first`` restart from :meth:`initial`. No gradients."""
        ...

    def observe_sequences(self, batch: SequenceBatch) -> Any:
        """Posterior states of every step of replayed sequences ``[B, T]``. No gradients."""
        ...

    def imagine(self, start: Any, policy: Any, horizon: int) -> Mapping[str, torch.Tensor]:
        """Roll ``policy`` (features -> action) out for ``horizon`` steps from ``start``
        (states with any leading dimensions, flattened to ``N``, e.g. all of
        :meth:`observe_sequences`): ``features`` ``[H + 1, N, F]``, ``actions`` ``[H, N, ...]``,
        ``rewards`` and ``continues`` ``[H, N]``. Gradients reach the actions, never the
        model's parameters."""
        ...


@runtime_checkable
class WeightService(Protocol):
    """What a hypernetwork offers: generated weights of a target network per task.

    Agents run their target module with them through ``torch.func.functional_call``.
    """

    @property
    def bound(self) -> bool:
        """Whether an agent has bound a target network (:meth:`bind`); the builder refuses
        a run whose agent leaves the service unused."""
        ...

    def bind(self, target: nn.Module, loss_scale: float) -> None:
        """Generate the weights of ``target`` from now on: one tensor per entry of
        ``target.named_parameters()``, of the same shape. The agent calls this once, in
        its constructor, before the run builds its learners.

        Args:
            target: the module whose parameters are generated (its own values are unused).
            loss_scale: how many samples the agent's loss sums over per update (its batch
                size when it sums, 1 when it averages): a weight service's own loss
                terms are scaled to match.
        """
        ...

    def weights(self, task: int | None) -> Mapping[str, torch.Tensor]:
        """Parameter name -> generated (differentiable) tensor for ``task``; ``None``
        (task-agnostic acting): the task the service infers or trains now."""
        ...


@runtime_checkable
class SkillService(Protocol):
    """What a skill manager offers: which skill acts, and each skill's parameters.

    A skill is a set of parameters for the agent's policy module (the one the agent
    binds with :meth:`bind`): a frozen snapshot of the learner, a learner of its own, or a
    point of a subspace of policies. :data:`~l2rl.types.LEARNER_SKILL` is the learner itself. The
    runner asks :meth:`select` at every episode start, in training and in evaluation,
    records the choice in :attr:`Step.skill <l2rl.types.Step.skill>`, and has the agent act
    with it (:meth:`Agent.act_skills`); the agent runs its policy module on
    :meth:`parameters` through ``torch.func.functional_call`` and trains on
    :meth:`train_parameters`.
    """

    @property
    def bound(self) -> bool:
        """Whether an agent has bound its policy module (:meth:`bind`); the builder refuses
        a run whose agent leaves the service unused."""
        ...

    def bind(self, policy: nn.Module) -> None:
        """Skills are parameter sets of ``policy`` (one tensor per entry of
        ``policy.named_parameters()``) from now on; the agent calls this once, in its
        constructor."""
        ...

    def select(self, obs: np.ndarray, task: int | None, evaluation: bool) -> int:
        """The skill that acts in the episode starting at ``obs`` (``task``: the task id in
        task-aware runs, the inferred one or ``None`` otherwise)."""
        ...

    def parameters(
        self, skill: int, live: Mapping[str, torch.Tensor]
    ) -> Mapping[str, torch.Tensor]:
        """Parameter name -> tensor of ``skill``, given the policy module's own
        parameters ``live`` (those of :data:`~l2rl.types.LEARNER_SKILL`)."""
        ...

    def train_parameters(
        self, live: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[Mapping[str, torch.Tensor]]:
        """The parameters the agent's loss trains on, for each of its parameter sets
        ``live`` (e.g. online and target network), all drawn at one point of the skill
        space: the live ones themselves for a bank of separate skills, one Dirichlet draw
        of a subspace of policies mixed from each set (CSP)."""
        ...


@runtime_checkable
class ExplorationService(Protocol):
    """What an exploration component (Plan2Explore) offers an agent that trains in
    imagination: the reward to train on, extrinsic and intrinsic mixed by its own rule."""

    def imagined_reward(
        self, features: torch.Tensor, actions: torch.Tensor, extrinsic: torch.Tensor
    ) -> torch.Tensor:
        """Rewards ``[H, N]`` of an imagined rollout: ``features`` ``[H + 1, N, F]`` (the
        start first), ``actions`` ``[H, N, ...]`` (``actions[t]`` leads from state ``t`` to
        ``t + 1``), ``extrinsic`` ``[H, N]`` the world model's reward of states 1..H."""
        ...


SERVICE_SLOTS: dict[str, tuple[str, type]] = {
    "replay": ("replay", BatchSource),
    "sequences": ("replay", SequenceSource),
    "world_model": ("world_model", WorldModelService),
    "weights": ("hypernetwork", WeightService),
    "skills": ("skill_manager", SkillService),
    "exploration": ("exploration", ExplorationService),
}
"""Each slot of :class:`AgentServices`: the role that fills it and the protocol it offers."""


@dataclass(frozen=True)
class AgentServices:
    """What components offer the agent, and each other, at construction.

    The builder fills each slot with the component of the slot's role (at most one per
    role offers a service; :data:`SERVICE_SLOTS`) that implements the slot's protocol, or
    ``None``; it hands the result to the agent's constructor and to every component's
    :meth:`Component.wire`. A third-party component offers a service by having the role and
    the methods; it imports nothing of the built-ins.

    Attributes:
        replay: the replay role's batch source.
        sequences: the replay, when it also serves sequences (world models train on them).
        world_model: the world model role's :class:`WorldModelService`.
        weights: the hypernetwork role's :class:`WeightService`.
        skills: the skill-manager role's :class:`SkillService`.
        exploration: the exploration role's :class:`ExplorationService`.
    """

    replay: BatchSource | None = None
    sequences: SequenceSource | None = None
    world_model: WorldModelService | None = None
    weights: WeightService | None = None
    skills: SkillService | None = None
    exploration: ExplorationService | None = None


class ScalarLogger(Protocol):
    """Where components and agents write scalar diagnostics (TensorBoard and JSONL)."""

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record ``value`` under ``tag`` at env step ``step``."""
        ...


class RunContext:
    """The run's shared state, handed to every hook.

    Attributes:
        agent: the base agent being trained.
        env_spec: spaces and task-awareness of the scenario.
        tasks: the scenario's distinct tasks.
        seed: the run's seed.
        logger: scalar logger for diagnostics.
        global_step: env steps taken so far (updated by the runner).
        task: the current task in task-aware runs; ``None`` in task-agnostic runs and
            outside training windows.
        update_index: the agent's optimiser steps so far (``learner_updates["agent"]``).
        learner_updates: optimiser steps so far per learner name (the agent's included).
        learner: the name of the learner being updated, during update hooks; else ``None``.
        pending_task_change: the change asked for since the last step, ``(reason,
            task_id)``, until the runner makes it; else ``None``.
        infers_tasks: a task-agnostic run with a task-change detector: task hooks fire at
            inferred changes (set by the runner).
        sleeping: during the updates of a sleep phase (:meth:`Component.sleep_batches`).
    """

    def __init__(
        self,
        agent: Agent,
        env_spec: EnvSpec,
        tasks: tuple[TaskSpec, ...],
        seed: int,
        logger: ScalarLogger,
    ) -> None:
        self.agent = agent
        self.env_spec = env_spec
        self.tasks = tasks
        self.seed = seed
        self.logger = logger
        self.global_step = 0
        self.task: TaskInfo | None = None
        self.learner_updates: dict[str, int] = {}
        self.learner: str | None = None
        self.pending_task_change: tuple[str, int | None] | None = None
        self.infers_tasks = False
        self.sleeping = False
        self._validator: Callable[[int | None, int, int], EpisodeOutcomes] | None = None
        self._change_listener: Callable[[ParametersChanged], None] | None = None
        self._skill_events: Callable[[SkillEvent], None] | None = None

    def request_task_change(self, reason: str, task_id: int | None = None) -> None:
        """Ask the runner to close the current inferred task and open another after the
        current step (a task-change detector calls this; task-agnostic runs only).

        The runner fires the usual closing and opening hooks (``on_task_end``,
        ``on_consolidate``, ``on_task_start``, ``Agent.on_task_start``) with
        :class:`~l2rl.types.TaskInfo` ``inferred=True``, so every component that
        consolidates at task ends works without true boundaries. The first request of a
        step wins.

        Args:
            reason: why, for the run's ``task_changes.jsonl``.
            task_id: an earlier inferred task recognised again; ``None`` for a new one.

        Raises:
            RuntimeError: in a task-aware run (its boundaries are known).
            ValueError: a negative ``task_id``.
        """
        if self.env_spec.task_aware:
            raise RuntimeError("request_task_change is for task-agnostic runs only")
        if task_id is not None and task_id < 0:
            raise ValueError(f"task_id must be non-negative, got {task_id}")
        if self.pending_task_change is None:
            self.pending_task_change = (reason, task_id)

    def validate(self, task_index: int | None, skill: int, episodes: int) -> EpisodeOutcomes:
        """Play ``episodes`` validation episodes of task ``task_index`` (an index of
        :attr:`tasks`) with ``skill`` acting greedily, and return their outcomes.

        ``task_index=None`` plays the task at hand without naming it, for task-agnostic
        runs: during an evaluation (from :meth:`Component.on_eval_hidden_task_start`) the
        task being evaluated, otherwise the task of the training window in progress, which
        after a true change a detector has not seen yet is already the next task.

        A skill manager estimates what a skill set is worth with these (SLIM's
        leave-one-skill-out validation, CSP's search of the best combination). They do not
        count as env steps of training or appear in the evaluation records; their reset
        seeds are the run's validation stream, disjoint from the evaluation's, and the
        same at every call with the same arguments (each call replays the same starts).

        Raises:
            RuntimeError: outside a run, in a run without a skill manager, or
                ``task_index=None`` with no task at hand (before the first window).
            ValueError: ``task_index`` out of range or ``episodes`` not positive.
        """
        if self._validator is None:
            raise RuntimeError("validate is available inside a run with a skill manager")
        if task_index is not None and not 0 <= task_index < len(self.tasks):
            raise ValueError(f"task_index {task_index} is not a task of the run")
        if episodes < 1:
            raise ValueError(f"episodes must be positive, got {episodes}")
        return self._validator(task_index, skill, episodes)

    def record_skill_event(self, event: SkillEvent) -> None:
        """Write a skill manager's lifecycle event to the run's records
        (``skill_events.jsonl`` and TensorBoard, in a run with a directory).

        Raises:
            RuntimeError: outside a run.
        """
        if self._skill_events is None:
            raise RuntimeError("record_skill_event is available inside a run")
        self._skill_events(event)

    def parameters_changed(self, change: ParametersChanged) -> None:
        """Report that a learner's parameters grew or shrank, or that a component's
        learners (:meth:`Component.learners`) changed: the runner picks up the learners as
        they are now (checking that each trainable parameter belongs to its optimizer) and
        fires ``on_parameters_changed`` so components holding per-parameter state follow.

        Raises:
            RuntimeError: outside a run.
        """
        if self._change_listener is None:
            raise RuntimeError("parameters_changed is available inside a run")
        self._change_listener(change)

    @property
    def update_index(self) -> int:
        """The agent's optimiser steps so far."""
        return self.learner_updates.get(AGENT_LEARNER, 0)


AGENT_LEARNER = "agent"
"""The learner name of the agent: the default target of components' losses and hooks."""


class Learner(abc.ABC):
    """Owns parameters and an optimizer; the runner's one update path trains it.

    Each update the runner asks :meth:`batches` for the minibatches due, takes
    :meth:`losses` on each (plus the loss terms of components aimed at this learner), checks
    them and their gradients for NaN/inf, backpropagates the sum, clips to
    ``max_grad_norm``, steps :attr:`optimizer` and checks the parameters for NaN/inf, then
    calls :meth:`after_optimizer_step`. Every parameter of :meth:`networks` that can
    receive a gradient must belong to :attr:`optimizer` (:func:`l2rl.testing.check_agent`
    and ``check_component`` check it).

    >>> import torch
    >>> from torch import nn
    >>> class Mean(Learner):
    ...     learner_name = "mean"
    ...     def __init__(self) -> None:
    ...         self.net = nn.Linear(1, 1)
    ...         self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
    ...     def batches(self, global_step: int):
    ...         return iter([torch.ones(4, 1)] if global_step % 10 == 0 else [])
    ...     def losses(self, batch):
    ...         return {"loss_mse": (self.net(batch) - 2.0).pow(2).mean()}
    ...     def networks(self) -> nn.Module:
    ...         return self.net
    >>> len(list(Mean().batches(20)))
    1

    Attributes:
        learner_name: unique among a run's learners; names its loss scalars
            (``train/<learner_name>/loss_*``; the agent's are ``train/loss_*``), its update
            count and the components aimed at it.
        optimizer: steps this learner's parameters only (parameter groups for several
            learning rates). Losses must be written so that summing them is correct.
        max_grad_norm: clip this learner's global gradient norm before each step, or None.
        trains_with: the name of another learner whose losses reach this learner's
            parameters (a hypernetwork generating that learner's weights), or ``None``.
            Each update of that learner then also zeroes, clips, checks and steps this
            learner's optimizer, and counts as an update of this learner too.
    """

    learner_name: str = AGENT_LEARNER
    optimizer: torch.optim.Optimizer
    max_grad_norm: float | None = None
    trains_with: str | None = None

    @abc.abstractmethod
    def batches(self, global_step: int) -> Iterator[Any]:
        """The minibatches of the update due at ``global_step``; empty when none is due."""

    @abc.abstractmethod
    def losses(self, batch: Any) -> Losses:
        """This learner's ``loss_*`` terms on one minibatch."""

    def after_optimizer_step(self) -> None:  # noqa: B027 - optional
        """Called after every optimiser step and its ``after_update`` hooks (e.g. to
        update target networks from the parameters as components left them)."""

    @abc.abstractmethod
    def networks(self) -> nn.Module:
        """The module holding every parameter this learner trains."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks and optimiser."""
        return {"networks": self.networks().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.networks().load_state_dict(state["networks"])
        self.optimizer.load_state_dict(state["optimizer"])


class Agent(Learner):
    """A base learner: it acts, defines its own losses, and owns networks and optimiser.

    Subclasses set ``Config`` to a :class:`~l2rl.config.PluginConfig` subclass; the builder
    validates the user's options against it and calls ``Agent(config, env_spec, services,
    seed)``.

    Attributes:
        optimizer: the one optimiser the runner steps (use parameter groups for several
            learning rates). Losses must be written so that summing them is correct, e.g. an
            actor loss that evaluates critics through detached parameters.
        max_grad_norm: clip the global gradient norm to this before each step, or ``None``.
        resumes_mid_episode: whether ``state_dict`` holds all the agent carries from one
            step of an episode to the next (true for memoryless policies), so a checkpoint
            inside a window resumes its episodes exactly; a recurrent agent that restarts
            its acting state instead sets it false, and such resumes start new episodes.
    """

    Config: ClassVar[type[PluginConfig]]
    resumes_mid_episode: ClassVar[bool] = True

    def __init__(
        self, config: PluginConfig, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        self.config = config
        self.env_spec = env_spec
        self.services = services
        self.seed = seed

    @abc.abstractmethod
    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Any:
        """Choose an action for one observation.

        Args:
            obs: the observation.
            task_id: task index in task-aware runs, ``None`` otherwise.
            explore: ``True`` while training; ``False`` for evaluation (deterministic).
        """

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Sequence[Any]:
        """Actions for a stack of observations, one per training env (``num_envs > 1``),
        or one per evaluation slot (``explore=False``: a task's episodes in lockstep,
        :func:`l2rl.evaluation.run_episodes`; the stack keeps its size through a round).

        The default calls :meth:`act` on each; batched agents override it with one
        forward pass.
        """
        return [self.act(o, task_id, explore) for o in obs]

    def act_skills(
        self, obs: np.ndarray, task_id: int | None, explore: bool, skills: np.ndarray
    ) -> Sequence[Any]:
        """Actions for a stack of observations, row ``i`` acting with skill ``skills[i]``
        of the ``skills`` service (the runner calls this instead of :meth:`act` and
        :meth:`act_batch` once the agent has bound that service).

        An agent that binds a skill service overrides this: it runs its policy module on
        ``services.skills.parameters(skill, live)`` for each skill of the stack.

        Raises:
            NotImplementedError: the agent does not act with skills.
        """
        raise NotImplementedError(f"{type(self).__name__} does not act with skills")

    def skill_losses(
        self, batch: Any, online: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
    ) -> Losses:
        """The agent's losses on ``batch`` with the policy module it bound to the skills
        service run on ``online`` parameters (``target``: those of its lagging copy, for
        agents with a target network). A skill manager's own skill learners (SLIM's expanded
        skills) train their parameter sets with this.

        Raises:
            NotImplementedError: the agent does not train skills.
        """
        raise NotImplementedError(f"{type(self).__name__} does not train skills")

    def observe(self, step: Step) -> None:
        """See one transition (on-policy agents collect rollouts here)."""

    def on_episode_start(self, env_indices: Sequence[int], evaluation: bool) -> None:
        """Episodes start in these training envs (``evaluation=False``; indices as in
        :attr:`Step.env_index`), or in evaluation slots (``evaluation=True``; indices are
        positions in the stack :meth:`act_batch` gets), before the first action on them.
        Recurrent agents reset their state here; training acts with ``explore=True`` and
        evaluation with ``explore=False``, so the two keep separate states. Default:
        nothing."""

    def on_task_start(self, task: TaskInfo) -> None:
        """A new training window begins (task-aware runs only)."""

    @property
    def untrained_task_heads(self) -> bool:
        """Whether each task acts through a head of its own, untrained until its task trains.

        Zero-shot transfer is then not measurable (:mod:`l2rl.metrics`). Default ``False``.
        """
        return False

    @abc.abstractmethod
    def networks(self) -> nn.Module:
        """The module whose parameters define the policy (what regularizers protect)."""


class Component:
    """A plug-in around the agent: replay, regularizer, detector, world model, ...

    Subclasses set ``role`` and ``Config`` and override only the hooks they need; the
    dispatcher calls overridden hooks only. A method named like a hook (``on_*``,
    ``before_*``, ``after_*``) that is not one is rejected when the component is built.
    The method logic should live in a plain object the component adapts (an ``EWCPenalty``,
    a ``ReservoirWriter``) so that it is testable without the framework.

    Attributes:
        role: one of :data:`l2rl.hooks.ROLE_ORDER` or a custom role name.
        name: set by the builder to the registered name (or the config's ``label``).
        learner: the ``learner_name`` whose updates this component's :meth:`losses` and
            update hooks (``before_update``, ``after_backward``, ``after_update``) belong to;
            the runner calls them only for that learner's updates. Default: the agent.
    """

    role: ClassVar[str] = "custom"
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    name: str = ""
    learner: str = AGENT_LEARNER

    def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
        self.config = config
        self.env_spec = env_spec

    # --- hooks: override the ones you need -------------------------------------------
    def on_run_start(self, ctx: RunContext) -> None:
        """The run begins; the agent exists."""

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A training window begins (task-aware runs only)."""

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """One environment transition was taken."""

    def before_update(self, ctx: RunContext) -> None:
        """An optimiser step is about to be computed."""

    def after_backward(self, ctx: RunContext) -> None:
        """Gradients of the summed losses are in ``.grad``; not yet applied."""

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """The optimiser stepped; ``stats`` has the detached losses."""

    def on_eval_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Evaluation of ``task`` is about to start (e.g. apply that task's mask)."""

    def on_eval_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Evaluation of ``task`` has finished (e.g. restore the training weights)."""

    def on_eval_hidden_task_start(self, ctx: RunContext) -> None:
        """Task-agnostic runs: the evaluation of a task whose identity stays hidden is
        about to start. ``ctx.validate(None, ...)`` plays episodes of that task, so a skill
        manager can search for the skill to evaluate with (CSP's few-shot search)."""

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """One round of continual evaluation finished."""

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """A training window ended (task-aware runs only)."""

    def on_consolidate(self, ctx: RunContext, task: TaskInfo) -> None:
        """Consolidate after a task closed, without updates (EWC's Fisher, PackNet's
        pruning); consolidation by updates is the sleep phase (:meth:`sleep_batches`)."""

    def on_parameters_changed(self, ctx: RunContext, change: ParametersChanged) -> None:
        """A learner's parameters grew or shrank (:meth:`RunContext.parameters_changed`);
        per-parameter state for ``change.learner`` must follow its new layout."""

    def on_run_end(self, ctx: RunContext) -> None:
        """The run finished."""

    def sleep_batches(self, ctx: RunContext, task: TaskInfo) -> Iterable[Any]:
        """The sleep phase after ``task`` closed (a true task's window end, or an inferred
        task's change): batches on which to consolidate this component's learner
        (``learner``), one optimiser step each, with :meth:`sleep_losses` as the only loss
        terms; none by default. The runner runs them with the usual update hooks
        (``ctx.sleeping`` set), NaN/inf guard, logging (``sleep/...``) and records each
        sleep in ``sleeps.jsonl``; they happen before the window's checkpoint."""
        return ()

    def sleep_losses(self, ctx: RunContext, batch: Any) -> Losses:
        """The loss terms (keys ``loss_*``) of one of this component's sleep batches."""
        return {}

    # --- services, learners, loss terms and state ------------------------------------
    def wire(self, services: AgentServices) -> None:
        """Receive the run's services once every component is built (the builder's second
        step), before the run starts: a world model takes ``services.sequences`` here."""

    def service(self) -> object:
        """What fills this component's role's service slots (:data:`SERVICE_SLOTS`) when it
        implements the slot's protocol. Default: the component itself; a component that
        wraps a learner may hand out that learner instead of forwarding its methods."""
        return self

    def learners(self) -> Sequence[Learner]:
        """Learners this component owns, trained by the runner after the agent (a world
        model, a hypernetwork). Their state belongs in this component's :meth:`state_dict`,
        optimizer included. Default: none."""
        return ()

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """Extra ``loss_*`` terms added to those of the learner :attr:`learner` names, on
        every update of that learner; ``batch`` is that learner's minibatch."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this component."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
