"""The runner: the one training loop of l2rl (its outline is in :mod:`l2rl.core`).

It trains the agent (and every learner the components offer) through the scenario's
schedule, fires the hooks in their documented order, runs the one update path, evaluates
every task before training, every ``evaluation.every`` steps and at the end of every window,
and hands records to a :class:`Recorder`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2rl.checkpoint import WindowState, restore_checkpoint, write_checkpoint
from l2rl.config import EvalConfig
from l2rl.core import (
    AGENT_LEARNER,
    SERVICE_SLOTS,
    Agent,
    Component,
    Learner,
    RunContext,
    SkillService,
)
from l2rl.evaluation import EpisodeOutcomes, run_episodes
from l2rl.hooks import ComponentError, Hook, HookDispatcher
from l2rl.logging.recorder import Recorder
from l2rl.progress import ProgressDisplay
from l2rl.scenario import Scenario
from l2rl.seeding import derive_seed
from l2rl.types import (
    LEARNER_SKILL,
    EnvSpec,
    EpisodeRecord,
    EvalRecord,
    Losses,
    ParametersChanged,
    SleepRecord,
    Step,
    TaskChange,
    TaskInfo,
    UpdateStats,
    WindowSummary,
)


class LossKeyError(ValueError):
    """A loss dict has a key without the ``loss_`` prefix, or two sources share a key."""


class NonFiniteError(FloatingPointError):
    """A learner's loss, gradient or (after its optimizer step) parameter is NaN or
    infinite: the run stops there.

    Records up to this step and the checkpoint of the last finished window stay on disk, so
    ``l2rl resume`` can continue from it (with a changed setting, e.g. a smaller ``lr``).

    Attributes:
        learner: the learner's name.
        key: the loss key, ``"gradient of <parameter>"`` or ``"parameter <parameter> (after
            the optimizer step)"``.
        global_step: the env step of the update.
        value: the offending value (NaN or +-inf).
    """

    def __init__(self, learner: str, key: str, global_step: int, value: float) -> None:
        super().__init__(
            f"learner {learner!r}: {key} is {value} at step {global_step}; the run stops "
            "here (records so far and the last window's checkpoint are kept)"
        )
        self.learner, self.key, self.global_step, self.value = learner, key, global_step, value

    def __reduce__(self) -> tuple[type[NonFiniteError], tuple[str, str, int, float]]:
        # Worker processes pickle exceptions; keep the fields across.
        return (NonFiniteError, (self.learner, self.key, self.global_step, self.value))


@dataclass(frozen=True)
class RunResult:
    """What one run returns: its evaluation records and how much work it did."""

    records: list[EvalRecord]
    env_steps: int
    updates: int
    episodes: int
    wall_seconds: float


_TRAIN_ENV, _EVAL_ENV, _VALIDATION_ENV = 0, 1, 2


class Runner:
    """Trains ``agent`` with ``components`` through ``scenario`` and evaluates continually.

    Args:
        scenario: tasks and schedule.
        agent: the base learner.
        components: plug-ins, dispatched in role order.
        evaluation: evaluation schedule and episodes.
        seed: the run's seed (train and eval environments derive theirs from it).
        recorder: where records and scalars go (default: nowhere but the returned result).
        progress: a progress display, or ``None``.
        checkpoint_path: where to save agent and component state at each window's end.
        checkpoint_every: also save it every this many env steps inside a window (at the
            end of the round of env steps that reaches a multiple); ``None``: only at
            window ends.
        log_every_updates: write loss scalars every this many optimiser steps.
        env_spec: the scenario's spaces if already computed (saves building every env);
            its ``num_envs`` training envs are stepped in lockstep, the agent acting on all
            at once through ``Agent.act_batch``. Window budgets count all transitions.
        num_envs: without ``env_spec``, the number of training envs (default 1); with it,
            must agree with ``env_spec.num_envs``.
    """

    def __init__(
        self,
        scenario: Scenario,
        agent: Agent,
        components: Sequence[Component],
        evaluation: EvalConfig,
        seed: int,
        recorder: Recorder | None = None,
        progress: ProgressDisplay | None = None,
        checkpoint_path: Path | None = None,
        checkpoint_every: int | None = None,
        log_every_updates: int = 100,
        env_spec: EnvSpec | None = None,
        num_envs: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.agent = agent
        self.hooks = HookDispatcher(components)
        self.evaluation = evaluation
        self.seed = seed
        self.recorder = recorder or Recorder()
        self.progress = progress
        self.checkpoint_path = checkpoint_path
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
        self.checkpoint_every = checkpoint_every
        self.log_every_updates = log_every_updates
        self.env_spec = env_spec or scenario.env_spec(num_envs=num_envs or 1)
        if num_envs is not None and num_envs != self.env_spec.num_envs:
            raise ValueError(
                f"num_envs={num_envs} disagrees with env_spec.num_envs={self.env_spec.num_envs}"
            )
        if self.env_spec.num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {self.env_spec.num_envs}")
        self.num_envs = self.env_spec.num_envs
        self.ctx = RunContext(agent, self.env_spec, scenario.tasks, seed, self.recorder)
        self.learners = self._learners(agent, self.hooks.components)
        self.ctx.learner_updates.update({learner.learner_name: 0 for learner in self.learners})
        self._co_learners = _co_learners(self.learners)
        self.records: list[EvalRecord] = []
        self._episodes = 0
        self._recent_returns: deque[float] = deque(maxlen=20)
        self._eval_envs: list[list[gym.Env[Any, Any]]] = []  # per task, its lockstep slots
        self._updates_at_window_start: dict[str, int] = {}
        # Task-agnostic runs with a task-change detector infer their tasks (see
        # RunContext.request_task_change); the true boundaries stay hidden.
        self._detecting = not self.scenario.task_aware and any(
            c.role == "detector" for c in self.hooks.components
        )
        self.ctx.infers_tasks = self._detecting
        self._sleepers = [
            c for c in self.hooks.components if type(c).sleep_batches is not Component.sleep_batches
        ]
        self._inferred: TaskInfo | None = None
        self._inferred_ids = 0
        self._validated = 0  # validation episodes so far, and when the window opened
        self._task_at_hand: int | None = None  # ctx.validate(None, ...) plays this task
        self._validated_at_window_start = 0
        # A skill manager picks the skill of every episode once the agent bound its service.
        self._skills = _bound_skills(self.hooks.components)
        if self._skills is not None:
            self.ctx._validator = self._validate
        self.ctx._change_listener = self._parameters_changed
        self.ctx._skill_events = self.recorder.skill_event

    # --- the loop ---------------------------------------------------------------------
    def run(
        self,
        resume: Mapping[str, Any] | None = None,
        previous_records: Sequence[EvalRecord] = (),
    ) -> RunResult:
        """Run the whole schedule; returns the records (also given to the recorder).

        Args:
            resume: a checkpoint (see ``checkpoint_path``): training goes on from where it
                was written (the next window, or inside its window) with every state
                restored, so the rest of the run is the one an uninterrupted run would have
                had (inside a window, unless its state says the resume is inexact).
            previous_records: the records the interrupted run had made up to that window's
                end (kept in the result; not given to the recorder again).
        """
        start = time.perf_counter()
        slots = min(
            self.evaluation.parallel_episodes or self.evaluation.episodes, self.evaluation.episodes
        )
        self._eval_envs = [[task.make_env() for _ in range(slots)] for task in self.scenario.tasks]
        try:
            self.hooks.fire(Hook.RUN_START, self.ctx)
            window: WindowState | None = None
            if resume is None:
                self._evaluate(block=-1, trained_task=-1, block_end=True)
                first_block = 0
            else:
                block, window = self._restore(resume)
                first_block = block if window is not None else block + 1
                self.records = list(previous_records)
            for block in range(first_block, len(self.scenario.schedule)):
                spec = self.scenario.schedule[block]
                self._train_block(block, spec.task_index, spec.steps, window)
                window = None
            self.hooks.fire(Hook.RUN_END, self.ctx)
        finally:
            for env in (env for envs in self._eval_envs for env in envs):
                env.close()
            self.recorder.close()
        return RunResult(
            records=list(self.records),
            env_steps=self.ctx.global_step,
            updates=self.ctx.update_index,
            episodes=self._episodes,
            wall_seconds=time.perf_counter() - start,
        )

    @staticmethod
    def _learners(agent: Agent, components: Sequence[Component]) -> list[Learner]:
        """The agent, then each component's learners in dispatch order; names unique."""
        learners: list[Learner] = [agent]
        owners = {agent.learner_name: "the agent"}
        for component in components:
            for learner in component.learners():
                if learner.learner_name in owners:
                    raise ValueError(
                        f"learner name {learner.learner_name!r} of component "
                        f"{component.name!r} is already used by {owners[learner.learner_name]}"
                    )
                owners[learner.learner_name] = f"component {component.name!r}"
                learners.append(learner)
        if agent.learner_name != AGENT_LEARNER:
            raise ValueError(f"the agent's learner_name must be {AGENT_LEARNER!r}")
        names = set(owners)
        for component in components:
            if component.learner not in names:
                raise ValueError(
                    f"component {component.name!r} is aimed at learner {component.learner!r}, "
                    f"but the run's learners are {sorted(names)}"
                )
        return learners

    def _task_info(self, task_index: int, block: int) -> TaskInfo:
        schedule = self.scenario.schedule
        return TaskInfo(
            index=task_index,
            name=self.scenario.tasks[task_index].name,
            block=block,
            num_tasks=len(self.scenario.tasks),
            start_step=sum(b.steps for b in schedule[: max(block, 0)]),
            steps=schedule[block].steps if block >= 0 else 0,
        )

    def start_window(self, info: TaskInfo) -> None:
        """Open a training window: the agent and the components learn of the task (or,
        task-agnostic with a detector, of the first inferred task when the run starts)."""
        self._updates_at_window_start = dict(self.ctx.learner_updates)
        self._validated_at_window_start = self._validated
        if self.scenario.task_aware:
            self.ctx.task = info
            self.agent.on_task_start(info)
            self.hooks.fire(Hook.TASK_START, self.ctx, info)
        elif self._detecting and self._inferred is None:
            self._inferred_ids = 1
            self._open_inferred_task(0, block=0)
        if self.progress is not None:
            self.progress.start_block(info.block, len(self.scenario.schedule), info.name)

    def end_window(self, info: TaskInfo) -> None:
        """Close a training window: its closing evaluation, consolidation, its summary
        (optimiser steps per learner) to the recorder, checkpoint."""
        self._evaluate(info.block, info.index, block_end=True)
        if self.scenario.task_aware:
            self.hooks.fire(Hook.TASK_END, self.ctx, info)
            self.hooks.fire(Hook.CONSOLIDATE, self.ctx, info)
            self._sleep(info)
            if self._sleepers:  # the L2M log's post-sleep round (l2rl.logging.l2logger)
                self._evaluate(info.block, info.index, block_end=True, after_sleep=True)
            self.ctx.task = None
        elif self._inferred is not None and info.block == len(self.scenario.schedule) - 1:
            self._close_inferred_task()  # the run ends: so does the inferred task
        # Learners of the run now, and those a skill manager removed after they trained in
        # this window (not those gone before it: they had no part in it).
        current = {learner.learner_name for learner in self.learners}
        updates = {
            name: count - self._updates_at_window_start.get(name, 0)
            for name, count in self.ctx.learner_updates.items()
            if name in current or count != self._updates_at_window_start.get(name, 0)
        }
        validated = self._validated - self._validated_at_window_start
        step = self.ctx.global_step
        summary = WindowSummary(info.block, info.index, info.name, step, updates, validated)
        self.recorder.window(summary)
        self._checkpoint(info.block)

    # --- inferred tasks (task-agnostic runs with a detector) ----------------------------
    def _open_inferred_task(self, index: int, block: int) -> None:
        info = TaskInfo(
            index=index,
            name=f"inferred-{index}",
            block=block,
            num_tasks=self._inferred_ids,
            start_step=self.ctx.global_step,
            inferred=True,
        )
        self._inferred = self.ctx.task = info
        self.agent.on_task_start(info)
        self.hooks.fire(Hook.TASK_START, self.ctx, info)

    def _close_inferred_task(self) -> None:
        info = self._inferred
        assert info is not None  # only called with an inferred task open
        self.hooks.fire(Hook.TASK_END, self.ctx, info)
        self.hooks.fire(Hook.CONSOLIDATE, self.ctx, info)
        self._sleep(info)
        self.ctx.task = self._inferred = None

    def _change_inferred_task(self, reason: str, task_id: int | None) -> None:
        """Make the change a component asked for: close the inferred task, open the next."""
        self.ctx.pending_task_change = None
        current = self._inferred
        if current is None:
            raise RuntimeError(
                f"a component asked for a task change ({reason!r}), but no inferred task is "
                "open: only a run with a component of role 'detector' infers tasks"
            )
        self._close_inferred_task()
        index = self._inferred_ids if task_id is None else task_id
        new = index >= self._inferred_ids
        self._inferred_ids = max(self._inferred_ids, index + 1)
        self._open_inferred_task(index, block=current.block + 1)
        self.recorder.task_change(TaskChange(self.ctx.global_step, reason, index, new))

    def _train_block(
        self, block: int, task_index: int, steps: int, resumed: WindowState | None
    ) -> None:
        ctx, agent, hooks = self.ctx, self.agent, self.hooks
        info = self._task_info(task_index, block)
        task_id = task_index if self.scenario.task_aware else None
        self._task_at_hand = task_index
        if resumed is None:
            self.start_window(info)
        else:  # the window was opened before the checkpoint: its hooks have run
            self._reopen_window(info, resumed)

        # num_envs copies of the task's env stepped in lockstep in this process (on 2 cores
        # a subprocess pool loses to this for cheap envs); each transition then goes through
        # the same per-step path, so hooks, updates and evaluation see single transitions.
        envs = resumed.restore_envs() if resumed is not None else None
        skills = self._skills
        if envs is not None and resumed is not None:
            obs, first = list(resumed.obs), list(resumed.first)
            episode_returns = list(resumed.episode_returns)
            acting = list(resumed.skills) or [LEARNER_SKILL] * len(envs)
        else:
            envs = [self.scenario.tasks[task_index].make_env() for _ in range(self.num_envs)]
            # a fresh window's seeds, or (inexact resume) seeds of the step it resumes at
            tail = () if resumed is None else (ctx.global_step,)
            obs = [
                env.reset(seed=derive_seed(self.seed, _TRAIN_ENV, block, i, *tail))[0]
                for i, env in enumerate(envs)
            ]
            episode_returns = [0.0] * len(envs)
            first = [True] * len(envs)  # obs[i] starts an episode
            agent.on_episode_start(range(len(envs)), evaluation=False)
            acting = [self._select(o, task_id, evaluation=False) for o in obs]
        every = self.evaluation.every
        on_step = hooks.handlers(Hook.STEP)
        block_start = time.perf_counter()
        done = 0 if resumed is None else resumed.done
        save_every = self.checkpoint_every if self.checkpoint_path is not None else None
        next_save = None if save_every is None else (ctx.global_step // save_every + 1) * save_every
        try:
            while done < steps:
                if skills is not None:
                    actions = list(agent.act_skills(np.stack(obs), task_id, True, np.array(acting)))
                elif len(envs) == 1:
                    actions = [agent.act(obs[0], task_id, True)]
                else:
                    actions = list(agent.act_batch(np.stack(obs), task_id, True))
                # The last round may need fewer transitions than there are envs.
                for i, env in enumerate(envs[: steps - done]):
                    next_obs, reward, terminated, truncated, _ = env.step(actions[i])
                    ctx.global_step += 1
                    done += 1
                    step = Step(
                        obs=obs[i],
                        action=actions[i],
                        reward=float(reward),
                        next_obs=next_obs,
                        terminated=bool(terminated),
                        truncated=bool(truncated),
                        task_id=task_id,
                        global_step=ctx.global_step,
                        env_index=i,
                        first=first[i],
                        skill=acting[i],
                    )
                    agent.observe(step)
                    if on_step:
                        hooks.fire(Hook.STEP, ctx, step)
                    for learner in self.learners:
                        for batch in learner.batches(ctx.global_step):
                            self._update(learner, batch)
                    if ctx.pending_task_change is not None:
                        self._change_inferred_task(*ctx.pending_task_change)
                    episode_returns[i] += float(reward)
                    first[i] = terminated or truncated
                    if first[i]:
                        self._end_episode(info, episode_returns[i])
                        episode_returns[i] = 0.0
                        obs[i], _ = env.reset()
                        agent.on_episode_start([i], evaluation=False)
                        acting[i] = self._select(obs[i], task_id, evaluation=False)
                    else:
                        obs[i] = next_obs
                    if ctx.global_step % every == 0 and done != steps:
                        self._evaluate(block, task_index, block_end=False)
                    if self.progress is not None and ctx.global_step % 250 == 0:
                        elapsed = time.perf_counter() - block_start
                        self._show_progress(self.progress, done, elapsed)
                # Between rounds, every env's step is taken and observed: a checkpoint
                # here resumes the same loop (next_save is None without checkpoint_every).
                if next_save is not None and save_every and ctx.global_step >= next_save:
                    if done < steps:
                        state = WindowState.capture(
                            done,
                            obs,
                            episode_returns,
                            first,
                            envs,
                            self._updates_at_window_start,
                            agent.resumes_mid_episode,
                            acting if skills is not None else (),
                        )
                        self._checkpoint(block, state)
                    next_save = (ctx.global_step // save_every + 1) * save_every
        finally:
            for env in envs:
                env.close()
        self.end_window(info)

    def _end_episode(self, info: TaskInfo, episode_return: float) -> None:
        self._episodes += 1
        self._recent_returns.append(episode_return)
        step = self.ctx.global_step
        self.recorder.scalar("train/episode_return", episode_return, step)
        self.recorder.episode(
            EpisodeRecord(info.block, info.index, info.name, step, episode_return)
        )

    def _show_progress(self, progress: ProgressDisplay, block_steps: int, elapsed: float) -> None:
        recent = float(np.mean(self._recent_returns)) if self._recent_returns else None
        progress.update(self.ctx.global_step, recent, block_steps / max(elapsed, 1e-9))

    # --- one optimiser step of one learner --------------------------------------------
    def _update(self, learner: Learner, batch: Any, sleeper: Component | None = None) -> None:
        """One optimiser step of ``learner`` on ``batch``: its losses and its components'
        (or, in a sleep phase, only the ``sleeper``'s sleep losses)."""
        ctx, hooks, name = self.ctx, self.hooks, learner.learner_name
        ctx.learner = name
        hooks.fire(Hook.BEFORE_UPDATE, ctx, learner=name)
        if sleeper is None:
            losses = self._collect_losses(learner, batch)
        else:
            losses = self._sleep_losses(sleeper, batch)
        if not losses:
            raise LossKeyError(f"learner {name!r} and its components gave no loss terms")
        total = torch.stack([v.reshape(()) for v in losses.values()]).sum()
        if not torch.isfinite(total):
            self._raise_non_finite_loss(name, losses)
        # Learners whose parameters the losses reach too (a hypernetwork generating this
        # learner's weights) step with it, each clipped and checked on its own.
        stepped = [learner, *self._co_learners[name]]
        for each in stepped:
            each.optimizer.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        hooks.fire(Hook.AFTER_BACKWARD, ctx, learner=name)
        for each in stepped:
            self._check_gradients(each)
        for each in stepped:
            each.optimizer.step()
            self._check_parameters(each)
            ctx.learner_updates[each.learner_name] += 1
        count = ctx.learner_updates[name]
        log_now = count % self.log_every_updates == 0
        if log_now or hooks.has(Hook.AFTER_UPDATE, name):
            values = {k: float(v.detach()) for k, v in losses.items()}
            if log_now:
                prefix = "train" if name == AGENT_LEARNER else f"train/{name}"
                if sleeper is not None:
                    prefix = f"sleep/{name}"
                for key, value in values.items():
                    self.recorder.scalar(f"{prefix}/{key}", value, ctx.global_step)
            stats = UpdateStats(losses=values, update_index=count, learner=name)
            hooks.fire(Hook.AFTER_UPDATE, ctx, stats, learner=name)
        ctx.learner = None
        # After the hooks, so that target networks copy parameters as components left them
        # (PackNet restores frozen weights in after_update).
        for each in stepped:
            each.after_optimizer_step()

    def _raise_non_finite_loss(self, learner: str, losses: Losses) -> None:
        for key, value in losses.items():
            number = float(value.detach().sum())
            if not math.isfinite(number):
                raise NonFiniteError(learner, f"loss {key!r}", self.ctx.global_step, number)
        raise NonFiniteError(learner, "the summed loss", self.ctx.global_step, math.inf)

    def _check_gradients(self, learner: Learner) -> None:
        """Clip to ``max_grad_norm``; raise naming the first parameter whose gradient has a
        NaN/inf element. Elements are inspected only when the norm (which clipping needs
        anyway) is not finite."""
        params = [p for group in learner.optimizer.param_groups for p in group["params"]]
        if learner.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, learner.max_grad_norm)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if torch.isfinite(norm):
            return
        names = {id(p): n for n, p in learner.networks().named_parameters()}
        for param in params:
            if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                bad = float(param.grad[~torch.isfinite(param.grad)].flatten()[0])
                where = names.get(id(param), "a parameter outside networks()")
                raise NonFiniteError(
                    learner.learner_name, f"gradient of {where}", self.ctx.global_step, bad
                )
        # Every element is finite: only the float32 sum of squares overflowed.

    def _check_parameters(self, learner: Learner) -> None:
        """Raise naming the first parameter the optimizer step made NaN/inf (a huge but
        finite gradient times the learning rate overflows). Elements are inspected only
        when the parameters' global norm is not finite."""
        params = [p for group in learner.optimizer.param_groups for p in group["params"]]
        with torch.no_grad():
            norm = torch.nn.utils.get_total_norm(params) if params else torch.zeros(())
        if torch.isfinite(norm):
            return
        names = {id(p): n for n, p in learner.networks().named_parameters()}
        for param in params:
            finite = torch.isfinite(param.detach())
            if not bool(finite.all()):
                bad = float(param.detach()[~finite].flatten()[0])
                where = names.get(id(param), "a parameter outside networks()")
                raise NonFiniteError(
                    learner.learner_name,
                    f"parameter {where} (after the optimizer step)",
                    self.ctx.global_step,
                    bad,
                )
        # Every element is finite: only the float32 sum of squares overflowed.

    def _sleep_losses(self, sleeper: Component, batch: Any) -> Losses:
        try:
            losses = dict(sleeper.sleep_losses(self.ctx, batch))
        except Exception as exc:
            raise ComponentError(sleeper.name, "sleep_losses", exc) from exc
        bad = [k for k in losses if not k.startswith("loss_")]
        if bad:
            raise LossKeyError(f"loss keys must start with 'loss_': {bad} (from {sleeper.name!r})")
        return losses

    def _sleep(self, task: TaskInfo) -> None:
        """The sleep phase after ``task`` closed: every consolidator's batches, in order."""
        ctx = self.ctx
        for component in self._sleepers:
            (learner,) = [x for x in self.learners if x.learner_name == component.learner]
            updates = 0
            ctx.sleeping = True
            try:
                batches = _named_errors(
                    component, "sleep_batches", component.sleep_batches, ctx, task
                )
                for batch in batches:
                    self._update(learner, batch, sleeper=component)
                    updates += 1
            finally:
                ctx.sleeping = False
            record = SleepRecord(
                block=task.block,
                task=task.name,
                global_step=ctx.global_step,
                consolidator=component.name,
                learner=learner.learner_name,
                updates=updates,
                inferred=task.inferred,
            )
            self.recorder.sleep(record)

    def _collect_losses(self, learner: Learner, batch: Any) -> Losses:
        losses = dict(learner.losses(batch))
        origin = "agent" if learner is self.agent else f"learner {learner.learner_name!r}"
        sources = dict.fromkeys(losses, origin)
        for component in self.hooks.loss_providers(learner.learner_name):
            try:
                extra = component.losses(self.ctx, batch)
            except Exception as exc:
                raise ComponentError(component.name, "losses", exc) from exc
            for key, value in extra.items():
                if key in losses:
                    raise LossKeyError(
                        f"loss key {key!r} from component {component.name!r} is already "
                        f"given by {sources[key]}"
                    )
                losses[key] = value
                sources[key] = f"component {component.name!r}"
        bad = [k for k in losses if not k.startswith("loss_")]
        if bad:
            raise LossKeyError(
                f"loss keys must start with 'loss_': {bad} (from {[sources[k] for k in bad]})"
            )
        return losses

    # --- evaluation -------------------------------------------------------------------
    def _evaluate(
        self, block: int, trained_task: int, block_end: bool, after_sleep: bool = False
    ) -> None:
        """One evaluation round of every task. ``after_sleep``: the round after a window's
        sleep phase, recorded apart (``sleep_evals.jsonl``) and not shown to components
        (:attr:`Hook.EVAL`) or the run's metrics: it exists for the L2M log."""
        hooks, ctx = self.hooks, self.ctx
        aware = self.scenario.task_aware
        records = []
        for index, task in enumerate(self.scenario.tasks):
            info = self._task_info(index, block)
            task_id = index if aware else None
            training_task, self._task_at_hand = self._task_at_hand, index
            if aware:
                hooks.fire(Hook.EVAL_TASK_START, ctx, info)
            else:
                hooks.fire(Hook.EVAL_HIDDEN_TASK_START, ctx)
            outcome = self._play(index, task_id, None, self.evaluation.episodes, _EVAL_ENV)
            if aware:
                hooks.fire(Hook.EVAL_TASK_END, ctx, info)
            self._task_at_hand = training_task
            score = task.normalizer(outcome.returns, outcome.successes)
            if not math.isfinite(score):
                raise ValueError(f"task {task.name!r}: normaliser returned {score}")
            records.append(
                EvalRecord(
                    global_step=ctx.global_step,
                    block=block,
                    trained_task=trained_task,
                    eval_task=index,
                    eval_task_name=task.name,
                    mean_return=float(np.mean(outcome.returns)),
                    score=score,
                    episodes=self.evaluation.episodes,
                    block_end=block_end,
                    episode_returns=tuple(float(r) for r in outcome.returns),
                )
            )
        if after_sleep:
            self.recorder.sleep_evals(records)
            return
        self.records.extend(records)
        self.recorder.evals(records)
        # In task-agnostic runs components must not learn which task a record scores.
        shown = records if aware else [_without_task(r) for r in records]
        hooks.fire(Hook.EVAL, ctx, tuple(shown))

    def _play(
        self, index: int, task_id: int | None, skill: int | None, episodes: int, stream: int
    ) -> EpisodeOutcomes:
        """Greedy episodes of task ``index`` on its evaluation envs, reset from seed
        stream ``stream``; with a skill manager, ``skill`` acts (``None``: the skill the
        manager selects at each episode's start)."""
        agent, skills = self.agent, self._skills
        chosen: dict[int, int] = {}  # slot -> skill of its episode, picked at first sight

        def on_reset(slots: list[int]) -> None:
            agent.on_episode_start(slots, evaluation=True)
            for slot in slots:
                chosen.pop(slot, None)

        def policy(obs: np.ndarray) -> Sequence[Any]:
            if skills is None:
                return agent.act_batch(obs, task_id, False)
            for slot, o in enumerate(obs):
                if slot not in chosen:
                    chosen[slot] = skill if skill is not None else self._select(o, task_id, True)
            acting = np.array([chosen[slot] for slot in range(len(obs))])
            return agent.act_skills(obs, task_id, False, acting)

        return run_episodes(
            self._eval_envs[index],
            policy,
            episodes,
            seed=derive_seed(self.seed, stream, index),
            max_steps=self.evaluation.max_episode_steps,
            on_reset=on_reset,
        )

    # --- skills -----------------------------------------------------------------------
    def _select(self, obs: np.ndarray, task_id: int | None, evaluation: bool) -> int:
        """The skill manager's skill for the episode starting at ``obs``."""
        if self._skills is None:
            return LEARNER_SKILL
        return int(self._skills.select(obs, task_id, evaluation))

    def _validate(self, task_index: int | None, skill: int, episodes: int) -> EpisodeOutcomes:
        """:meth:`RunContext.validate`: greedy episodes of one skill, from the validation
        seed stream (the same starts at every call)."""
        index = self._task_at_hand if task_index is None else task_index
        if index is None:
            raise RuntimeError("validate(None, ...): no task at hand before the first window")
        task_id = index if self.scenario.task_aware else None
        self._validated += episodes
        return self._play(index, task_id, skill, episodes, _VALIDATION_ENV)

    def _parameters_changed(self, change: ParametersChanged) -> None:
        """:meth:`RunContext.parameters_changed`: pick up the learners as they are now and
        tell the components."""
        before = {learner.learner_name for learner in self.learners}
        self._refresh_learners()
        now = {learner.learner_name for learner in self.learners}
        if change.learner not in before | now:
            raise ValueError(
                f"parameters_changed names learner {change.learner!r}, which the run never "
                f"had (its learners: {sorted(now)})"
            )
        self.hooks.fire(Hook.PARAMETERS_CHANGED, self.ctx, change)

    def _refresh_learners(self) -> None:
        """The agent's and the components' learners as they are now (after a skill bank
        grew or shrank, or a checkpoint restored one); each must train every trainable
        parameter of its ``networks()``."""
        self.learners = self._learners(self.agent, self.hooks.components)
        for learner in self.learners:
            self.ctx.learner_updates.setdefault(learner.learner_name, 0)
            _check_optimizer_covers(learner)
        self._co_learners = _co_learners(self.learners)

    # --- checkpoints ------------------------------------------------------------------
    def _schedule(self) -> list[tuple[int, int]]:
        return [(b.task_index, b.steps) for b in self.scenario.schedule]

    def _checkpoint(self, block: int, window: WindowState | None = None) -> None:
        if self.checkpoint_path is None:
            return
        write_checkpoint(
            self.checkpoint_path,
            block=block,
            schedule=self._schedule(),
            ctx=self.ctx,
            episodes=self._episodes,
            agent=self.agent,
            components=self.hooks.components,
            window=window,
            runner={
                "inferred": None if self._inferred is None else asdict(self._inferred),
                "inferred_ids": self._inferred_ids,
                "validated": self._validated,
                "validated_at_window_start": self._validated_at_window_start,
            },
        )

    def _restore(self, checkpoint: Mapping[str, Any]) -> tuple[int, WindowState | None]:
        """Load a checkpoint; returns its window and, if written inside it, its state."""
        block, self._episodes, window, runner = restore_checkpoint(
            checkpoint,
            schedule=self._schedule(),
            ctx=self.ctx,
            agent=self.agent,
            components=self.hooks.components,
        )
        inferred = runner.get("inferred")
        self._inferred = None if inferred is None else TaskInfo(**inferred)
        self._inferred_ids = int(runner.get("inferred_ids", 0))
        self._validated = int(runner.get("validated", 0))
        self._validated_at_window_start = int(runner.get("validated_at_window_start", 0))
        if self._inferred is not None:
            self.ctx.task = self._inferred
        self._refresh_learners()  # a restored skill bank may hold learners of its own
        return block, window

    def _reopen_window(self, info: TaskInfo, state: WindowState) -> None:
        """Resume a window a checkpoint was written in: its opening hooks ran before (their
        effects are in the restored states), so only the runner's own view is set."""
        self._updates_at_window_start = dict(state.updates_at_start)
        if self.scenario.task_aware:
            self.ctx.task = info
        if self.progress is not None:
            self.progress.start_block(info.block, len(self.scenario.schedule), info.name)


def _co_learners(learners: Sequence[Learner]) -> dict[str, list[Learner]]:
    """Per learner name, the learners that train with it (:attr:`Learner.trains_with`).

    Raises:
        ValueError: ``trains_with`` names no learner of the run, the learner itself, or a
            learner that itself trains with another (one level only: the losses reach
            exactly the parameters of the learner updated and of those beside it).
    """
    by_name = {learner.learner_name: learner for learner in learners}
    co: dict[str, list[Learner]] = {name: [] for name in by_name}
    for learner in learners:
        target = learner.trains_with
        if target is None:
            continue
        if target not in by_name or target == learner.learner_name:
            raise ValueError(
                f"learner {learner.learner_name!r} trains with {target!r}, which is not "
                f"another learner of the run ({sorted(by_name)})"
            )
        if by_name[target].trains_with is not None:
            raise ValueError(
                f"learner {learner.learner_name!r} trains with {target!r}, which itself "
                f"trains with {by_name[target].trains_with!r}; name that learner instead"
            )
        co[target].append(learner)
    return co


def _bound_skills(components: Sequence[Component]) -> SkillService | None:
    """The skills service of the run's skill manager, if an agent bound it."""
    role = SERVICE_SLOTS["skills"][0]
    for component in components:
        service = component.service()
        if component.role == role and isinstance(service, SkillService) and service.bound:
            return service
    return None


def _check_optimizer_covers(learner: Learner) -> None:
    """Raise if a trainable parameter of ``learner.networks()`` is outside its optimizer
    (a grown network whose new parameters were never handed to it would silently not
    train)."""
    stepped = {id(p) for group in learner.optimizer.param_groups for p in group["params"]}
    missing = [
        name
        for name, param in learner.networks().named_parameters()
        if param.requires_grad and id(param) not in stepped
    ]
    if missing:
        raise ValueError(
            f"learner {learner.learner_name!r}: trainable parameters outside its optimizer: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )


def _named_errors(
    component: Component, method: str, function: Callable[..., Iterable[Any]], *args: Any
) -> Iterator[Any]:
    """The items of ``function(*args)``, an error raised making or iterating them re-raised
    as a :class:`ComponentError` naming ``component`` and ``method`` (a generator's body runs
    only as it is iterated)."""
    try:
        items = iter(function(*args))
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            yield item
    except Exception as exc:
        raise ComponentError(component.name, method, exc) from exc


def _without_task(record: EvalRecord) -> EvalRecord:
    """``record`` with its task (evaluated and trained) hidden: index -1, no name."""
    return replace(record, eval_task=-1, eval_task_name="", trained_task=-1)
