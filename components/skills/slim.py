"""``slim``: a skill bank that retains, retires and expands skills (SLIM, arXiv 2605.10923).

SLIM treats the active skill set ``S`` as a variable optimised jointly with the policy
(``../shared/METHODS.md``). Its paper works with LLM agents; here a skill is a parameter set
of the agent's policy module (the Q-network of ``dqn``), called on per episode:

- **Value.** ``V(S)``: each seen task played by the best of ``S`` and the learner (see
  :mod:`.bank`), from validation episodes (:meth:`~l2rl.core.RunContext.validate`, greedy,
  ``validation_episodes`` per skill and task, the validation seed stream). Evaluation acts
  the same way: each task's episodes are played by its best validated skill, the learner
  when none beats it.
- **Audit** at every task end: validate the learner and every active skill on every task
  trained so far, fold ``Delta_k = V(S) - V(S without k)`` into each skill's EMA (logged
  as a ``retain`` event), and **retire** one skill whose EMA is below ``epsilon`` after at
  least ``n_min`` exposures: the learner (or another skill) has absorbed what it held.
  Then a frozen **snapshot** of the learner joins the bank (``add``) if there is room; its
  contribution is 0 while the learner still knows the task and grows once the learner
  forgets it.
- **Expansion.** When the current task's evaluation score stays below ``tau`` for
  ``patience`` (``M``) evaluations in a row, a new skill starts from a copy of the learner
  and trains on what fails: the failing task's replayed transitions, with the agent's own
  loss (:meth:`~l2rl.core.Agent.skill_losses`) as a learner of its own; its training is
  reported through :meth:`~l2rl.core.RunContext.parameters_changed`. At the window's end
  it is frozen into the bank (``freeze``). One expansion per window.
- **Acting in training.** An episode of task ``t`` is played, with probability
  ``reuse_prob``, by the skill expanding for ``t`` or else by ``t``'s best bank skill (when
  one beats the learner), so the learner's replay also holds what the bank knows; the
  other episodes, and every episode without such a skill, are the learner's.
- **Capacity.** At most ``capacity`` skills are active; with no room, a snapshot or an
  expansion is skipped (``full``).

Ablations: ``retire: false`` (skills are never retired, so the bank fills and stops
taking snapshots) and ``expand: false``. Every event goes to ``skill_events.jsonl`` and to
TensorBoard (:class:`~l2rl.types.SkillEvent`). Task-aware runs only: validation and the
per-task choice need the task of every episode.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.agents.off_policy import replay_batches
from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, BatchSource, Learner, RunContext
from l2rl.seeding import derive_seed
from l2rl.types import (
    LEARNER_SKILL,
    EnvSpec,
    EvalRecord,
    Losses,
    ParametersChanged,
    SkillEvent,
    TaskInfo,
    TransitionBatch,
)

from .bank import FailureCounter, SkillBank
from .manager import SkillManager

_SLIM_STREAM = 12  # this component's random stream (derive_seed)


def task_rows(batch: TransitionBatch, task: int) -> TransitionBatch | None:
    """The rows of ``batch`` from ``task``; ``None`` if it has none."""
    keep = batch.task_ids == task
    if not bool(keep.any()):
        return None
    return TransitionBatch(
        obs=batch.obs[keep],
        actions=batch.actions[keep],
        rewards=batch.rewards[keep],
        next_obs=batch.next_obs[keep],
        terminated=batch.terminated[keep],
        task_ids=batch.task_ids[keep],
        skills=None if batch.skills is None else batch.skills[keep],
    )


class SkillLearner(Learner):
    """An expanded skill while it trains: a copy of the policy module, its lagging target
    copy and an Adam optimizer, trained with the agent's loss on one task's transitions.

    Args:
        name: its learner name.
        policy: the module to copy (the agent's bound policy module, at expansion).
        agent: whose :meth:`~l2rl.core.Agent.skill_losses` it trains with.
        replay: where its minibatches come from (rows of other tasks are dropped).
        task: the failing task it trains on.
        config: the component's options (``skill_*``).
    """

    def __init__(
        self,
        name: str,
        policy: nn.Module,
        agent: Agent,
        replay: BatchSource,
        task: int,
        config: SLIM.Config,
    ) -> None:
        self.learner_name = name
        self.module = copy.deepcopy(policy).requires_grad_(True)
        self.target = copy.deepcopy(policy).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=config.skill_lr)
        self.max_grad_norm = 10.0
        self.agent, self.replay, self.task, self.config = agent, replay, task, config
        self.updates = 0

    def batches(self, global_step: int) -> Iterator[TransitionBatch]:
        """The task's rows of a replay minibatch every ``skill_train_every`` steps."""
        c = self.config
        for batch in replay_batches(
            self.replay,
            global_step,
            train_every=c.skill_train_every,
            learning_starts=c.skill_batch_size,
            gradient_steps=1,
            batch_size=c.skill_batch_size,
        ):
            rows = task_rows(batch, self.task)
            if rows is not None:
                yield rows

    def losses(self, batch: TransitionBatch) -> Losses:
        """The agent's loss with this skill's parameters (and its target copy's)."""
        online = dict(self.module.named_parameters())
        target = dict(self.target.named_parameters())
        return self.agent.skill_losses(batch, online, target)

    def after_optimizer_step(self) -> None:
        """Copy the module to the target every ``skill_target_update_every`` steps."""
        self.updates += 1
        if self.updates % self.config.skill_target_update_every == 0:
            self.target.load_state_dict(self.module.state_dict())

    def networks(self) -> nn.Module:
        """The skill's module."""
        return self.module

    def frozen(self) -> dict[str, torch.Tensor]:
        """Detached copies of the skill's parameters."""
        return {n: p.detach().clone() for n, p in self.module.named_parameters()}

    def state_dict(self) -> dict[str, Any]:
        """Module, optimizer, target copy and update count."""
        return {
            **super().state_dict(),
            "target": self.target.state_dict(),
            "updates": self.updates,
            "task": self.task,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.target.load_state_dict(state["target"])
        self.updates = int(state["updates"])


class SLIM(SkillManager):
    """Component ``slim`` (role ``skill_manager``): see the module docstring.

    It is the ``skills`` service (:class:`~l2rl.core.SkillService`) the agent binds.

    Raises:
        ConfigError: (at run start) a task-agnostic scenario, or no replay to train an
            expanded skill on while ``expand`` is on.
    """

    class Config(PluginConfig):
        """Options of SLIM."""

        capacity: PositiveInt = Field(default=4, description="Most skills active at once.")
        ema: float = Field(
            default=0.5, gt=0.0, le=1.0, description="EMA weight of the newest Delta_k."
        )
        epsilon: float = Field(
            default=0.02, ge=0.0, description="Retire a skill whose EMA of Delta_k is below this."
        )
        n_min: int = Field(
            default=20, ge=0, description="Exposures (episodes acted) before a skill may retire."
        )
        validation_episodes: PositiveInt = Field(
            default=3, description="Validation episodes per skill and task at each audit."
        )
        reuse_prob: float = Field(
            default=0.5,
            ge=0.0,
            le=1.0,
            description="Chance that a training episode is played by the task's bank skill.",
        )
        tau: float = Field(
            default=0.5, description="Success (the task's score) below this counts as a failure."
        )
        patience: PositiveInt = Field(
            default=3, description="M: failing evaluations in a row that trigger an expansion."
        )
        retire: bool = Field(default=True, description="Retire skills (off: the ablation).")
        expand: bool = Field(default=True, description="Expand the bank (off: the ablation).")
        skill_lr: float = Field(default=1e-3, gt=0.0, description="Adam lr of expanded skills.")
        skill_batch_size: PositiveInt = Field(
            default=128, description="Replay minibatch of an expanded skill's updates."
        )
        skill_train_every: PositiveInt = Field(
            default=10, description="Env steps between an expanded skill's updates."
        )
        skill_target_update_every: PositiveInt = Field(
            default=500, description="Updates between an expanded skill's target copies."
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        c = config
        self.bank = SkillBank(c.capacity, c.ema, c.epsilon, c.n_min)
        self.failures = FailureCounter(c.tau, c.patience)
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        """Frozen parameters of each active skill that is not training."""
        self.training: dict[int, SkillLearner] = {}
        """Expanded skills still training, by skill index."""
        self.seen: list[int] = []
        """Tasks trained so far, in order of first training."""
        self.expanded_in_window = False
        self.replay: BatchSource | None = None
        self.agent: Agent | None = None
        self.rng = np.random.default_rng(0)  # reseeded from the run's seed at run start

    # --- the skills service ----------------------------------------------------------
    def select(self, obs: np.ndarray, task: int | None, evaluation: bool) -> int:
        """Evaluation: the task's best validated skill; training: see the module docstring.
        Training choices count as exposures of the skill chosen."""
        if task is None:
            raise ValueError("slim chooses skills per task: it needs the task id")
        if evaluation:
            return self.bank.best(task)
        expanding = [k for k, learner in self.training.items() if learner.task == task]
        candidate = expanding[0] if expanding else self.bank.best(task)
        if candidate == LEARNER_SKILL or self.rng.random() >= self.config.reuse_prob:
            return LEARNER_SKILL
        self.bank.skills[candidate].exposures += 1
        return candidate

    def parameters(
        self, skill: int, live: Mapping[str, torch.Tensor]
    ) -> Mapping[str, torch.Tensor]:
        """A bank skill's parameters (frozen, or its learner's while it trains); the
        learner's own ``live`` ones for :data:`~l2rl.types.LEARNER_SKILL`.

        Raises:
            KeyError: not an active skill.
        """
        if skill == LEARNER_SKILL:
            return live
        if skill in self.training:
            return dict(self.training[skill].module.named_parameters())
        if skill not in self.snapshots:
            raise KeyError(f"skill {skill} is not in the bank (active: {sorted(self.snapshots)})")
        return self.snapshots[skill]

    def train_parameters(
        self, live: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[Mapping[str, torch.Tensor]]:
        """The learner trains its own parameters: ``live`` unchanged."""
        return list(live)

    # --- hooks -----------------------------------------------------------------------
    def wire(self, services: AgentServices) -> None:
        """Take the replay: an expanded skill trains on it."""
        self.replay = services.replay

    def learners(self) -> Sequence[Learner]:
        """The expanded skills still training."""
        return list(self.training.values())

    def on_run_start(self, ctx: RunContext) -> None:
        """Check the run and seed the choice of acting skills.

        Raises:
            ConfigError: a task-agnostic scenario, or expansion without a replay.
        """
        self._require_task_aware(ctx)
        if self.config.expand and self.replay is None:
            raise ConfigError("slim with expand: true needs a replay to train new skills on")
        self.agent = ctx.agent
        self.rng = np.random.default_rng(derive_seed(ctx.seed, _SLIM_STREAM))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A new window: failures count afresh, one expansion may happen."""
        if task.index not in self.seen:
            self.seen.append(task.index)
        self.failures.reset()
        self.expanded_in_window = False

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """Count the current task's failures; expand when they persist."""
        task = ctx.task
        if task is None or not self.config.expand or self.expanded_in_window:
            return
        score = next(r.score for r in records if r.eval_task == task.index)
        if self.failures.observe(score):
            self.failures.reset()
            self._expand(ctx, task.index)

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Freeze expanded skills, audit the bank, retire, snapshot the learner."""
        for skill in list(self.training):
            self._freeze(ctx, skill)
        self._audit(ctx)
        if self.bank.full:
            self._event(ctx, "full", LEARNER_SKILL, task.index, math.nan)
            return
        skill = self.bank.add(task.index, "snapshot")
        self.snapshots[skill] = {
            n: p.detach().clone() for n, p in self._policy().named_parameters()
        }
        for seen in self.seen:  # equal to the learner's now: same scores
            self.bank.set_value(skill, seen, self.bank.score(LEARNER_SKILL, seen))
        self._event(ctx, "add", skill, task.index, math.nan)

    # --- the lifecycle ---------------------------------------------------------------
    def _audit(self, ctx: RunContext) -> None:
        """Validate every skill and the learner on the seen tasks; update the EMAs; retire."""
        episodes = self.config.validation_episodes
        for skill in [LEARNER_SKILL, *sorted(self.bank.skills)]:
            for task in self.seen:
                outcome = ctx.validate(task, skill, episodes)
                score = ctx.tasks[task].normalizer(outcome.returns, outcome.successes)
                self.bank.set_value(skill, task, score)
                if skill != LEARNER_SKILL:
                    self.bank.skills[skill].exposures += episodes
        averages = self.bank.audit(self.seen)
        for skill, average in averages.items():
            self._event(ctx, "retain", skill, self.bank.skills[skill].task, average)
        retired = self.bank.to_retire() if self.config.retire else None
        if retired is not None:
            record = self.bank.skills[retired]
            self._event(ctx, "retire", retired, record.task, float(record.contribution or 0.0))
            self.bank.remove(retired)
            del self.snapshots[retired]

    def _expand(self, ctx: RunContext, task: int) -> None:
        """Start a new skill from a copy of the learner, trained on ``task``."""
        self.expanded_in_window = True  # one try per window, with or without room
        if self.bank.full:
            self._event(ctx, "full", LEARNER_SKILL, task, math.nan)
            return
        assert self.replay is not None and self.agent is not None  # checked at run start
        skill = self.bank.add(task, "expansion")
        learner = SkillLearner(
            self._learner_name(skill), self._policy(), self.agent, self.replay, task, self.config
        )
        self.training[skill] = learner
        names = tuple(n for n, _ in learner.module.named_parameters())
        ctx.parameters_changed(
            ParametersChanged(learner.learner_name, f"slim: expanded skill {skill}", added=names)
        )
        self._event(ctx, "expand", skill, task, math.nan)

    def _freeze(self, ctx: RunContext, skill: int) -> None:
        """An expanded skill stops training: its parameters join the bank as they are."""
        learner = self.training.pop(skill)
        self.snapshots[skill] = learner.frozen()
        names = tuple(self.snapshots[skill])
        ctx.parameters_changed(
            ParametersChanged(learner.learner_name, f"slim: froze skill {skill}", removed=names)
        )
        self._event(ctx, "freeze", skill, learner.task, math.nan)

    def _event(self, ctx: RunContext, kind: str, skill: int, task: int, delta: float) -> None:
        record = self.bank.skills.get(skill)
        event = SkillEvent(
            global_step=ctx.global_step,
            event=kind,
            skill=skill,
            task=task,
            delta=delta,
            exposures=0 if record is None else record.exposures,
            bank_size=len(self.bank.skills) - (kind == "retire"),
        )
        self._emit(ctx, event)

    def _learner_name(self, skill: int) -> str:
        return f"{self.name or 'slim'}/skill-{skill}"

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The bank, its frozen skills, the training ones (with their optimizers), the
        tasks seen, the window's flags and the random stream."""
        return {
            "bank": self.bank.state_dict(),
            "snapshots": {k: dict(v) for k, v in self.snapshots.items()},
            "training": {k: learner.state_dict() for k, learner in self.training.items()},
            "seen": list(self.seen),
            "failures": self.failures.failures,
            "expanded_in_window": self.expanded_in_window,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, rebuilding a grown bank's learners
        (the runner picks them up after a checkpoint is restored)."""
        self.bank.load_state_dict(state["bank"])
        self.snapshots = {
            int(k): {n: t.clone() for n, t in v.items()} for k, v in state["snapshots"].items()
        }
        self.training = {}
        for key, saved in state["training"].items():
            skill = int(key)
            if self.agent is None or self.replay is None:
                raise RuntimeError("slim: load a state with training skills inside a run")
            learner = SkillLearner(
                self._learner_name(skill),
                self._policy(),
                self.agent,
                self.replay,
                int(saved["task"]),
                self.config,
            )
            learner.load_state_dict(saved)
            self.training[skill] = learner
        self.seen = [int(t) for t in state["seen"]]
        self.failures.failures = int(state["failures"])
        self.expanded_in_window = bool(state["expanded_in_window"])
        self.rng.bit_generator.state = state["rng"]
