"""``dynamics-heldout``: the agent's dynamics model's error on held-out transitions of every
task, at every evaluation.

HyperCRL (Huang et al. 2020) measures forgetting in the model itself: how well the model
still predicts each earlier task's dynamics after training on later ones. This probe does
that for an agent with a learned model of the state change (:class:`StatePredictor`, e.g.
``mpc``): at the start of the run it collects, for each task, a fixed set of transitions
played by a **uniformly random policy** (never trained on), and at every evaluation it
logs the model's mean squared error on them,

    eval/dynamics/<task>/mse = mean over transitions and state entries of
                               (f(s, a; task) - (s' - s))^2,

which :class:`~l2rl.logging.recorder.DiskRecorder` keeps in ``eval_scalars.jsonl``. The
model is asked with the task's index in task-aware runs (a task-conditioned model, such as
a hypernetwork's, answers with that task's weights) and with ``-1`` in task-agnostic ones.
It is computed under ``torch.no_grad()`` and changes nothing of the run. The data is
seeded by the component's ``seed`` and the task's index only, so every run of a grid is
scored on the same transitions (the held-out sequences of ``world-model-heldout``, cut
into transitions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import Field, PositiveInt

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, EvalRecord

from .heldout_probe import heldout_sets, uniform_policy


@runtime_checkable
class StatePredictor(Protocol):
    """An agent with a learned model of the state change."""

    def predict(self, obs: torch.Tensor, actions: torch.Tensor, task: int) -> torch.Tensor:
        """The predicted ``s' - s`` for a batch, ``[N, *obs_shape]`` (task -1: unknown)."""
        ...


def transitions_of(
    obs: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s, a, s')`` of sequences in Dreamer's layout (``[B, L, ...]``, row ``t`` holds the
    observation with the action that led to it): every row but an episode's first."""
    keep = ~is_first[:, 1:]
    return obs[:, :-1][keep], actions[:, 1:][keep], obs[:, 1:][keep]


class DynamicsHeldout(Component):
    """The ``dynamics-heldout`` probe (role ``custom``); see the module docstring."""

    role = "custom"

    class Config(PluginConfig):
        """Size and seed of the held-out set."""

        sequences: PositiveInt = Field(default=8, description="Held-out sequences per task.")
        sequence_length: PositiveInt = Field(default=64, description="Rows per sequence.")
        seed: int = Field(
            default=0,
            description="Fixes the held-out data (with each task's index; not the run's seed, "
            "so every run is scored on the same data).",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        uniform_policy(env_spec.action_space, np.random.default_rng(0))  # fail at build
        self.heldout: dict[str, tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}

    def on_run_start(self, ctx: RunContext) -> None:
        """Check the agent; collect each task's held-out transitions (the same on a resume).

        Raises:
            ConfigError: the agent has no ``predict(obs, actions, task)``.
        """
        if not isinstance(ctx.agent, StatePredictor):
            raise ConfigError(
                "dynamics-heldout evaluates the agent's model of the state change: the agent "
                f"must offer predict(obs, actions, task) (e.g. mpc); {type(ctx.agent).__name__} "
                "does not"
            )
        c = self.config
        self.heldout = {
            name: (
                int(batch.task_ids[0, 0]),
                transitions_of(batch.obs, batch.actions, batch.is_first),
            )
            for name, batch in heldout_sets(ctx, c.sequences, c.sequence_length, c.seed).items()
        }

    def errors(self, agent: StatePredictor) -> dict[str, float]:
        """Task name -> the model's mean squared error on its held-out transitions."""
        result = {}
        with torch.no_grad():
            for name, (task, (obs, actions, next_obs)) in self.heldout.items():
                predicted = agent.predict(obs, actions, task)
                result[name] = float((predicted - (next_obs - obs).float()).pow(2).mean())
        return result

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """Log ``eval/dynamics/<task>/mse`` for every task at this evaluation."""
        assert isinstance(ctx.agent, StatePredictor)
        for name, error in self.errors(ctx.agent).items():
            ctx.logger.scalar(f"eval/dynamics/{name}/mse", error, ctx.global_step)

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the held-out data is collected again, identically, at the run's start."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""
