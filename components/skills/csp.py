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
(a new network in the paper). Task-aware runs only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt

from l2rl.config import PluginConfig
from l2rl.core import RunContext
from l2rl.seeding import derive_seed
from l2rl.types import LEARNER_SKILL, EnvSpec, SkillEvent, TaskInfo

from .manager import SkillManager

_CSP_STREAM = 13  # this component's random stream (derive_seed)


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
    """CSP's rule: keep the new anchor iff ``R_new >= (1 + threshold) R_old``.

    >>> keeps_anchor(1.1, 1.0, 0.1), keeps_anchor(1.05, 1.0, 0.1)
    (True, False)
    """
    return new_return >= (1.0 + threshold) * old_return


class CSP(SkillManager):
    """Component ``csp`` (role ``skill_manager``): see the module docstring.

    It is the ``skills`` service the agent binds; skill ``t`` is task ``t``'s stored
    combination, :data:`~l2rl.types.LEARNER_SKILL` the anchor being trained.

    Raises:
        ConfigError: (at run start) a task-agnostic scenario.
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

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.anchors: list[dict[str, torch.Tensor]] = []
        """The frozen anchors kept so far."""
        self.alphas: dict[int, torch.Tensor] = {}
        """Per task, its best combination (over the first ``len(alpha)`` anchors, plus the
        anchor being trained while a search tries one more)."""
        self.rng = np.random.default_rng(0)  # reseeded from the run's seed at run start

    # --- the skills service ----------------------------------------------------------
    def select(self, obs: np.ndarray, task: int | None, evaluation: bool) -> int:
        """Evaluation: the task's stored combination once it has one; else (and in
        training) the anchor being trained."""
        if evaluation and task is not None and task in self.alphas:
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
        """Check the run and seed the Dirichlet draws.

        Raises:
            ConfigError: a task-agnostic scenario.
        """
        self._require_task_aware(ctx)
        self.rng = np.random.default_rng(derive_seed(ctx.seed, _CSP_STREAM))

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A new anchor: the policy module starts at the mean of the anchors, with fresh
        Adam moments."""
        if not self.anchors:
            return
        mean = mix(self.anchors, torch.full((len(self.anchors),), 1.0 / len(self.anchors)))
        with torch.no_grad():
            for name, param in self._policy().named_parameters():
                param.copy_(mean[name])
        ctx.agent.optimizer.state.clear()

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Search both subspaces, keep or prune the new anchor, store the task's best."""
        n = len(self.anchors)
        old = self._search(ctx, task.index, self._points(n, task.index)) if n else None
        new_points = [*self._points(n + 1, task.index), torch.eye(n + 1)[n]]
        new = self._search(ctx, task.index, new_points)
        assert new is not None
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
    def _points(self, size: int, task: int) -> list[torch.Tensor]:
        """``candidates`` Dirichlet(1) points over ``size`` anchors, and the task's stored
        combination when it fits in them."""
        points = [
            torch.from_numpy(self.rng.dirichlet(np.ones(size))).float()
            for _ in range(self.config.candidates)
        ]
        stored = self.alphas.get(task)
        if stored is not None and len(stored) <= size:
            points.append(torch.cat([stored, torch.zeros(size - len(stored))]))
        return points

    def _search(
        self, ctx: RunContext, task: int, points: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, float] | None:
        """The best of ``points`` for ``task`` by validation score, and that score."""
        saved = self.alphas.get(task)
        best: tuple[torch.Tensor, float] | None = None
        try:
            for alpha in points:
                self.alphas[task] = alpha
                outcome = ctx.validate(task, task, self.config.validation_episodes)
                score = ctx.tasks[task].normalizer(outcome.returns, outcome.successes)
                if best is None or score > best[1]:
                    best = (alpha, float(score))
        finally:
            if saved is None:
                self.alphas.pop(task, None)
            else:
                self.alphas[task] = saved
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
        """Anchors, stored combinations and the random stream."""
        return {
            "anchors": [dict(a) for a in self.anchors],
            "alphas": dict(self.alphas),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.anchors = [{n: t.clone() for n, t in a.items()} for a in state["anchors"]]
        self.alphas = {int(k): v.clone() for k, v in state["alphas"].items()}
        self.rng.bit_generator.state = state["rng"]
