"""Model-predictive control through a learned dynamics model (HyperCRL's agent).

The agent learns a model of the state change, ``s' = s + f(x)`` with ``x = [phi(s), a]``,
and acts by planning through it with the task's reward function
(:attr:`l2rl.types.EnvSpec.reward_fns`): :class:`~l2rl.planning.CEMPlanner` (HyperCRL's
cartpole controller, the default) or :class:`~l2rl.planning.MPPIPlanner` (its pendulum
controller), batched over candidate sequences. As in HyperCRL (Huang et al. 2020,
``hypercrl/hnet_exp.py``, ``control/agent.py``, ``dataset/datautil.py``):

* each training window starts with ``random_steps`` uniformly random actions, then the
  model trains ``gradient_steps`` minibatches of ``batch_size`` right away and again every
  ``train_every`` steps, from the replay the builder injects (HyperCRL trains on the
  current task's data: use the ``current-task`` replay for that);
* the loss is HyperCRL's ``TaskLoss``: ``sum over the minibatch of ||f(x) - (s' - s)||^2``
  divided by the state size;
* ``phi`` replaces each angle in ``angle_dims`` by its cosine and sine, and with
  ``normalize_inputs`` the model sees ``x`` standardised by the mean and standard deviation
  of the current task's transitions, frozen at each training round (HyperCRL's
  ``normalize_xu``; a task plans with its own statistics).

``model`` chooses ``f``: ``mlp``, a plain MLP with ReLU hidden layers trained by this
agent's Adam (with ``multi_head``, one output layer per task, as HyperCRL's fine-tuning,
coreset, EWC and SI baselines have; each transition trains its own task's head); or
``ensemble``, PETS's probabilistic ensemble (:mod:`l2rl.agents.dynamics_ensemble`: Gaussian
members on bootstraps, candidates propagated by one member each); or
``hypernetwork``, the same MLP with weights generated per task by the ``weights`` service
(:class:`~l2rl.core.WeightService`, e.g. ``hypercrl``) and run through
``torch.func.functional_call``, so the loss trains the hypernetwork. In that case the agent
owns no trained parameter: :meth:`MPCAgent.networks` is empty (a regularizer aimed at the
agent protects nothing; the hypernetwork regularises itself).

HyperCRL's weight-norm term (``reg_lambda``, which its code applies to the last weight
tensor only) and its 75/25 train/validation split are left out: the model trains on every
stored transition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from l2rl.agents.dynamics_ensemble import ProbabilisticEnsemble
from l2rl.agents.requirements import check_multi_head, required_replay
from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Agent, AgentServices, BatchSource, WeightService
from l2rl.planning import CEMPlanner, CEMSettings, MPPIPlanner, MPPISettings
from l2rl.seeding import derive_seed
from l2rl.types import EnvSpec, Losses, RewardFn, Step, TaskInfo, TransitionBatch

from .networks import MultiHeadMLP

_CEM, _MPPI = CEMSettings(), MPPISettings()


class InputStats:
    """Running mean and variance of model inputs (Welford), one set per task.

    :meth:`freeze` snapshots a task's statistics for the model to use until the next
    freeze, as HyperCRL recomputes its normalisation each time it builds a training set.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.running: dict[int, tuple[int, Tensor, Tensor]] = {}
        """Task -> (count, mean, sum of squared deviations)."""
        self.frozen: dict[int, tuple[Tensor, Tensor]] = {}
        """Task -> (mean, std) in use."""

    def add(self, task: int, x: Tensor) -> None:
        """Count one input vector of ``task``."""
        count, mean, m2 = self.running.get(task, (0, torch.zeros(self.dim), torch.zeros(self.dim)))
        count += 1
        delta = x - mean
        mean = mean + delta / count
        self.running[task] = (count, mean, m2 + delta * (x - mean))

    def freeze(self, task: int) -> None:
        """Use ``task``'s current statistics (sample std; 1 where it is ~0 or unknown)."""
        count, mean, m2 = self.running.get(task, (0, torch.zeros(self.dim), torch.zeros(self.dim)))
        std = (m2 / (count - 1)).sqrt() if count > 1 else torch.ones(self.dim)
        self.frozen[task] = (mean, torch.where(std < 1e-9, torch.ones_like(std), std))

    def normalize(self, task: int, x: Tensor, fallback: int) -> Tensor:
        """``(x - mean) / std`` with ``task``'s frozen statistics, or ``fallback``'s where
        ``task`` has none yet (a task evaluated before it trains); identity before any."""
        stats = self.frozen.get(task, self.frozen.get(fallback))
        if stats is None:
            return x
        mean, std = stats
        return (x - mean) / std

    def normalize_rows(self, tasks: Tensor, x: Tensor, fallback: int) -> Tensor:
        """:meth:`normalize` with each row's own task (``tasks [N]``)."""
        distinct = torch.unique(tasks).tolist()
        if len(distinct) == 1:
            return self.normalize(int(distinct[0]), x, fallback)
        out = torch.empty_like(x)
        for task in distinct:
            rows = tasks == task
            out[rows] = self.normalize(int(task), x[rows], fallback)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Running and frozen statistics."""
        return {"running": dict(self.running), "frozen": dict(self.frozen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.running = {int(k): v for k, v in state["running"].items()}
        self.frozen = {int(k): v for k, v in state["frozen"].items()}


class MPCAgent(Agent):
    """Agent ``mpc``: plans with CEM or MPPI through a learned model of ``s' - s``.

    Needs a replay (role ``replay``), 1-D ``Box`` observation and action spaces, and a
    reward function on every task (one shared by all tasks in task-agnostic runs); with
    ``model: hypernetwork`` also a ``weights`` service.
    """

    class Config(PluginConfig):
        """Model, schedule and planner (defaults: HyperCRL's cartpole settings)."""

        planner: Literal["cem", "mppi"] = Field(
            default="cem", description="CEM (HyperCRL's cartpole) or MPPI (its pendulum)."
        )
        horizon: PositiveInt | None = Field(
            default=None, description="Planning horizon; null: the planner's (CEM 25, MPPI 15)."
        )
        samples: PositiveInt | None = Field(
            default=None, description="Candidate sequences; null: CEM 400, MPPI 100."
        )
        elites: PositiveInt = Field(default=_CEM.elites, description="CEM elites.")
        iterations: PositiveInt = Field(default=_CEM.iterations, description="CEM refits.")
        init_std: float = Field(
            default=_CEM.init_std, gt=0.0, description="CEM's first std, in half-ranges."
        )
        noise_std: float = Field(
            default=_MPPI.noise_std, gt=0.0, description="MPPI perturbation std, in half-ranges."
        )
        temperature: float = Field(default=_MPPI.temperature, gt=0.0, description="MPPI lambda.")
        discount: float = Field(default=0.99, gt=0.0, le=1.0, description="Return discount.")
        model: Literal["mlp", "ensemble", "hypernetwork"] = Field(
            default="mlp",
            description="f: a plain MLP, PETS's probabilistic ensemble of them, or the MLP "
            "with weights generated by the weights service.",
        )
        ensemble_size: PositiveInt = Field(
            default=5, description="Members of the probabilistic ensemble (PETS: 5)."
        )
        multi_head: bool = Field(
            default=False,
            description="The plain MLP's output layer per task (HyperCRL's baselines); "
            "task-aware runs only.",
        )
        hidden: list[PositiveInt] = Field(
            default=[256, 256], description="Hidden widths of f (HyperCRL pendulum: [32, 32])."
        )
        lr: float = Field(default=1e-3, gt=0.0, description="Adam lr of the plain MLP.")
        batch_size: PositiveInt = Field(default=32, description="Transitions per minibatch.")
        train_every: PositiveInt = Field(
            default=200, description="Env steps between training rounds (pendulum: 400)."
        )
        gradient_steps: PositiveInt = Field(
            default=500, description="Minibatches per training round (pendulum: 1000)."
        )
        random_steps: int = Field(
            default=400, ge=0, description="Random actions at the start of each window."
        )
        normalize_inputs: bool = Field(
            default=True, description="Standardise [phi(s), a] per task (pendulum: false)."
        )
        angle_dims: list[int] = Field(
            default=[], description="Observation entries that are angles: phi uses cos, sin."
        )
        max_grad_norm: float | None = Field(
            default=None, gt=0.0, description="Clip the MLP's gradient norm (HyperCRL: none)."
        )

    config: Config

    def __init__(
        self, config: Config, env_spec: EnvSpec, services: AgentServices, seed: int
    ) -> None:
        obs_space, action_space = env_spec.observation_space, env_spec.action_space
        for what, space in (("observation", obs_space), ("action", action_space)):
            if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
                raise ConfigError(f"mpc needs a 1-D Box {what} space, got {space}")
        assert isinstance(obs_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Box)
        obs_dim, act_dim = obs_space.shape[0], action_space.shape[0]
        bad = [d for d in config.angle_dims if not 0 <= d < obs_dim]
        if bad or len(set(config.angle_dims)) != len(config.angle_dims):
            raise ConfigError(
                f"mpc angle_dims must be distinct observation indices below {obs_dim}, "
                f"got {config.angle_dims}"
            )
        self.reward_fns = _reward_functions(env_spec)
        replay = required_replay(services, "mpc", config.batch_size)
        weights = services.weights
        check_multi_head(config.multi_head, env_spec, "mpc")
        if config.multi_head and config.model != "mlp":
            raise ConfigError(
                f"mpc multi_head is for the plain MLP, not model={config.model} (a "
                "hypernetwork already generates a model per task)"
            )
        if config.model == "hypernetwork" and weights is None:
            raise ConfigError(
                "mpc model=hypernetwork needs a component with role hypernetwork "
                "(e.g. hypercrl) to generate the model's weights"
            )
        super().__init__(config, env_spec, services, seed)
        self.replay: BatchSource = replay
        self.max_grad_norm = config.max_grad_norm
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.action_low = torch.as_tensor(action_space.low, dtype=torch.float32)
        self.action_high = torch.as_tensor(action_space.high, dtype=torch.float32)
        in_dim = obs_dim + len(config.angle_dims) + act_dim
        heads = env_spec.num_tasks if config.multi_head else 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # HyperCRL's MLP main network; with heads > 1 its baselines' shared trunk
            # with one output layer per task (model/mbrl.py Baseline.add_weights).
            self.model = MultiHeadMLP(in_dim, obs_dim, config.hidden, heads)
            self.ensemble: ProbabilisticEnsemble | None = None
            if config.model == "ensemble":
                self.ensemble = ProbabilisticEnsemble(
                    in_dim, obs_dim, config.hidden, config.ensemble_size
                )
            self.generator: WeightService | None = None
            if config.model == "hypernetwork":
                assert weights is not None
                self.model.requires_grad_(False)  # its values are never used
                weights.bind(self.model, loss_scale=config.batch_size)
                self.generator = weights
        self._trained: nn.Module = self.ensemble or self.model
        if self.generator is not None:
            self._trained = nn.Module()
        self.optimizer = torch.optim.Adam(
            [{"params": list(self._trained.parameters())}], lr=config.lr
        )
        self.stats = InputStats(in_dim)
        self.rng = np.random.default_rng(derive_seed(seed, 1))
        self.plan_generator = torch.Generator().manual_seed(derive_seed(seed, 2))
        self.bootstrap_generator = torch.Generator().manual_seed(derive_seed(seed, 3))
        self.task = -1
        """The training window's task index (-1: task-agnostic or before any window)."""
        self.window_steps = 0
        """Env steps observed since the window began."""
        self._planners: dict[tuple[bool, int], CEMPlanner | MPPIPlanner] = {}

    # --- the model --------------------------------------------------------------------
    def features(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``x = [phi(s), a]``, ``[N, in_dim]``: angles in ``angle_dims`` as cos and sin."""
        dims = self.config.angle_dims
        if not dims:
            return torch.cat([obs, actions], dim=-1)
        keep = [i for i in range(self.obs_dim) if i not in dims]
        angles = obs[..., dims]
        parts = [obs[..., keep], torch.cos(angles), torch.sin(angles), actions]
        return torch.cat(parts, dim=-1)

    def inputs(self, obs: Tensor, actions: Tensor, task: int | Tensor) -> Tensor:
        """The model's input: :meth:`features`, standardised (``normalize_inputs``) by the
        statistics of ``task`` (one index for all rows, or one per row)."""
        x = self.features(obs.float(), actions.float())
        if not self.config.normalize_inputs:
            return x
        if isinstance(task, int):
            return self.stats.normalize(task, x, self.task)
        return self.stats.normalize_rows(task, x, self.task)

    def predict(
        self,
        obs: Tensor,
        actions: Tensor,
        task: int | Tensor,
        weights: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """``f(x)``: the predicted ``s' - s`` of each row for its task (``task``: one index
        for all rows, or one per row; -1 unknown): that task's statistics, head or generated
        weights (``weights``: generated once for many calls of one task)."""
        x = self.inputs(obs, actions, task)
        tasks = torch.full((len(obs),), task) if isinstance(task, int) else task.long()
        if self.ensemble is not None:
            return self.ensemble.mean_prediction(x)
        if self.generator is None:
            out: Tensor = self.model(x, tasks if self.config.multi_head else None)
            return out
        distinct = torch.unique(tasks).tolist()
        if weights is not None or len(distinct) == 1:
            single = int(distinct[0])
            if weights is None:
                weights = self.generator.weights(None if single < 0 else single)
            generated: Tensor = torch.func.functional_call(self.model, dict(weights), (x,))
            return generated
        parts = torch.empty(len(x), self.obs_dim)
        for each in distinct:
            rows = tasks == each
            w = dict(self.generator.weights(None if each < 0 else int(each)))
            parts[rows] = torch.func.functional_call(self.model, w, (x[rows],))
        return parts

    def losses(self, batch: TransitionBatch) -> Losses:
        """HyperCRL's ``TaskLoss``: ``sum_batch ||f(x) - (s' - s)||^2 / state size``; each row
        through its own task's head (or generated weights, statistics) where it has one,
        the current window's otherwise."""
        target = (batch.next_obs - batch.obs).float()
        tasks = torch.where(batch.task_ids >= 0, batch.task_ids, self.task)
        if self.ensemble is not None:
            x = self.inputs(batch.obs, batch.actions, tasks)
            return {"loss_dynamics": self.ensemble.nll(x, target, self.bootstrap_generator)}
        pred = self.predict(batch.obs, batch.actions, tasks)
        return {"loss_dynamics": F.mse_loss(pred, target, reduction="sum") / self.obs_dim}

    def batches(self, global_step: int) -> Iterator[TransitionBatch]:
        """A round of ``gradient_steps`` minibatches once the window's random steps are
        done, and every ``train_every`` steps after; the task's statistics freeze first."""
        c = self.config
        since = self.window_steps - c.random_steps
        if since < 0 or since % c.train_every != 0 or len(self.replay) < c.batch_size:
            return iter(())
        self.stats.freeze(self.task)
        return (self.replay.sample(c.batch_size) for _ in range(c.gradient_steps))

    def networks(self) -> nn.Module:
        """The plain MLP; an empty module when the weights are generated."""
        return self._trained

    @property
    def untrained_task_heads(self) -> bool:
        """With ``multi_head``, each task's output layer stays untrained until its task
        trains."""
        return self.config.multi_head

    # --- acting -----------------------------------------------------------------------
    def _reward_fn(self, task_id: int | None) -> RewardFn:
        return self.reward_fns[0 if task_id is None else task_id]

    def _planner(self, evaluation: bool, index: int) -> CEMPlanner | MPPIPlanner:
        key = (evaluation, index)
        if key not in self._planners:
            c = self.config
            if c.planner == "cem":
                cem = CEMSettings(
                    horizon=c.horizon or _CEM.horizon,
                    samples=c.samples or _CEM.samples,
                    elites=c.elites,
                    iterations=c.iterations,
                    init_std=c.init_std,
                    discount=c.discount,
                )
                self._planners[key] = CEMPlanner(cem, self.action_low, self.action_high)
            else:
                mppi = MPPISettings(
                    horizon=c.horizon or _MPPI.horizon,
                    samples=c.samples or _MPPI.samples,
                    noise_std=c.noise_std,
                    temperature=c.temperature,
                    discount=c.discount,
                )
                self._planners[key] = MPPIPlanner(mppi, self.action_low, self.action_high)
        return self._planners[key]

    def _plan(
        self, obs: np.ndarray, task_id: int | None, evaluation: bool, index: int
    ) -> np.ndarray:
        task = -1 if task_id is None else task_id
        weights = None
        if self.generator is not None:
            with torch.no_grad():  # generate once per decision, not once per horizon step
                weights = {n: w.detach() for n, w in self.generator.weights(task_id).items()}

        def dynamics(s: Tensor, a: Tensor) -> Tensor:
            if self.ensemble is not None:  # candidate i through member i mod B (TS-inf)
                return s + self.ensemble.grouped(self.inputs(s, a, task))
            return s + self.predict(s, a, task, weights)

        with torch.no_grad():
            plan = self._planner(evaluation, index).plan(
                torch.as_tensor(obs, dtype=torch.float32),
                dynamics,
                self._reward_fn(task_id),
                self.plan_generator,
            )
        return plan[0].numpy().astype(self.env_spec.action_space.dtype)

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> np.ndarray:
        """Random during a window's first ``random_steps`` (training), else planned."""
        return self.act_batch(np.asarray(obs)[None], task_id, explore)[0]

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[np.ndarray]:
        """One plan per observation (each batched over its candidates)."""
        if explore and self.window_steps < self.config.random_steps:
            space = self.env_spec.action_space
            assert isinstance(space, gym.spaces.Box)
            return [self.rng.uniform(space.low, space.high).astype(space.dtype) for _ in obs]
        return [self._plan(o, task_id, not explore, i) for i, o in enumerate(obs)]

    def observe(self, step: Step) -> None:
        """Count the step and add its model input to the task's statistics."""
        self.window_steps += 1
        x = self.features(
            torch.as_tensor(step.obs, dtype=torch.float32)[None],
            torch.as_tensor(step.action, dtype=torch.float32).reshape(1, -1),
        )[0]
        self.stats.add(self.task, x)

    def on_episode_start(self, env_indices: Sequence[int], evaluation: bool) -> None:
        """Forget MPPI's warm start in the envs (or evaluation slots) that restart."""
        for index in env_indices:
            planner = self._planners.get((evaluation, index))
            if isinstance(planner, MPPIPlanner):
                planner.reset()

    def on_task_start(self, task: TaskInfo) -> None:
        """A new window: random steps again, the task's own statistics."""
        self.task = task.index
        self.window_steps = 0

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, statistics, window counters, random streams, MPPI warm starts."""
        nominals = {
            index: p.nominal.clone()
            for (evaluation, index), p in self._planners.items()
            if isinstance(p, MPPIPlanner) and not evaluation
        }
        return {
            "model": self.model.state_dict(),
            "ensemble": None if self.ensemble is None else self.ensemble.state_dict(),
            "bootstrap_generator": self.bootstrap_generator.get_state(),
            "optimizer": self.optimizer.state_dict(),
            "stats": self.stats.state_dict(),
            "task": self.task,
            "window_steps": self.window_steps,
            "rng": self.rng.bit_generator.state,
            "plan_generator": self.plan_generator.get_state(),
            "nominals": nominals,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
        if self.ensemble is not None:
            self.ensemble.load_state_dict(state["ensemble"])
        self.bootstrap_generator.set_state(state["bootstrap_generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stats.load_state_dict(state["stats"])
        self.task = int(state["task"])
        self.window_steps = int(state["window_steps"])
        self.rng.bit_generator.state = state["rng"]
        self.plan_generator.set_state(state["plan_generator"])
        for index, nominal in state["nominals"].items():
            planner = self._planner(False, int(index))
            assert isinstance(planner, MPPIPlanner)
            planner.nominal = nominal.clone()


def _reward_functions(env_spec: EnvSpec) -> tuple[RewardFn, ...]:
    """Every task's reward function; in task-agnostic runs they must be one function.

    Raises:
        ConfigError: a task has none, or task-agnostic tasks have different ones.
    """
    fns = env_spec.reward_fns
    missing = [i for i, fn in enumerate(fns) if fn is None]
    if not fns or missing:
        raise ConfigError(
            "mpc plans with each task's reward function (TaskSpec.reward_fn), but "
            + (f"tasks {missing} have none" if fns else "the scenario gives none")
        )
    present = tuple(fn for fn in fns if fn is not None)
    if not env_spec.task_aware and len(set(present)) > 1:
        raise ConfigError(
            "mpc in a task-agnostic run cannot tell which task's reward to plan with: "
            "its tasks have different reward functions"
        )
    return present
