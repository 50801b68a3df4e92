"""Double DQN with a Huber loss, a target network and a linear epsilon-greedy schedule.

The update is :meth:`DQNAgent.losses`; the runner owns the optimiser step (sum of losses,
backward, gradient clipping to ``max_grad_norm``, ``optimizer.step()``) and then calls
:meth:`DQNAgent.after_optimizer_step`, which maintains the target network.

With ``model: hypernetwork`` the Q-network's weights come from the ``weights`` service (a
hypernetwork such as ``hypercrl``): the online network runs on the generated weights of
the task being trained (of the task acted on, when acting) through
``torch.func.functional_call``, so the TD loss trains the hypernetwork; the target network
is a detached copy of those generated weights, refreshed like the target network (and at
each task's first update, when the hypernetwork has switched to the new task).

With a skill manager (the ``skills`` service, e.g. ``slim`` or ``csp``) the Q-network is
the policy module whose parameter sets are skills: each row of a stack acts with the
parameters of its skill (:meth:`DQNAgent.act_skills`), the TD loss trains the parameter
sets the service draws (:meth:`~l2rl.core.SkillService.train_parameters`), and the target
network is refreshed at each task's first update (a manager may reset the live parameters
when a task starts, as CSP does).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from l2rl.agents.off_policy import replay_batches
from l2rl.agents.requirements import check_multi_head, required_replay
from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, BatchSource, SkillService, WeightService
from l2rl.types import EnvSpec, Losses, Step, TaskInfo, TransitionBatch

from .networks import QNetwork, frame_scale


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end``."""
    fraction = min(step / duration, 1.0)
    return start + fraction * (end - start)


class DQNAgent(Agent):
    """Double DQN (van Hasselt et al. 2016) for discrete actions, optionally one head per task.

    Exploration is epsilon-greedy; epsilon falls linearly over ``epsilon_decay_steps`` env
    steps and the schedule restarts at every ``on_task_start``. Task-agnostic runs never
    receive ``on_task_start``, so they get a single schedule from the start of the run.

    Args:
        config: validated options.
        env_spec: the scenario's spaces; the action space must be ``Discrete`` and the
            observation space a ``Box``.
        services: must carry a replay (``services.replay``).
        seed: seeds network initialisation and exploration.

    Raises:
        ConfigError: no replay, a non-Discrete action space, a non-Box observation space, or
            ``multi_head`` in a task-agnostic scenario.
    """

    class Config(PluginConfig):
        """Options of the DQN agent."""

        gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="Discount factor.")
        lr: float = Field(default=1e-3, gt=0.0, description="Adam learning rate.")
        batch_size: PositiveInt = Field(default=128, description="Transitions per minibatch.")
        learning_starts: PositiveInt = Field(
            default=1_000, description="Updates begin once the replay holds this many transitions."
        )
        train_every: PositiveInt = Field(
            default=10, description="Env steps between updates (counted by the global step)."
        )
        gradient_steps: PositiveInt = Field(
            default=1, description="Optimiser steps (minibatches) per update."
        )
        target_update_every: PositiveInt = Field(
            default=500,
            description="Optimiser steps between hard copies to the target net (unless `tau`).",
        )
        tau: float | None = Field(
            default=None,
            gt=0.0,
            le=1.0,
            description="If set, Polyak-average the target net by `tau` after every optimiser "
            "step instead of hard copies.",
        )
        epsilon_start: float = Field(default=1.0, ge=0.0, le=1.0, description="Initial epsilon.")
        epsilon_end: float = Field(default=0.05, ge=0.0, le=1.0, description="Final epsilon.")
        epsilon_decay_steps: PositiveInt = Field(
            default=10_000,
            description="Env steps over which epsilon falls; restarts at each task start.",
        )
        hidden_sizes: list[PositiveInt] = Field(
            default_factory=lambda: [120, 84], description="Hidden layer widths of the MLP."
        )
        multi_head: bool = Field(
            default=False,
            description="One output head per task, chosen by task id (task-aware runs only).",
        )
        model: Literal["mlp", "hypernetwork"] = Field(
            default="mlp",
            description="The Q-network's own weights, or weights generated per task by the "
            "weights service (a hypernetwork component).",
        )
        max_grad_norm: float | None = Field(
            default=10.0, gt=0.0, description="Clip the gradient norm to this (None: no clip)."
        )
        policy_temperature: float = Field(
            default=1.0,
            gt=0.0,
            description="Temperature T of the Boltzmann policy softmax(Q/T) that "
            "`policy_distribution` exposes to regularizers (EWC's Fisher, behaviour "
            "cloning); acting stays epsilon-greedy.",
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        action_space, obs_space = env_spec.action_space, env_spec.observation_space
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.start != 0:
            raise ConfigError(f"DQN needs a Discrete action space from 0, got {action_space}")
        if not isinstance(obs_space, gym.spaces.Box):
            raise ConfigError(f"DQN needs a Box observation space, got {obs_space}")
        replay = required_replay(services, "DQN", config.learning_starts)
        check_multi_head(config.multi_head, env_spec, "DQN")
        super().__init__(config, env_spec, services, seed)
        self.replay: BatchSource = replay
        self.num_actions = int(action_space.n)
        self.max_grad_norm = config.max_grad_norm
        # fork_rng keeps the caller's global torch stream untouched by our initialisation.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = QNetwork(
                obs_dim=int(np.prod(obs_space.shape)),
                num_actions=self.num_actions,
                hidden_sizes=config.hidden_sizes,
                num_heads=env_spec.num_tasks if config.multi_head else 1,
                input_scale=frame_scale(obs_space),
            )
            self.generator: WeightService | None = None
            if config.model == "hypernetwork":
                if services.weights is None or config.multi_head:
                    raise ConfigError(
                        "DQN model=hypernetwork needs a component with role hypernetwork "
                        "(e.g. hypercrl) and no multi_head (it generates a network per task)"
                    )
                self.q.requires_grad_(False)  # its values are never used
                services.weights.bind(self.q, loss_scale=1.0)  # the TD loss is a mean
                self.generator = services.weights
            self.skills: SkillService | None = services.skills
            if self.skills is not None:
                if self.generator is not None:
                    raise ConfigError(
                        "DQN runs either generated weights (model=hypernetwork) or skills of "
                        "a skill manager, not both"
                    )
                self.skills.bind(self.q)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.target_weights: dict[str, torch.Tensor] = {}
        """The target network's generated weights (``model: hypernetwork`` only)."""
        self.task: int | None = None
        """The task being trained (task-aware runs), whose generated weights train."""
        self._refresh_target = self.generator is not None or self.skills is not None
        self.trained: nn.Module = nn.Module() if self.generator is not None else self.q
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.trained.parameters())}], lr=config.lr
        )
        self.rng = np.random.default_rng(seed)
        self.schedule_steps = 0
        """Env steps observed since the epsilon schedule (re)started."""
        self.updates = 0
        """Optimiser steps taken."""

    @property
    def epsilon(self) -> float:
        """The exploration rate for the next action."""
        c = self.config
        return linear_schedule(
            c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps, self.schedule_steps
        )

    @property
    def untrained_task_heads(self) -> bool:
        """With ``multi_head``, each task's Q-head stays untrained until its task trains."""
        return self.config.multi_head

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> int:
        """Epsilon-greedy when ``explore``, else greedy (ties go to the lowest action)."""
        if explore and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.num_actions))
        return self._greedy(np.asarray(obs)[None], task_id)[0]

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[int]:
        """Greedy actions of a stack in one forward pass; exploring ones one by one, so
        the epsilon draws come in the same order as :meth:`act`'s."""
        if explore:
            return [self.act(o, task_id, True) for o in obs]
        return self._greedy(obs, task_id)

    def act_skills(
        self, obs: np.ndarray, task_id: int | None, explore: bool, skills: np.ndarray
    ) -> list[int]:
        """Row ``i`` greedy on the Q-network run with skill ``skills[i]``'s parameters
        (one forward pass per distinct skill); when ``explore``, each row then explores
        with probability epsilon, drawn in row order as :meth:`act_batch` does.

        Raises:
            ValueError: no skill manager bound the Q-network.
        """
        if self.skills is None:
            raise ValueError("DQN acts with skills only with a skill manager (skills service)")
        heads = self._heads(len(obs), task_id)
        obs_t = torch.as_tensor(obs)
        live = dict(self.q.named_parameters())
        actions = np.zeros(len(obs), dtype=np.int64)
        with torch.inference_mode():
            for skill in np.unique(skills):
                rows = np.flatnonzero(skills == skill)
                params = dict(self.skills.parameters(int(skill), live))
                inputs = (obs_t[rows], None if heads is None else heads[rows])
                q = torch.func.functional_call(self.q, params, inputs)
                actions[rows] = q.argmax(dim=1).numpy()
        chosen: list[int] = actions.tolist()
        if explore:
            for i in range(len(chosen)):
                if self.rng.random() < self.epsilon:
                    chosen[i] = int(self.rng.integers(self.num_actions))
        return chosen

    def _heads(self, rows: int, task_id: int | None) -> torch.Tensor | None:
        """The head of each of ``rows`` acting rows (``None``: one head)."""
        if not self.config.multi_head:
            return None
        if task_id is None:
            raise ValueError("multi-head DQN needs the task id to act")
        return torch.full((rows,), task_id)

    def _greedy(self, obs: np.ndarray, task_id: int | None) -> list[int]:
        """The greedy actions of a stack of observations, one forward pass."""
        heads = self._heads(len(obs), task_id)
        with torch.inference_mode():
            q = self._online(torch.as_tensor(obs), heads, task_id)
        actions: list[int] = q.argmax(dim=1).tolist()
        return actions

    def _online(
        self,
        obs: torch.Tensor,
        heads: torch.Tensor | None,
        task: int | None,
        weights: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Q-values of the online network, on ``task``'s generated weights if generated
        (``weights``: generated already, for several calls of one update)."""
        if self.generator is None:
            out: torch.Tensor = self.q(obs, heads)
            return out
        if weights is None:
            weights = self.generator.weights(task)
        generated: torch.Tensor = torch.func.functional_call(self.q, dict(weights), (obs, heads))
        return generated

    def _target(self, obs: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
        """Q-values of the target network."""
        if self.generator is None:
            out: torch.Tensor = self.target_q(obs, heads)
            return out
        target: torch.Tensor = torch.func.functional_call(
            self.target_q, self.target_weights, (obs, heads)
        )
        return target

    def _copy_target(self) -> None:
        """Target network <- online network (its generated weights, detached)."""
        if self.generator is None:
            self.target_q.load_state_dict(self.q.state_dict())
            return
        with torch.no_grad():
            generated = self.generator.weights(self.task)
            self.target_weights = {n: w.detach().clone() for n, w in generated.items()}
        self._refresh_target = False

    def observe(self, step: Step) -> None:
        """Advance the epsilon schedule by one env step."""
        self.schedule_steps += 1

    def on_task_start(self, task: TaskInfo) -> None:
        """Restart the epsilon schedule: the new task needs exploring again. With generated
        weights the target network is refreshed at the task's first update (the
        hypernetwork switches to the new task after the agent hears of it)."""
        self.schedule_steps = 0
        self.task = task.index
        self._refresh_target = self.generator is not None or self.skills is not None

    def batches(self, global_step: int) -> Iterator[TransitionBatch]:
        """``gradient_steps`` replay minibatches every ``train_every`` steps once warm."""
        c = self.config
        return replay_batches(
            self.replay,
            global_step,
            train_every=c.train_every,
            learning_starts=c.learning_starts,
            gradient_steps=c.gradient_steps,
            batch_size=c.batch_size,
        )

    def losses(self, batch: TransitionBatch) -> Losses:
        """Huber TD error against the double-DQN target.

        The online net picks the next action and the target net values it, which removes
        the max operator's overestimation. Terminated transitions do not bootstrap;
        truncated ones were stored as not terminated and do.
        """
        if self._refresh_target:
            self._copy_target()
            self._refresh_target = False
        if self.skills is not None:
            live = [dict(self.q.named_parameters()), dict(self.target_q.named_parameters())]
            online, target = self.skills.train_parameters(live)
            return self.skill_losses(batch, online, target)
        heads = batch.task_ids if self.config.multi_head else None
        # generated once for both passes; the second runs without gradient
        weights = None if self.generator is None else self.generator.weights(self.task)
        return {
            "loss_td": self._td_loss(
                batch,
                lambda obs: self._online(obs, heads, self.task, weights),
                lambda obs: self._target(obs, heads),
            )
        }

    def skill_losses(
        self,
        batch: TransitionBatch,
        online: Mapping[str, torch.Tensor],
        target: Mapping[str, torch.Tensor],
    ) -> Losses:
        """The double-DQN Huber loss of the Q-network run with ``online`` parameters
        against ``target`` ones (a skill learner trains its own parameter set with it)."""
        heads = batch.task_ids if self.config.multi_head else None

        def run(params: Mapping[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
            def q(obs: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = torch.func.functional_call(self.q, dict(params), (obs, heads))
                return out

            return q

        return {"loss_td": self._td_loss(batch, run(online), run(target))}

    def _td_loss(
        self,
        batch: TransitionBatch,
        online: Callable[[torch.Tensor], torch.Tensor],
        target: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Huber TD error of ``online`` Q-values against the double-DQN target: ``online``
        picks the next action, ``target`` values it (no gradient through the target)."""
        q = online(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_actions = online(batch.next_obs).argmax(1, keepdim=True)
            next_q = target(batch.next_obs).gather(1, next_actions).squeeze(1)
            bootstrap = batch.rewards + self.config.gamma * next_q * ~batch.terminated
        return F.smooth_l1_loss(q, bootstrap)

    def after_optimizer_step(self) -> None:
        """Update the target net: Polyak every step if ``tau`` is set, else periodic copy."""
        self.updates += 1
        tau = self.config.tau
        if tau is not None:
            with torch.no_grad():
                if self.generator is not None:
                    generated = self.generator.weights(self.task)
                    for name, target in self.target_weights.items():
                        target.lerp_(generated[name], tau)
                    return
                for target, online in zip(
                    self.target_q.parameters(), self.q.parameters(), strict=True
                ):
                    target.lerp_(online, tau)
        elif self.updates % self.config.target_update_every == 0:
            self._copy_target()

    def policy_distribution(
        self, obs: torch.Tensor, task_ids: torch.Tensor
    ) -> torch.distributions.Categorical:
        """The Boltzmann policy ``softmax(Q(s, .) / T)`` (``T = policy_temperature``).

        DQN acts epsilon-greedily, which has no useful gradient; the Boltzmann policy is the
        smooth policy its Q-values define, and tends to the greedy one as ``T -> 0``.
        """
        heads = task_ids if self.config.multi_head else None
        return torch.distributions.Categorical(
            logits=self._online(obs, heads, self.task) / self.config.policy_temperature
        )

    def state_value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """``V(s) = sum_a pi(a|s) Q(s, a)``: the value of :meth:`policy_distribution`'s policy.

        The Boltzmann expectation rather than ``max_a Q``: it is the value of the policy
        exposed next to it, it is differentiable in every action's Q-value (``max`` passes
        gradient to one action only), and it tends to ``max_a Q`` as ``T -> 0``.
        """
        heads = task_ids if self.config.multi_head else None
        q = self._online(obs, heads, self.task)
        probs = torch.softmax(q / self.config.policy_temperature, dim=1)
        value: torch.Tensor = (probs * q).sum(dim=1)
        return value

    def networks(self) -> nn.Module:
        """The online Q-network (the target net is a lagging copy, not the policy); an
        empty module when its weights are generated."""
        return self.trained

    def state_dict(self) -> dict[str, Any]:
        """Online and target nets, optimiser, schedule and update counters, exploration rng."""
        return {
            **super().state_dict(),
            "target": self.target_q.state_dict(),
            "target_weights": dict(self.target_weights),
            "task": self.task,
            "refresh_target": self._refresh_target,
            "schedule_steps": self.schedule_steps,
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.target_q.load_state_dict(state["target"])
        self.target_weights = {n: w.clone() for n, w in state["target_weights"].items()}
        self.task = state["task"]
        self._refresh_target = bool(state["refresh_target"])
        self.schedule_steps = int(state["schedule_steps"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
