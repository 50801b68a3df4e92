"""``csp``: Continual Subspace of Policies (Gaya et al. 2023, "Building a Subspace of
Policies for Scalable Continual Learning", ICLR; code facebookresearch/salina ``salina_cl``).

The policy is a convex combination of anchor networks ``theta_1..theta_n`` (paper sec. 3):

    theta(alpha) = sum_i alpha_i theta_i,   alpha in the simplex.

Learning task ``t`` (Algorithm 1): a new anchor ``theta_{n+1}`` is added, initialised as
the mean of the anchors so far, and trained while the frozen anchors are mixed in with
weights ``alpha ~ Dirichlet(1, ..., 1)`` over all ``n + 1``, so the whole new subspace
learns the task. At the task's end the best combination is searched in the old subspace
(``alpha_{n+1} = 0``) and in the new one, each candidate scored by validation episodes
(:meth:`~l2rl.core.RunContext.validate`); the anchor is **kept** if ``R_new >= (1 +
threshold) R_old`` (threshold 0.1), else **pruned**, and the best combination of the
subspace kept is stored for the task (task-aware acting: each task plays with its
``alpha``; a task never trained plays with the newest anchor).

Here the agent's policy module (``dqn``'s Q-network, bound through the ``skills``
service) holds the anchor being trained, and its TD loss runs on the mixed parameters
(:meth:`CSP.train_parameters`: the target network is mixed with the same ``alpha``).
Differences from the paper, which trains SAC: ``alpha`` is drawn per minibatch (the paper
draws one per episode and conditions its critic on it), and training episodes act with the
new anchor alone. The search draws ``candidates`` points of each subspace plus the new
anchor's vertex and the task's stored combination. A cycle's revisit of a task is a new
window and may add an anchor like a new task. Adam's moments restart with each new anchor
(a new network in the paper).

**Searched mode** (task-agnostic runs; the paper's "searched" inference when the task is
not given): training boundaries come from a task-change detector, which is required, and
every choice is made from episodes of the task at hand (``ctx.validate(None, ...)``),
scored by their mean return since a task's normaliser names the task:

- at an inferred task's start, the old subspace is searched on the task at hand (after a
  detected change: the new task), giving ``R_old``; then the new anchor is added;
- every ``score_every`` env steps of the inferred task, the new subspace is searched on the
  task at hand, giving ``R_new``; the closed task's environment is gone once a detector has
  seen the change, so the keep/prune rule at the inferred task's end uses the last score
  taken. A score taken between a true change and its detection plays the next task: the
  detector's delay is the error of this mode. With no score taken (an inferred task
  shorter than ``score_every``), the anchor is pruned unless it is the first;
- before each task's evaluation (:meth:`~l2rl.core.Component.on_eval_hidden_task_start`),
  the whole subspace is searched on the evaluated task (every stored combination, the
  newest anchor's vertex and ``candidates`` Dirichlet points, ``validation_episodes``
  each), and the task is evaluated with the best: a few-shot search whose episodes are
  validation episodes, counted in each window's ``validation_episodes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import RunContext
from l2rl.seeding import derive_seed
from l2rl.types import LEARNER_SKILL, EnvSpec, SkillEvent, Step, TaskInfo

from .manager import SkillManager

_CSP_STREAM = 13  # this component's random stream (derive_seed)
SEARCHED_SKILL = -2
"""The skill of a task-agnostic evaluation: the combination searched for the task at hand."""


def mix(
    anchors: Sequence[Mapping[str, torch.Tensor]], alpha: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``sum_i alpha_i anchors[i]`` per parameter (``len(alpha) == len(anchors)``).

    >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    >>> mix([a, b], torch.tensor([0.25, 0.75]))["w"].tolist()
    [0.75, 0.75]
    """
    if len(alpha) != len(anchors):
        raise ValueError(f"{len(alpha)} weights for {len(anchors)} anchors")
    return {
        name: sum(
            (w * anchor[name] for w, anchor in zip(alpha, anchors, strict=True)),
            torch.zeros_like(anchors[0][name]),
        )
        for name in anchors[0]
    }


def keeps_anchor(new_return: float, old_return: float, threshold: float) -> bool:
    """CSP's rule: keep the new anchor iff ``R_new >= R_old + threshold |R_old|``, the
    paper's ``(1 + threshold) R_old`` for its non-negative returns (for a negative
    ``R_old`` the paper's form would keep an anchor that scores worse).

    >>> keeps_anchor(1.1, 1.0, 0.1), keeps_anchor(1.05, 1.0, 0.1), keeps_anchor(-9, -10, 0.1)
    (True, False, True)
    """
    return new_return >= old_return + threshold * abs(old_return)


class CSP(SkillManager):
    """Component ``csp`` (role ``skill_manager``): see the module docstring.

    It is the ``skills`` service the agent binds; skill ``t`` is task ``t``'s stored
    combination, :data:`~l2rl.types.LEARNER_SKILL` the anchor being trained.

    Raises:
        ConfigError: (at run start) a task-agnostic scenario without a task-change detector.
    """

    class Config(PluginConfig):
        """Options of CSP."""

        threshold: float = Field(
            default=0.1, ge=0.0, description="Keep the new anchor iff R_new >= (1+threshold) R_old."
        )
        candidates: PositiveInt = Field(
            default=8, description="Dirichlet(1) points of each subspace tried at a task's end."
        )
        validation_episodes: PositiveInt = Field(
            default=3, description="Validation episodes per candidate combination."
        )
        score_every: PositiveInt = Field(
            default=2500,
            description="Task-agnostic runs: env steps between searches of the new subspace "
            "on the task at hand (R_new).",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.anchors: list[dict[str, torch.Tensor]] = []
        """The frozen anchors kept so far."""
        self.alphas: dict[int, torch.Tensor] = {}
        """Per task, its best combination (over the first ``len(alpha)`` anchors, plus the
        anchor being trained while a search tries one more)."""
        self.rng = np.random.default_rng(0)  # reseeded from the run's seed at run start
        self.old_best: tuple[torch.Tensor, float] | None = None
        """Searched mode: the old subspace's best on the inferred task in progress."""
        self.new_best: tuple[torch.Tensor, float] | None = None
        """Searched mode: the new subspace's best at its last scoring."""
        self.next_score = 0
        """Searched mode: the global step of the next scoring of the new subspace."""
        self.searched_mode = False

    # --- the skills service ----------------------------------------------------------
    def select(self, obs: np.ndarray, task: int | None, evaluation: bool) -> int:
        """Evaluation: the task's stored combination once it has one (searched mode: the
        combination searched for the task at hand); else (and in training) the anchor
        being trained."""
        if not evaluation:
            return LEARNER_SKILL
        if self.searched_mode:
            return SEARCHED_SKILL if SEARCHED_SKILL in self.alphas else LEARNER_SKILL
        if task is not None and task in self.alphas:
            return task
        return LEARNER_SKILL

    def parameters(
        self, skill: int, live: Mapping[str, torch.Tensor]
    ) -> Mapping[str, torch.Tensor]:
        """The anchor being trained (``LEARNER_SKILL``) or task ``skill``'s combination."""
        if skill == LEARNER_SKILL:
            return live
        if skill not in self.alphas:
            raise KeyError(f"task {skill} has no stored combination (tasks: {sorted(self.alphas)})")
        alpha = self.alphas[skill]
        members = [*self.anchors, dict(live)][: len(alpha)]
        return mix(members, alpha)

    def train_parameters(
        self, live: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[Mapping[str, torch.Tensor]]:
        """One ``alpha ~ Dirichlet(1)`` over the frozen anchors and the trained one, mixing
        each of ``live`` (online and target) with the frozen anchors."""
        if not self.anchors:
            return list(live)
        alpha = torch.from_numpy(self.rng.dirichlet(np.ones(len(self.anchors) + 1)))
        return [mix([*self.anchors, dict(params)], alpha.float()) for params in live]

    # --- hooks -----------------------------------------------------------------------
    def on_run_start(self, ctx: RunContext) -> None:
        """Choose the mode and seed the Dirichlet draws.

        Raises:
            ConfigError: a task-agnostic scenario without a task-change detector.
        """
        self.searched_mode = not ctx.env_spec.task_aware
        if self.searched_mode and not ctx.infers_tasks:
            raise ConfigError(
                "csp in a task-agnostic run needs a task-change detector (a component of "
                "role 'detector'): it adds an anchor at each task change"
            )
        self.rng = np.random.default_rng(derive_seed(ctx.seed, _CSP_STREAM))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A new anchor: the policy module starts at the mean of the anchors, with fresh
        Adam moments. Searched mode: first the old subspace is scored on the task at hand."""
        self.new_best = None
        self.next_score = ctx.global_step + self.config.score_every
        if not self.anchors:
            self.old_best = None
            return
        if self.searched_mode:
            self.old_best = self._search(
                ctx, task.index, None, self._points(len(self.anchors), task.index)
            )
        mean = mix(self.anchors, torch.full((len(self.anchors),), 1.0 / len(self.anchors)))
        with torch.no_grad():
            for name, param in self._policy().named_parameters():
                param.copy_(mean[name])
        ctx.agent.optimizer.state.clear()

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Searched mode: score the new subspace on the task at hand every
        ``score_every`` steps of an inferred task."""
        if self.searched_mode and ctx.global_step >= self.next_score:
            self.next_score += self.config.score_every
            self.new_best = self._search(ctx, self._key(ctx), None, self._new_points(ctx))

    def on_eval_hidden_task_start(self, ctx: RunContext) -> None:
        """Searched mode: search the whole subspace on the task about to be evaluated."""
        self.alphas.pop(SEARCHED_SKILL, None)
        size = len(self.anchors) + 1
        stored = [
            torch.cat([a, torch.zeros(size - len(a))])
            for _, a in sorted(self.alphas.items())
            if len(a) <= size
        ]
        vertex = torch.eye(size)[size - 1]
        points = [*stored, *self._points(size, None), vertex]
        best = self._search(ctx, SEARCHED_SKILL, None, points)
        assert best is not None
        self.alphas[SEARCHED_SKILL] = best[0]

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Search both subspaces (searched mode: take their scores on the task at hand),
        keep or prune the new anchor, store the task's best."""
        n = len(self.anchors)
        if self.searched_mode:
            old, new = self.old_best, self.new_best
            self.old_best = self.new_best = None
            if new is None and n == 0:  # the first anchor has nothing to beat
                new = (torch.ones(1), math.nan)
        else:
            old = (
                self._search(ctx, task.index, task.index, self._points(n, task.index))
                if n
                else None
            )
            new = self._search(ctx, task.index, task.index, self._new_points(ctx, task.index))
        if new is None:  # searched mode, no score taken in a short inferred task
            assert old is not None
            self.alphas[task.index] = old[0]
            self._event(ctx, "prune-anchor", len(self.anchors) - 1, task.index, math.nan)
            return
        if old is None or keeps_anchor(new[1], old[1], self.config.threshold):
            frozen = {k: p.detach().clone() for k, p in self._policy().named_parameters()}
            self.anchors.append(frozen)
            self.alphas[task.index] = new[0]
            kind = "keep-anchor"
        else:
            self.alphas[task.index] = old[0]
            kind = "prune-anchor"
        delta = new[1] - (old[1] if old is not None else 0.0)
        self._event(ctx, kind, len(self.anchors) - 1, task.index, delta)

    # --- the search ------------------------------------------------------------------
    def _key(self, ctx: RunContext) -> int:
        """The stored-combination key of the task in training (true or inferred)."""
        if ctx.task is None:
            raise RuntimeError("csp: no task in training")
        return ctx.task.index

    def _new_points(self, ctx: RunContext, task: int | None = None) -> list[torch.Tensor]:
        """Points of the new subspace (frozen anchors and the trained one): Dirichlet
        candidates, the task's stored combination, and the trained anchor's vertex."""
        n = len(self.anchors)
        key = self._key(ctx) if task is None else task
        return [*self._points(n + 1, key), torch.eye(n + 1)[n]]

    def _points(self, size: int, task: int | None) -> list[torch.Tensor]:
        """``candidates`` Dirichlet(1) points over ``size`` anchors, and task ``task``'s
        stored combination (if any) when it fits in them."""
        points = [
            torch.from_numpy(self.rng.dirichlet(np.ones(size))).float()
            for _ in range(self.config.candidates)
        ]
        stored = None if task is None else self.alphas.get(task)
        if stored is not None and len(stored) <= size:
            points.append(torch.cat([stored, torch.zeros(size - len(stored))]))
        return points

    def _search(
        self, ctx: RunContext, key: int, task: int | None, points: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, float] | None:
        """The best of ``points``, each played as skill ``key``, and its score: on task
        ``task`` by its normalised score, or (``None``) on the task at hand by mean return."""
        saved = self.alphas.get(key)
        best: tuple[torch.Tensor, float] | None = None
        try:
            for alpha in points:
                self.alphas[key] = alpha
                outcome = ctx.validate(task, key, self.config.validation_episodes)
                if task is None:
                    score = float(np.mean(outcome.returns))
                else:
                    score = ctx.tasks[task].normalizer(outcome.returns, outcome.successes)
                if best is None or score > best[1]:
                    best = (alpha, float(score))
        finally:
            if saved is None:
                self.alphas.pop(key, None)
            else:
                self.alphas[key] = saved
        return best

    def _event(self, ctx: RunContext, kind: str, anchor: int, task: int, delta: float) -> None:
        event = SkillEvent(
            global_step=ctx.global_step,
            event=kind,
            skill=anchor,
            task=task,
            delta=delta if math.isfinite(delta) else math.nan,
            exposures=0,
            bank_size=len(self.anchors),
        )
        self._emit(ctx, event)

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Anchors, stored combinations, the random stream and the searched mode's scores."""
        return {
            "anchors": [dict(a) for a in self.anchors],
            "alphas": dict(self.alphas),
            "rng": self.rng.bit_generator.state,
            "searched_mode": self.searched_mode,
            "old_best": self.old_best,
            "new_best": self.new_best,
            "next_score": self.next_score,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.anchors = [{n: t.clone() for n, t in a.items()} for a in state["anchors"]]
        self.alphas = {int(k): v.clone() for k, v in state["alphas"].items()}
        self.rng.bit_generator.state = state["rng"]
        self.searched_mode = bool(state["searched_mode"])
        self.old_best, self.new_best = state["old_best"], state["new_best"]
        self.next_score = int(state["next_score"])
