"""``world-model-heldout``: the world model's losses on held-out data of every task, at every
evaluation.

How much a world model forgets is not visible in the agent's scores alone (an actor may
keep a policy the model no longer supports, or lose one the model still predicts). This
probe measures the model directly: at the start of the run it collects, for each task of
the scenario, a fixed set of sequences played by a **uniformly random policy** on that
task's environment (:func:`random_policy_sequences`); these are never trained on (they
are not in any replay). At every evaluation it computes the run's world model's own
``losses`` on each task's set and logs them as ``eval/world_model/<task>/loss_*`` (and
their sum as ``loss_total``), which :class:`~l2rl.logging.recorder.DiskRecorder` keeps in
``eval_scalars.jsonl``. What it measures is therefore how well the model still predicts
each task's dynamics, rewards and terminations **under a fixed behaviour policy**: not
under the agent's own state distribution, which moves as the agent learns, so that the
curves of one task over the run, and of different methods, are comparable.

It changes nothing of the run it watches: the losses are computed under
``torch.no_grad()`` with torch's global random stream forked and reseeded (the model's
latent sampling draws from it; every evaluation draws the same numbers, so a change of the
loss over time is the model's), its environments and policy have random streams of their
own, and it never feeds anything back to the agent or the other components. It reads the
scenario's tasks (``ctx.tasks``) in task-agnostic runs too: that is a diagnostic of the
experimenter's, which no learner sees.

Held-out data is seeded by the component's ``seed`` and the task's index only, so every
run of a grid (each method, each seed) is scored on the very same sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, PositiveInt

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import AgentServices, Component, RunContext
from l2rl.seeding import derive_seed
from l2rl.types import EnvFactory, EnvSpec, EvalRecord, Losses, SequenceBatch

_HELDOUT_STREAM = 0x4E1D_0BA7
"""Mixed into every seed of the probe, so its streams differ from the run's own."""


@runtime_checkable
class SequenceLosses(Protocol):
    """A world model whose training losses can be taken on a batch of sequences (every
    :class:`~l2rl.core.Learner` trained on :class:`~l2rl.types.SequenceBatch` is one)."""

    def losses(self, batch: SequenceBatch) -> Losses:
        """``loss_*`` terms on ``batch``."""
        ...


def uniform_policy(
    space: gym.spaces.Space[Any], rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A sampler of uniformly random actions of ``space`` drawn from ``rng``.

    Raises:
        ConfigError: the space is neither ``Discrete`` nor a bounded ``Box``.
    """
    if isinstance(space, gym.spaces.Discrete):
        start, n = int(space.start), int(space.n)
        return lambda: np.asarray(start + rng.integers(n), dtype=space.dtype)
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError(f"a uniform random policy needs a bounded Box, got {space}")
        return lambda: rng.uniform(low, high).astype(space.dtype)
    raise ConfigError(f"world-model-heldout cannot draw random actions of {space}")


def random_policy_sequences(
    make_env: EnvFactory,
    env_spec: EnvSpec,
    count: int,
    length: int,
    seed: int,
    task_id: int = -1,
) -> SequenceBatch:
    """``count`` sequences of ``length`` rows played by a uniformly random policy.

    Dreamer's layout (:class:`~l2rl.types.SequenceBatch`), as a replay would store the same
    steps: row ``t`` holds an observation with the action that led to it, that action's
    reward and whether the observation is terminal; an episode's first observation has
    ``is_first`` set and zero action and reward. Sequence ``i`` starts with a reset
    seeded by ``(seed, i)`` and runs on across episode ends (each new episode starting
    with its first-observation row) until it has ``length`` rows. Actions come from a
    generator seeded by ``seed``.

    Args:
        make_env: builds the task's environment.
        env_spec: the scenario's spaces (observation and action dtypes and shapes).
        count: sequences.
        length: rows per sequence.
        seed: fixes the data.
        task_id: written to ``task_ids`` (-1: unknown).
    """
    obs_space, action_space = env_spec.observation_space, env_spec.action_space
    assert obs_space.shape is not None and action_space.shape is not None
    obs_dtype, action_dtype = obs_space.dtype, action_space.dtype
    zero_action = np.zeros(action_space.shape, dtype=action_dtype)
    sample = uniform_policy(action_space, np.random.default_rng([seed, _HELDOUT_STREAM]))
    obs_rows: list[np.ndarray] = []
    action_rows: list[np.ndarray] = []
    reward_rows: list[float] = []
    terminal_rows: list[bool] = []
    first_rows: list[bool] = []
    env = make_env()
    try:
        for index in range(count):
            obs, _ = env.reset(seed=derive_seed(seed, _HELDOUT_STREAM, index))
            starts = True  # the next row is an episode's first observation
            for row in range(length):
                if starts:
                    obs_rows.append(np.asarray(obs, dtype=obs_dtype))
                    action_rows.append(zero_action)
                    reward_rows.append(0.0)
                    terminal_rows.append(False)
                    first_rows.append(True)
                    starts = False
                    continue
                action = sample()
                obs, reward, terminated, truncated, _ = env.step(action)
                obs_rows.append(np.asarray(obs, dtype=obs_dtype))
                action_rows.append(np.asarray(action, dtype=action_dtype))
                reward_rows.append(float(reward))
                terminal_rows.append(bool(terminated))
                first_rows.append(False)
                starts = bool(terminated or truncated)
                if starts and row + 1 < length:
                    obs, _ = env.reset()
    finally:
        env.close()

    def stacked(rows: list[Any], dtype: Any) -> torch.Tensor:
        array = np.asarray(np.stack([np.asarray(r) for r in rows]), dtype=dtype)
        return torch.as_tensor(array.reshape(count, length, *array.shape[1:]))

    return SequenceBatch(
        obs=stacked(obs_rows, obs_dtype),
        actions=stacked(action_rows, action_dtype),
        rewards=stacked(reward_rows, np.float32),
        terminated=stacked(terminal_rows, np.bool_),
        is_first=stacked(first_rows, np.bool_),
        task_ids=torch.full((count, length), task_id, dtype=torch.int64),
    )


def heldout_sets(ctx: RunContext, count: int, length: int, seed: int) -> dict[str, SequenceBatch]:
    """Task name -> :func:`random_policy_sequences` of that task, seeded by ``seed`` and the
    task's index only (every run of a grid gets the same data); ``task_ids`` hold the
    task's index in task-aware runs, -1 otherwise."""
    aware = ctx.env_spec.task_aware
    return {
        task.name: random_policy_sequences(
            task.make_env,
            ctx.env_spec,
            count,
            length,
            derive_seed(seed, index),
            task_id=index if aware else -1,
        )
        for index, task in enumerate(ctx.tasks)
    }


class WorldModelHeldout(Component):
    """The ``world-model-heldout`` probe (role ``custom``); see the module docstring.

    It needs a world model service whose object has ``losses(SequenceBatch)`` (a
    :class:`~l2rl.core.Learner` such as ``dreamer-world-model``); it gets it in
    :meth:`wire`.
    """

    role = "custom"

    class Config(PluginConfig):
        """Size and seed of the held-out set."""

        sequences: PositiveInt = Field(default=16, description="Held-out sequences per task.")
        sequence_length: PositiveInt = Field(default=64, description="Rows per sequence.")
        seed: int = Field(
            default=0,
            description="Fixes the held-out data (with each task's index; not the run's seed, "
            "so every run is scored on the same data) and the model's sampling in the losses.",
        )

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        uniform_policy(env_spec.action_space, np.random.default_rng(0))  # fail at build
        self.model: SequenceLosses | None = None
        self.heldout: dict[str, SequenceBatch] = {}

    def wire(self, services: AgentServices) -> None:
        """Take the run's world model.

        Raises:
            ConfigError: there is none, or it offers no ``losses`` on sequences.
        """
        model = services.world_model
        if model is None or not isinstance(model, SequenceLosses):
            raise ConfigError(
                "world-model-heldout evaluates the run's world model: configure a world model "
                "component whose model has losses(SequenceBatch) (e.g. dreamer-world-model)"
            )
        self.model = model

    def on_run_start(self, ctx: RunContext) -> None:
        """Collect each task's held-out sequences (the same on a resumed run)."""
        c = self.config
        self.heldout = heldout_sets(ctx, c.sequences, c.sequence_length, c.seed)

    def heldout_losses(self) -> dict[str, dict[str, float]]:
        """Task name -> the model's loss terms (and ``loss_total``) on its held-out set,
        computed without gradients and leaving torch's global random stream as it was."""
        if self.model is None:
            raise RuntimeError("world-model-heldout is not wired to a world model")
        result: dict[str, dict[str, float]] = {}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for name, batch in self.heldout.items():
                torch.manual_seed(derive_seed(self.config.seed, _HELDOUT_STREAM))
                losses = {k: float(v) for k, v in self.model.losses(batch).items()}
                losses["loss_total"] = float(sum(losses.values()))
                result[name] = losses
        return result

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """Log ``eval/world_model/<task>/<loss>`` for every task at this evaluation."""
        for name, losses in self.heldout_losses().items():
            for key, value in losses.items():
                ctx.logger.scalar(f"eval/world_model/{name}/{key}", value, ctx.global_step)

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the held-out data is collected again, identically, at the run's start."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""
