"""Checkpoints: what the runner saves so that a resumed run is the same run.

A checkpoint holds its window, the schedule it was written for, the step and update
counters, torch's global RNG state (policy-gradient agents sample from it) and the state of
the agent and of every component (their learners' optimizers and the replay's contents
included). It is written atomically at the end of every training window, and every
``checkpoint_every`` steps inside one if asked, so the last one on disk is always whole,
even after a crash or a run aborted by the NaN guard.

A checkpoint inside a window also holds the window's progress (:class:`WindowState`): the
steps done, each training env's current observation, episode return and episode-start
flag, and the envs themselves, pickled. Classic control, MiniGrid and MinAtar envs pickle
whole (their random generators included), so the resumed run continues their episodes
exactly. An env that cannot be pickled, or an agent whose acting state between steps is
not in its ``state_dict`` (``Agent.resumes_mid_episode`` false), makes the resume inexact:
the envs start fresh episodes, and the run's ``resumes.jsonl`` says so.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2rl.core import Agent, Component, RunContext
from l2rl.logging.files import atomic_torch_save

Schedule = list[tuple[int, int]]
"""``(task index, steps)`` of every block: a checkpoint only resumes the schedule it ran."""


@dataclass
class WindowState:
    """Where a training window stands between two rounds of env steps.

    Attributes:
        done: transitions taken in the window.
        obs: each training env's current observation.
        episode_returns: each env's return so far in its current episode.
        first: whether each env's current observation starts an episode.
        envs: the training envs, pickled (``None`` for one that cannot be).
        updates_at_start: each learner's optimiser steps when the window opened.
        inexact: why resuming here cannot continue the envs' episodes ("" if it can).
        skills: the skill acting in each env's episode (empty without a skill manager).
    """

    done: int
    obs: list[np.ndarray]
    episode_returns: list[float]
    first: list[bool]
    envs: list[bytes | None]
    updates_at_start: dict[str, int]
    inexact: str = ""
    skills: list[int] = field(default_factory=list)

    @classmethod
    def capture(
        cls,
        done: int,
        obs: Sequence[Any],
        episode_returns: Sequence[float],
        first: Sequence[bool],
        envs: Sequence[gym.Env[Any, Any]],
        updates_at_start: Mapping[str, int],
        agent_resumes_mid_episode: bool,
        skills: Sequence[int] = (),
    ) -> WindowState:
        """The window's state now; envs that cannot be pickled are noted, not fatal."""
        pickled: list[bytes | None] = []
        reasons = [] if agent_resumes_mid_episode else ["the agent's acting state is not saved"]
        for env in envs:
            try:
                pickled.append(pickle.dumps(env))
            except Exception as exc:  # any env: a lambda, a socket, a C handle
                pickled.append(None)
                reasons.append(f"env {env} cannot be pickled ({type(exc).__name__}: {exc})")
        return cls(
            done=done,
            obs=[np.asarray(o) for o in obs],
            episode_returns=[float(r) for r in episode_returns],
            first=[bool(f) for f in first],
            envs=pickled,
            updates_at_start=dict(updates_at_start),
            inexact="; ".join(dict.fromkeys(reasons)),
            skills=[int(k) for k in skills],
        )

    def to_state(self) -> dict[str, Any]:
        """Tensors and plain values, for a ``weights_only`` checkpoint."""
        return {
            "done": self.done,
            "obs": [torch.from_numpy(np.array(o)) for o in self.obs],
            "episode_returns": self.episode_returns,
            "first": self.first,
            "envs": [
                None if e is None else torch.frombuffer(bytearray(e), dtype=torch.uint8)
                for e in self.envs
            ],
            "updates_at_start": self.updates_at_start,
            "inexact": self.inexact,
            "skills": self.skills,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WindowState:
        """Rebuild what :meth:`to_state` gave."""
        return cls(
            done=int(state["done"]),
            obs=[o.numpy() for o in state["obs"]],
            episode_returns=[float(r) for r in state["episode_returns"]],
            first=[bool(f) for f in state["first"]],
            envs=[None if e is None else e.numpy().tobytes() for e in state["envs"]],
            updates_at_start={k: int(v) for k, v in state["updates_at_start"].items()},
            inexact=str(state["inexact"]),
            skills=[int(k) for k in state.get("skills", [])],
        )

    def restore_envs(self) -> list[gym.Env[Any, Any]] | None:
        """The pickled envs, continuing their episodes; ``None`` if the resume is inexact.

        The bytes are this run's own checkpoint, written by the run being resumed (the
        trust a run directory already has: its config names the code that runs).
        """
        if self.inexact:
            return None
        return [pickle.loads(e) for e in self.envs if e is not None]


def write_checkpoint(
    path: Path,
    *,
    block: int,
    schedule: Schedule,
    ctx: RunContext,
    episodes: int,
    agent: Agent,
    components: Sequence[Component],
    window: WindowState | None = None,
    runner: Mapping[str, Any] | None = None,
) -> None:
    """Save the run's state to ``path`` (atomically): at the end of ``block``, or inside
    it when ``window`` says where the window stands; ``runner`` is the runner's own state
    (plain values: its inferred task)."""
    atomic_torch_save(
        path,
        {
            "block": block,
            "window": None if window is None else window.to_state(),
            "runner": dict(runner or {}),
            "schedule": schedule,
            "global_step": ctx.global_step,
            "learner_updates": dict(ctx.learner_updates),
            "episodes": episodes,
            "torch_rng": torch.get_rng_state(),
            "agent": agent.state_dict(),
            "components": {c.name: c.state_dict() for c in components},
        },
    )


def restore_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    schedule: Schedule,
    ctx: RunContext,
    agent: Agent,
    components: Sequence[Component],
) -> tuple[int, int, WindowState | None, Mapping[str, Any]]:
    """Load ``checkpoint`` into the run; returns ``(block, episodes so far, window,
    runner)``: ``window`` is ``None`` when ``block`` closed there, else where inside it the
    run stood; ``runner`` is what ``write_checkpoint`` got as ``runner``.

    Raises:
        ValueError: it was written for another schedule or another set of components.
    """
    if [tuple(b) for b in checkpoint["schedule"]] != schedule:
        raise ValueError("the checkpoint was written for a different schedule")
    names = sorted(c.name for c in components)
    if sorted(checkpoint["components"]) != names:
        raise ValueError(
            f"the checkpoint holds components {sorted(checkpoint['components'])}, "
            f"the run has {names}"
        )
    agent.load_state_dict(checkpoint["agent"])
    for component in components:
        component.load_state_dict(checkpoint["components"][component.name])
    ctx.global_step = int(checkpoint["global_step"])
    ctx.learner_updates.update(checkpoint["learner_updates"])
    torch.set_rng_state(checkpoint["torch_rng"])
    window = checkpoint.get("window")  # absent from checkpoints of earlier versions
    state = None if window is None else WindowState.from_state(window)
    runner = checkpoint.get("runner", {})
    return int(checkpoint["block"]), int(checkpoint["episodes"]), state, runner
