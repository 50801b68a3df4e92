"""Typed data that flows through a run: tasks, steps, batches, evaluation records.

Every payload a hook receives is one of these frozen dataclasses; no hook ever reads
``locals()``. Arrays are numpy on the environment side and torch inside batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # annotations only: reading records (the CLI) imports neither
    import gymnasium as gym
    import torch

EnvFactory = Callable[[], "gym.Env[Any, Any]"]
"""A zero-argument callable that builds a fresh environment for one task."""

RewardFn = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""A task's reward as a batched torch function: ``(obs [N, ...], action [N, ...],
next_obs [N, ...]) -> reward [N]``, equal to what the environment pays for that transition.
Model-based agents (planners) score imagined transitions with it."""


class ScoreNormalizer(Protocol):
    """Maps the episode returns of one evaluation to a normalised score in [0, 1]."""

    def __call__(self, returns: np.ndarray, successes: np.ndarray) -> float:
        """Score of an evaluation from its per-episode returns and success flags."""
        ...


@dataclass(frozen=True)
class ReturnRange:
    """Normalise the mean return linearly from ``[low, high]`` to ``[0, 1]``, clipped.

    Used where a task has reference bounds (e.g. CartPole: 0 .. max episode length).
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"ReturnRange needs high > low, got low={self.low}, high={self.high}")

    def __call__(self, returns: np.ndarray, successes: np.ndarray) -> float:
        """Clipped linear rescaling of the mean return."""
        value = (float(np.mean(returns)) - self.low) / (self.high - self.low)
        return float(np.clip(value, 0.0, 1.0))


@dataclass(frozen=True)
class SuccessRate:
    """Normalised score = fraction of evaluation episodes that succeeded.

    An episode succeeds when the environment's ``info`` says so (``info['success']`` or
    ``info['is_success']``) or, failing that, when its return is positive (MiniGrid's rule:
    reward is paid only on reaching the goal).
    """

    def __call__(self, returns: np.ndarray, successes: np.ndarray) -> float:
        """Mean of the success flags."""
        return float(np.mean(successes))


@dataclass(frozen=True)
class TaskSpec:
    """One task: a named environment factory, its variant parameters and its score rule.

    Attributes:
        name: unique name within a scenario, used in logs and tables.
        make_env: builds a fresh environment; called once for training and once per
            evaluation environment.
        normalizer: turns evaluation returns into a score in [0, 1].
        params: the variant parameters that distinguish this task (recorded with results).
        reward_fn: the environment's reward as a batched torch function (:data:`RewardFn`),
            for model-based agents; ``None`` where the task does not provide one.
    """

    name: str
    make_env: EnvFactory
    normalizer: ScoreNormalizer
    params: Mapping[str, Any] = field(default_factory=dict)
    reward_fn: RewardFn | None = None


@dataclass(frozen=True)
class TaskBlock:
    """One training window: train on ``scenario.tasks[task_index]`` for ``steps`` env steps."""

    task_index: int
    steps: int


@dataclass(frozen=True)
class TaskInfo:
    """What a component or agent is told about a task: a true one in task-aware runs, an
    inferred one (``inferred``) in task-agnostic runs with a task-change detector.

    ``index`` and ``name`` say which task; ``block``, ``start_step`` and ``steps`` say
    when: the training window in progress (in evaluation hooks too, where the task named
    is the one being evaluated; ``block`` is -1 before any training). An inferred task
    reveals nothing of the true schedule: its ``index`` is the detector's id (or a new
    one), ``name`` is ``inferred-<index>``, ``block`` counts inferred windows, ``num_tasks``
    the ids handed out so far, ``start_step`` is the step of the change, ``steps`` is 0.

    Attributes:
        index: position of the task in ``scenario.tasks`` (stable across cycles), or the
            inferred task's id.
        name: the task's name.
        block: position of the training window in progress in the schedule (or among
            the inferred windows).
        num_tasks: number of distinct tasks in the scenario (or inferred so far).
        start_step: global env step at which that window began.
        steps: length of that window in env steps (0 before any training, and when
            inferred: not known in advance).
        inferred: whether a detector inferred this task (true boundaries stay hidden).
    """

    index: int
    name: str
    block: int
    num_tasks: int
    start_step: int = 0
    steps: int = 0
    inferred: bool = False


@dataclass(frozen=True)
class EnvSpec:
    """The spaces shared by every task of a scenario, and what the agent may know.

    Attributes:
        observation_space: common observation space (after any declared adapter).
        action_space: common action space.
        num_tasks: number of distinct tasks.
        task_aware: whether task ids and boundaries are given to agent and components.
        num_envs: training envs the runner steps in lockstep (``Step.env_index`` ranges
            over them); replays and on-policy agents size per-env state with it.
        reward_fns: each task's :attr:`TaskSpec.reward_fn` by task index (``None`` where a
            task provides none), for model-based agents; empty when not given.
    """

    observation_space: gym.spaces.Space[Any]
    action_space: gym.spaces.Space[Any]
    num_tasks: int
    task_aware: bool
    num_envs: int = 1
    reward_fns: tuple[RewardFn | None, ...] = ()


@dataclass(frozen=True)
class Step:
    """One environment transition, as the runner hands it to ``on_step`` and the agent.

    ``task_id`` is ``None`` in task-agnostic runs. ``terminated`` marks a true terminal
    state (no bootstrapping); ``truncated`` a time limit (bootstrap from ``next_obs``).
    ``env_index`` says which of the run's parallel training envs produced it. ``first`` is
    set by the runner when ``obs`` is the first observation of an episode (right after a
    reset; Acme's ``observe_first``): replays start a stored episode there and world models
    reset their latent state, without comparing observation arrays. ``skill`` says which
    skill of a skill manager acted (:data:`LEARNER_SKILL` when the learner itself did, and
    in runs without a skill manager).
    """

    obs: np.ndarray
    action: Any
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    task_id: int | None
    global_step: int
    env_index: int = 0
    first: bool = False
    skill: int = -1


@dataclass(frozen=True)
class TransitionBatch:
    """A minibatch of transitions as torch tensors (leading dimension = batch).

    Dtypes every replay produces and every agent may rely on: ``obs``/``next_obs`` keep the
    observation space's dtype (uint8 frames stay uint8; the network scales them),
    ``actions`` the action dtype (int64 for Discrete), ``rewards`` float32,
    ``terminated`` bool, ``task_ids`` int64 with -1 where the task is unknown
    (task-agnostic runs). ``skills`` (int64) is the skill that took each action
    (:attr:`Step.skill`; -1: the learner) where the source records it; ``None`` where it
    does not (small memories of regularizers) and, from the chunk replays, while no skill
    but the learner's has acted.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    task_ids: torch.Tensor
    skills: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.obs.shape[0])


LEARNER_SKILL = -1
"""The skill index of the learner itself (:attr:`Step.skill` when no bank skill acted)."""


@dataclass(frozen=True)
class ParametersChanged:
    """The parameters of a learner grew or shrank (a skill bank expanded or retired a
    skill, an agent added a head): what ``on_parameters_changed`` receives.

    The learner that changed has already updated its own optimizer; the runner has
    picked up learners added or removed; components that keep per-parameter state for
    that learner (EWC's Fisher, SI's importance, PackNet's masks) follow the new layout.

    Attributes:
        learner: the ``learner_name`` whose parameters changed, or that was added or
            removed.
        reason: what happened (e.g. ``"slim: expanded skill 2"``).
        added: names of parameters (of that learner's ``networks()``) that are new.
        removed: names of parameters that are gone.
    """

    learner: str
    reason: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SequenceBatch:
    """``B`` runs of ``L`` consecutive stored frames, as torch tensors ``[B, L, ...]``.

    The layout is Dreamer's: row ``t`` holds an observation together with what led to it,
    so ``actions[:, t]`` and ``rewards[:, t]`` are the action taken at ``obs[:, t - 1]`` and
    the reward it earned. A row where ``is_first`` is set starts an episode: its action and
    reward are zero. A sequence may run across an episode boundary inside one stored chunk
    (``is_first`` marks where; a world model resets its latent state there) but never
    across chunks.

    Dtypes: ``obs`` keeps the observation dtype, ``actions`` the action dtype, ``rewards``
    float32, ``terminated`` and ``is_first`` bool, ``task_ids`` int64 (-1 where unknown).

    Attributes:
        obs: observations ``[B, L, *obs_shape]``.
        actions: the action that led to each observation ``[B, L, *action_shape]``.
        rewards: the reward for that action ``[B, L]``.
        terminated: the observation is a terminal state ``[B, L]``.
        is_first: the observation is an episode's first ``[B, L]``.
        task_ids: the task the frames came from ``[B, L]``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    is_first: torch.Tensor
    task_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])


Losses = dict[str, "torch.Tensor"]
"""Named scalar losses; every key starts with ``loss_``. The runner sums them."""


@dataclass(frozen=True)
class EvalRecord:
    """The result of evaluating one task at one moment of the run.

    Attributes:
        global_step: env steps of training done when the evaluation ran.
        block: index of the training window in progress (``-1`` before any training).
        trained_task: task index being trained in that window (``-1`` before training).
        eval_task: index of the task evaluated.
        eval_task_name: its name.
        mean_return: mean undiscounted return over the evaluation episodes.
        score: the task's normalised score in [0, 1].
        episodes: number of evaluation episodes.
        block_end: whether this evaluation closes a training window (the rows of the
            performance matrix), or is the evaluation before any training.
        episode_returns: the undiscounted return of each evaluation episode, in order, so
            that the uncertainty of a single evaluation can be read from the records.
    """

    global_step: int
    block: int
    trained_task: int
    eval_task: int
    eval_task_name: str
    mean_return: float
    score: float
    episodes: int
    block_end: bool
    episode_returns: tuple[float, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EvalRecord:
        """The record stored as ``row`` (a JSON object of :func:`dataclasses.asdict` form)."""
        fields = dict(row)
        fields["episode_returns"] = tuple(float(r) for r in fields.get("episode_returns", ()))
        return cls(**fields)


@dataclass(frozen=True)
class UpdateStats:
    """What ``after_update`` receives: the detached losses of one optimiser step.

    ``update_index`` counts the optimiser steps of ``learner`` (the learner updated).
    """

    losses: Mapping[str, float]
    update_index: int
    learner: str = "agent"


@dataclass(frozen=True)
class WindowSummary:
    """What a training window did, recorded when it closes (``windows.jsonl``).

    Attributes:
        block: the window's index in the schedule.
        task_index: the task trained.
        task: the task's name.
        end_step: the env step at which the window closed.
        updates: optimiser steps each learner made in the window, by learner name; a
            learner with 0 did not train in it (e.g. a replay too small to start).
        validation_episodes: episodes a skill manager played for validation in the window
            (:meth:`~l2rl.core.RunContext.validate`; not counted in ``end_step``).
    """

    block: int
    task_index: int
    task: str
    end_step: int
    updates: Mapping[str, int]
    validation_episodes: int = 0

    def idle_learners(self) -> list[str]:
        """The learners that made no optimiser step in the window."""
        return [name for name, count in self.updates.items() if count == 0]


@dataclass(frozen=True)
class EpisodeRecord:
    """A training episode that ended (``episodes.jsonl``).

    Attributes:
        block: the training window it ran in.
        task_index: the task trained.
        task: the task's name.
        global_step: the env step at which it ended.
        episode_return: its undiscounted return.
    """

    block: int
    task_index: int
    task: str
    global_step: int
    episode_return: float


@dataclass(frozen=True)
class TaskChange:
    """A task change a component asked for (:meth:`l2rl.core.RunContext.request_task_change`)
    and the runner made, in a task-agnostic run (``task_changes.jsonl``).

    Attributes:
        global_step: the env step after which the inferred window changed.
        reason: what the component gave (e.g. ``"page-hinkley: return dropped"``).
        task_id: the inferred task opened.
        new: whether ``task_id`` was handed out new (else a return to an earlier one).
    """

    global_step: int
    reason: str
    task_id: int
    new: bool


@dataclass(frozen=True)
class SkillEvent:
    """A skill manager's lifecycle event (``skill_events.jsonl``; its ``delta`` also goes
    to TensorBoard as ``skills/<event>/delta``).

    Attributes:
        global_step: the env step it happened at.
        event: ``"add"`` (a snapshot joined the bank), ``"retain"`` (an audit kept it),
            ``"retire"``, ``"expand"`` (a new skill started training on a failing task),
            ``"freeze"`` (an expanded skill stopped training and joined the bank),
            ``"full"`` (no room for a new skill), ``"keep-anchor"`` / ``"prune-anchor"``
            (CSP's subspace decision).
        skill: the skill's index (:attr:`Step.skill`).
        task: the task it concerns (its own task, or the one failing).
        delta: the marginal contribution estimated at this event (SLIM's EMA of
            ``V(S) - V(S without k)``; CSP: ``R_new - R_old``), ``nan`` where none.
        exposures: episodes the skill has acted in so far.
        bank_size: skills in the bank after the event.
    """

    global_step: int
    event: str
    skill: int
    task: int
    delta: float
    exposures: int
    bank_size: int


@dataclass(frozen=True)
class SleepRecord:
    """A sleep phase that ran (``sleeps.jsonl``).

    Attributes:
        block: the window it followed (or the inferred window, with ``inferred``).
        task: the name of the task that closed (true or inferred).
        global_step: the env step it ran at (no env steps pass during it).
        consolidator: the component that offered its batches.
        learner: the learner it updated.
        updates: optimiser steps it made.
        inferred: whether it followed an inferred task change.
    """

    block: int
    task: str
    global_step: int
    consolidator: str
    learner: str
    updates: int
    inferred: bool
