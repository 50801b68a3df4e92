"""Tiny, deterministic stand-ins for environments, scenarios, agents and components.

They are real implementations, only small: :class:`FakeEnv` is a contextual bandit that a
linear learner solves, :class:`FakeAgent` computes real losses and gradients, and the
recording component sees every hook. Plugin authors use them to test a component without
a real environment or base agent (:mod:`l2rl.testing.conformance` runs on them), and the
framework's own tests use them to pin the runner's hook order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, Component, Learner, RunContext
from l2rl.scenario import Scenario
from l2rl.types import (
    EnvSpec,
    EvalRecord,
    Losses,
    ParametersChanged,
    ReturnRange,
    Step,
    TaskInfo,
    TaskSpec,
    TransitionBatch,
    UpdateStats,
)

OBS_DIM = 4
"""Length of a :class:`FakeEnv` observation."""

FAKE_EPISODE_LENGTH = 8
"""Default number of steps in a :class:`FakeEnv` episode."""


class FakeEnv(gym.Env[np.ndarray, np.int64]):
    """A contextual bandit: reward 1 for the action that a task's rule picks, else 0.

    Observations are 4 floats drawn uniformly from [-1, 1] by the env's seeded generator.
    The rewarded action is ``1`` when ``obs[feature] > 0`` and ``0`` otherwise, reversed
    when ``invert``; tasks that differ in ``feature`` or ``invert`` therefore need
    different policies, and forgetting is observable. Every episode lasts exactly
    ``episode_length`` steps and ends truncated (a time limit, not a terminal state).

    Args:
        feature: index of the observation element that decides the rewarded action.
        invert: reward the other action.
        episode_length: steps per episode.
    """

    def __init__(
        self, feature: int = 0, invert: bool = False, episode_length: int = FAKE_EPISODE_LENGTH
    ) -> None:
        if not 0 <= feature < OBS_DIM:
            raise ValueError(f"feature must be in [0, {OBS_DIM}), got {feature}")
        if episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {episode_length}")
        self.feature = feature
        self.invert = invert
        self.episode_length = episode_length
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._obs = np.zeros(OBS_DIM, dtype=np.float32)
        self._t = 0

    def _draw(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, OBS_DIM).astype(np.float32)

    def best_action(self, obs: np.ndarray) -> int:
        """The rewarded action for ``obs``."""
        return int((obs[self.feature] > 0) != self.invert)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` reseeds the observation stream."""
        super().reset(seed=seed)
        self._t = 0
        self._obs = self._draw()
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Pay 1 for the rewarded action; truncate after ``episode_length`` steps."""
        reward = 1.0 if int(action) == self.best_action(self._obs) else 0.0
        self._t += 1
        self._obs = self._draw()
        return self._obs.copy(), reward, False, self._t >= self.episode_length, {}


def fake_tasks(n: int, episode_length: int = FAKE_EPISODE_LENGTH) -> tuple[TaskSpec, ...]:
    """``n`` distinct :class:`FakeEnv` tasks, scored by return from 0 to ``episode_length``.

    Task ``i`` rewards following the sign of feature ``i % 4``, inverted for ``4 <= i % 8``;
    so up to 8 tasks are all different.
    """
    if n <= 0:
        raise ValueError(f"need at least one task, got {n}")
    tasks = []
    for i in range(n):
        feature, invert = i % OBS_DIM, (i // OBS_DIM) % 2 == 1
        tasks.append(
            TaskSpec(
                name=f"fake-{i}",
                # partial, not a lambda: tasks stay picklable for worker processes.
                make_env=partial(FakeEnv, feature, invert, episode_length),
                normalizer=ReturnRange(0.0, float(episode_length)),
                params={"feature": feature, "invert": invert, "episode_length": episode_length},
            )
        )
    return tuple(tasks)


def fake_scenario(
    num_tasks: int = 2,
    steps_per_task: int = 32,
    cycles: int = 1,
    task_aware: bool = True,
    episode_length: int = FAKE_EPISODE_LENGTH,
) -> Scenario:
    """A scenario of :func:`fake_tasks`, trained in order, ``steps_per_task`` steps each."""
    return Scenario.sequence(
        "fake",
        fake_tasks(num_tasks, episode_length),
        steps_per_task,
        cycles=cycles,
        task_aware=task_aware,
    )


class FakeAgent(Agent):
    """A linear learner of immediate rewards: ``q(s) = W s + b``, one output per action.

    Its loss is the squared error between ``q(s)[a]`` and the reward, which is exactly the
    value of ``a`` in a :class:`FakeEnv` (rewards are immediate), so it learns the task and
    its losses carry real gradients. It acts epsilon-greedily with its own seeded
    generator. Every ``train_every`` env steps it yields one minibatch: drawn from
    ``services.replay`` when one is given and holds enough transitions, otherwise its own
    last ``batch_size`` transitions, so it needs no replay component. Given a ``weights``
    service (a hypernetwork) it binds ``q`` to it and runs ``q`` with the generated
    weights of the task being trained (of the task evaluated, when acting), so its loss
    trains the hypernetwork and it trains nothing itself.

    Args:
        config: validated options.
        env_spec: needs a 1-D ``Box`` observation space and a ``Discrete`` action space.
        services: an optional replay to draw minibatches from, an optional weights service.
        seed: seeds initialisation and exploration.
    """

    class Config(PluginConfig):
        """Options of the fake agent."""

        lr: float = Field(default=0.05, gt=0.0, description="SGD learning rate.")
        batch_size: PositiveInt = Field(default=8, description="Transitions per minibatch.")
        train_every: PositiveInt = Field(default=4, description="Env steps between updates.")
        epsilon: float = Field(
            default=0.2, ge=0.0, le=1.0, description="Random-action probability in training."
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        obs_space, action_space = env_spec.observation_space, env_spec.action_space
        if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
            raise ConfigError(f"FakeAgent needs a 1-D Box observation space, got {obs_space}")
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"FakeAgent needs a Discrete action space, got {action_space}")
        self.config = config
        self.replay = services.replay
        self.num_actions = int(action_space.n)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = torch.nn.Linear(obs_space.shape[0], self.num_actions)
            self.generator = services.weights
            if self.generator is not None:
                self.q.requires_grad_(False)  # its values are never used
                self.generator.bind(self.q, loss_scale=1.0)  # the loss is a mean
        self.trained = torch.nn.Module() if self.generator is not None else self.q
        self.optimizer = torch.optim.SGD(
            [{"params": list(self.trained.parameters())}], lr=config.lr
        )
        self.rng = np.random.default_rng(seed)
        self.recent: deque[Step] = deque(maxlen=config.batch_size)
        self.task: int | None = None

    def values(self, obs: torch.Tensor, task_id: int | None) -> torch.Tensor:
        """``q(obs)``, with ``task_id``'s generated weights when a weights service is given."""
        if self.generator is None:
            out: torch.Tensor = self.q(obs)
            return out
        weights = dict(self.generator.weights(task_id))
        generated: torch.Tensor = torch.func.functional_call(self.q, weights, (obs,))
        return generated

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> int:
        """Epsilon-greedy on ``q`` when exploring, greedy otherwise."""
        if explore and self.rng.random() < self.config.epsilon:
            return int(self.rng.integers(self.num_actions))
        with torch.inference_mode():
            return int(self.values(torch.as_tensor(obs, dtype=torch.float32), task_id).argmax())

    def on_task_start(self, task: TaskInfo) -> None:
        """Train the generated weights of this task from now on."""
        self.task = task.index

    def observe(self, step: Step) -> None:
        """Keep the transition among the last ``batch_size``."""
        self.recent.append(step)

    def batches(self, global_step: int) -> Iterator[TransitionBatch]:
        """One minibatch every ``train_every`` steps, once ``batch_size`` steps were seen."""
        size = self.config.batch_size
        if global_step % self.config.train_every != 0:
            return
        if self.replay is not None and len(self.replay) >= size:
            yield self.replay.sample(size)
        elif len(self.recent) == size:
            yield steps_to_batch(list(self.recent))

    def losses(self, batch: TransitionBatch) -> Losses:
        """Squared error of the taken action's value against the immediate reward."""
        q = self.values(batch.obs.to(torch.float32), self.task)
        q = q.gather(1, batch.actions.long().view(-1, 1))
        return {"loss_q": F.mse_loss(q.squeeze(1), batch.rewards.to(torch.float32))}

    def networks(self) -> torch.nn.Module:
        """The linear value layer; an empty module when its weights are generated."""
        return self.trained

    def policy_distribution(
        self, obs: torch.Tensor, task_ids: torch.Tensor
    ) -> torch.distributions.Categorical:
        """Softmax over the action values (so regularizers needing a policy can run)."""
        return torch.distributions.Categorical(logits=self.values(obs.to(torch.float32), self.task))

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Expected action value under :meth:`policy_distribution`."""
        q = self.values(obs.to(torch.float32), self.task)
        value: torch.Tensor = (torch.softmax(q, dim=-1) * q).sum(-1)
        return value

    def state_dict(self) -> dict[str, Any]:
        """Network, optimiser, the task trained and the exploration generator's state."""
        return {**super().state_dict(), "task": self.task, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.task = state["task"]
        self.rng.bit_generator.state = state["rng"]


class RewardModel(Learner):
    """A learner of its own: a linear model of the immediate reward, ``r(s) = w s + b``.

    Trained by the runner's update path like the agent, with its own Adam optimizer, from
    the last ``batch_size`` ``(obs, reward)`` pairs :class:`FakeLearnerComponent` saw,
    every ``train_every`` steps. Its loss is the squared error against the observed reward.
    """

    def __init__(
        self, name: str, obs_dim: int, batch_size: int, train_every: int, lr: float
    ) -> None:
        self.learner_name = name
        self.batch_size, self.train_every = batch_size, train_every
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model = torch.nn.Linear(obs_dim, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.recent: deque[tuple[torch.Tensor, float]] = deque(maxlen=batch_size)

    def batches(self, global_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One minibatch every ``train_every`` steps once ``batch_size`` steps were seen."""
        if global_step % self.train_every == 0 and len(self.recent) == self.batch_size:
            yield self.recent_batch()

    def recent_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept ``(obs [B, D], rewards [B])``."""
        obs = torch.stack([o for o, _ in self.recent])
        return obs, torch.tensor([r for _, r in self.recent], dtype=torch.float32)

    def losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Losses:
        """Squared error of the predicted reward."""
        obs, rewards = batch
        return {"loss_reward": F.mse_loss(self.model(obs).squeeze(1), rewards)}

    def networks(self) -> torch.nn.Linear:
        """The reward model."""
        return self.model


class FakeLearnerComponent(Component):
    """A component that owns a learner (:class:`RewardModel`), as a world model would.

    It offers the learner through :meth:`learners`, feeds it transitions in ``on_step`` and
    keeps its state (optimizer included) in its own :meth:`state_dict`.
    """

    role = "world_model"

    class Config(PluginConfig):
        """Options of the fake learning component."""

        batch_size: PositiveInt = Field(default=8, description="Transitions per minibatch.")
        train_every: PositiveInt = Field(default=4, description="Env steps between updates.")
        lr: float = Field(default=0.01, gt=0.0, description="Adam learning rate.")

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        shape = env_spec.observation_space.shape
        if shape is None or len(shape) != 1:
            raise ConfigError("FakeLearnerComponent needs a 1-D observation space")
        self.model = RewardModel(
            "reward-model", shape[0], config.batch_size, config.train_every, config.lr
        )

    def learners(self) -> tuple[RewardModel]:
        """The reward model."""
        return (self.model,)

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Keep the observation and reward for the reward model."""
        obs = torch.as_tensor(step.obs, dtype=torch.float32)
        self.model.recent.append((obs, step.reward))

    def state_dict(self) -> dict[str, Any]:
        """The reward model's network and optimizer, and the pairs it keeps (as tensors)."""
        obs, rewards = self.model.recent_batch() if self.model.recent else (None, None)
        return {"model": self.model.state_dict(), "obs": obs, "rewards": rewards}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.model.recent.clear()
        if state["obs"] is not None:
            pairs = zip(state["obs"], state["rewards"].tolist(), strict=True)
            self.model.recent.extend(pairs)


def steps_to_batch(steps: list[Step]) -> TransitionBatch:
    """Stack :class:`~l2rl.types.Step` objects into a batch (task id -1 where unknown)."""
    return TransitionBatch(
        obs=torch.as_tensor(np.stack([s.obs for s in steps])),
        actions=torch.as_tensor(np.array([s.action for s in steps], dtype=np.int64)),
        rewards=torch.tensor([s.reward for s in steps], dtype=torch.float32),
        next_obs=torch.as_tensor(np.stack([s.next_obs for s in steps])),
        terminated=torch.tensor([s.terminated for s in steps], dtype=torch.bool),
        task_ids=torch.tensor(
            [-1 if s.task_id is None else s.task_id for s in steps], dtype=torch.int64
        ),
    )


@dataclass(frozen=True)
class HookCall:
    """One call a :class:`RecordingComponent` received.

    Attributes:
        component: the component's ``name``.
        hook: the hook's method name, or ``"losses"`` for a loss request.
        payload: the argument after ``ctx`` (a ``Step``, ``TaskInfo``, ...), or ``None``.
    """

    component: str
    hook: str
    payload: Any

    @property
    def payload_type(self) -> str | None:
        """The payload's class name (``"tuple"`` for the records of ``on_eval``)."""
        return None if self.payload is None else type(self.payload).__name__


class RecordingComponent(Component):
    """Records every hook call, and every loss request, in the order they arrive.

    Subclass it to give it another ``role``. Pass one ``log`` list to several instances to
    see how calls interleave across components; ``calls`` then is that shared list.

    Args:
        config: options (none).
        env_spec: the scenario's spaces.
        log: where to append :class:`HookCall` records (a new list by default).
    """

    def __init__(
        self, config: PluginConfig, env_spec: EnvSpec, log: list[HookCall] | None = None
    ) -> None:
        super().__init__(config, env_spec)
        self.calls: list[HookCall] = [] if log is None else log

    def _record(self, hook: str, payload: Any = None) -> None:
        self.calls.append(HookCall(self.name, hook, payload))

    def hooks_called(self) -> list[str]:
        """The hook names of this component's calls, in order."""
        return [c.hook for c in self.calls if c.component == self.name]

    def on_run_start(self, ctx: RunContext) -> None:
        """Record the call."""
        self._record("on_run_start")

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the call and the task."""
        self._record("on_task_start", task)

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Record the call and the step."""
        self._record("on_step", step)

    def before_update(self, ctx: RunContext) -> None:
        """Record the call."""
        self._record("before_update")

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """Record the request; add no loss terms."""
        self._record("losses", batch)
        return {}

    def after_backward(self, ctx: RunContext) -> None:
        """Record the call."""
        self._record("after_backward")

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Record the call and the update's statistics."""
        self._record("after_update", stats)

    def on_eval_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the call and the task about to be evaluated."""
        self._record("on_eval_task_start", task)

    def on_eval_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the call and the task just evaluated."""
        self._record("on_eval_task_end", task)

    def on_eval_hidden_task_start(self, ctx: RunContext) -> None:
        """Record the call (task-agnostic evaluation of an unnamed task)."""
        self._record("on_eval_hidden_task_start")

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        """Record the call and the evaluation records."""
        self._record("on_eval", records)

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the call and the task."""
        self._record("on_task_end", task)

    def on_consolidate(self, ctx: RunContext, task: TaskInfo) -> None:
        """Record the call and the task."""
        self._record("on_consolidate", task)

    def on_parameters_changed(self, ctx: RunContext, change: ParametersChanged) -> None:
        """Record the call and the change."""
        self._record("on_parameters_changed", change)

    def on_run_end(self, ctx: RunContext) -> None:
        """Record the call."""
        self._record("on_run_end")


class NoOpComponent(Component):
    """Implements the per-step and per-update hooks and does nothing in them.

    The runner still dispatches to it, so a run with many of these measures the cost of
    hook dispatch itself (``benchmarks/runner_overhead.py``).
    """

    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Do nothing."""

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Do nothing."""
