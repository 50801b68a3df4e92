"""``page-hinkley`` and ``cusum``: task-change detectors on a statistic of the run.

The watched statistic is, per option ``statistic``:

- ``episode_return``: each finished training episode's return;
- ``episode_length``: each finished training episode's length in env steps (games that
  differ in how long an episode lasts differ in it even where returns say little);
- ``loss``: after every optimiser step of learner ``learner`` (the agent by default; a
  world model's learner for its prediction loss), its loss ``loss_key`` (default: the sum
  of its terms), e.g. DQN's TD loss ``loss_td``.

A regime's mean and standard deviation are estimated from its first ``warmup`` values;
later values are fed to the change-point test (:mod:`.changepoint`) as z-scores. On an
alarm the detector asks for a task change (:meth:`l2rl.core.RunContext.request_task_change`)
and warms up again on the new regime. With ``rewarm_opposite`` and a one-sided
``direction``, a change the other way only re-estimates the regime: a learning agent's
returns rise (and its losses fall) within a task, and a regime estimated early in learning
would otherwise make every later value look like a change.

With ``recognise``, it asks only after the new regime's warm-up, naming the earlier
inferred task whose stored regime (its latest estimate) has the mean nearest to the new one
if it lies within ``match_tolerance`` of that regime's standard deviations (a return to
that task), or a new task otherwise; detection is then ``warmup`` values later. A new regime
that matches the current task's own is taken for a false alarm, and no change is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, Step, TaskInfo, UpdateStats

from .changepoint import CUSUM, Direction, PageHinkley


class DetectorConfig(PluginConfig):
    """Options every detector has (the test's own: ``drift``, ``threshold``)."""

    statistic: Literal["episode_return", "episode_length", "loss"] = Field(
        default="episode_return", description="What is watched (module docstring)."
    )
    learner: str = Field(
        default="agent", description="With statistic=loss: the learner whose losses are read."
    )
    loss_key: str | None = Field(
        default=None,
        description="With statistic=loss: the loss term read, e.g. loss_td (None: their sum).",
    )
    warmup: int = Field(
        default=20, ge=2, description="Values that estimate a regime's mean and spread."
    )
    direction: Direction = Field(default="both", description="Changes of the mean detected.")
    drift: float = Field(default=0.5, ge=0, description="Change tolerated, in std units.")
    threshold: float = Field(default=8.0, gt=0, description="Alarm threshold, in std units.")
    recognise: bool = Field(
        default=False,
        description="Name an earlier inferred task when the new regime matches its statistics.",
    )
    match_tolerance: float = Field(
        default=1.0, gt=0, description="With recognise: a match is within this many stds."
    )
    min_std: float = Field(
        default=1e-3,
        gt=0,
        description="Floor of a regime's std, in the statistic's units (constant statistics).",
    )
    rewarm_opposite: bool = Field(
        default=False,
        description="With a one-sided direction: a change the other way re-estimates the "
        "regime instead of asking for a task change (module docstring).",
    )

    @model_validator(mode="after")
    def _one_sided_to_rewarm(self) -> DetectorConfig:
        if self.rewarm_opposite and self.direction == "both":
            raise ValueError("rewarm_opposite needs direction 'increase' or 'decrease'")
        return self


class ChangeDetector(Component):
    """A detector (role ``detector``); subclasses choose the change-point test.

    Args:
        config: validated options.
        env_spec: the scenario's spaces.
    """

    role = "detector"
    config: DetectorConfig
    test_class: type[PageHinkley] | type[CUSUM]
    """The change-point test: built from ``drift``, ``threshold`` and ``direction``."""
    test_name: str
    """Names the test in the task-change reasons."""

    def __init__(self, config: DetectorConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        if config.statistic == "loss":
            self.learner = config.learner  # its update hooks are the ones this one gets
        # with rewarm_opposite the test watches both ways; observe() tells the two apart
        watched = "both" if config.rewarm_opposite else config.direction
        self.test = self.test_class(config.drift, config.threshold, watched)
        self.totals: dict[int, float] = {}  # per env: the running episode's return or length
        self.warm: list[float] = []  # values of the current warm-up
        self.mean, self.std = 0.0, 1.0
        self.alarm = ""  # with recognise: the alarm whose new regime is warming up
        self.regimes: dict[int, tuple[float, float]] = {}  # inferred id -> (mean, std)
        self.pending: tuple[float, float] | None = None  # the regime of a requested change

    # --- the statistic ------------------------------------------------------------------
    def on_step(self, ctx: RunContext, step: Step) -> None:
        """Sum rewards (or count steps) per env; feed the episode's total when it ends."""
        if self.config.statistic == "loss":
            return
        counted = step.reward if self.config.statistic == "episode_return" else 1.0
        total = self.totals.get(step.env_index, 0.0) + counted
        if step.terminated or step.truncated:
            self.totals.pop(step.env_index, None)
            self.observe(ctx, total)
        else:
            self.totals[step.env_index] = total

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Feed the learner's loss of this optimiser step (not of a sleep phase's: those
        are another objective)."""
        if self.config.statistic != "loss" or ctx.sleeping:
            return
        key = self.config.loss_key
        if key is None:
            self.observe(ctx, sum(stats.losses.values()))
        elif key not in stats.losses:
            raise KeyError(f"learner {stats.learner!r} has no loss {key!r}: {sorted(stats.losses)}")
        else:
            self.observe(ctx, stats.losses[key])

    # --- detection ----------------------------------------------------------------------
    def observe(self, ctx: RunContext, value: float) -> None:
        """One value of the statistic: warm up, or test it and act on an alarm."""
        if len(self.warm) < self.config.warmup:
            self.warm.append(value)
            if len(self.warm) == self.config.warmup:
                self._warmed_up(ctx)
            return
        alarm = self.test.update((value - self.mean) / self.std)
        if not alarm:
            return
        self.warm = []
        if alarm != self.config.direction and self.config.rewarm_opposite:
            return  # the regime moved the expected way: only re-estimate it
        if self.config.recognise:
            self.alarm = alarm  # ask once the new regime's statistics are known
        else:
            self.pending = None
            ctx.request_task_change(f"{self.test_name}: the statistic's mean {self._word(alarm)}")

    def _warmed_up(self, ctx: RunContext) -> None:
        mean = sum(self.warm) / len(self.warm)
        spread = math.sqrt(sum((v - mean) ** 2 for v in self.warm) / (len(self.warm) - 1))
        self.mean, self.std = mean, max(spread, self.config.min_std)
        self.test.reset()
        current = ctx.task.index if ctx.task is not None else 0
        if self.alarm:
            match = self._match(mean)
            reason = f"{self.test_name}: the statistic's mean {self._word(self.alarm)}"
            self.alarm = ""
            if match != current:
                self.pending = (self.mean, self.std)
                ctx.request_task_change(reason, match)
                return
            # else the alarm was false: the regime is the task's own
        # the task's latest regime: its first, or one re-estimated on the way
        self.regimes[current] = (self.mean, self.std)

    def _match(self, mean: float) -> int | None:
        """The inferred task (the current one included) whose regime mean is nearest
        ``mean``, if close."""
        distances = {task: abs(mean - m) / s for task, (m, s) in self.regimes.items()}
        if not distances:
            return None
        task = min(distances, key=lambda t: distances[t])
        return task if distances[task] <= self.config.match_tolerance else None

    @staticmethod
    def _word(alarm: str) -> str:
        return "rose" if alarm == "increase" else "fell"

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """A new inferred task opened: keep its regime's statistics (a new task's only;
        a recognised one keeps those it was first seen with)."""
        if self.pending is not None:
            self.regimes.setdefault(task.index, self.pending)
            self.pending = None

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the detector carries: warm-up, regime, test sums, stored regimes."""
        return {
            "totals": dict(self.totals),
            "warm": list(self.warm),
            "mean": self.mean,
            "std": self.std,
            "alarm": self.alarm,
            "regimes": {task: list(stats) for task, stats in self.regimes.items()},
            "pending": None if self.pending is None else list(self.pending),
            "test": {k: v for k, v in vars(self.test).items() if k.startswith("_")},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.totals = {int(k): float(v) for k, v in state["totals"].items()}
        self.warm = [float(v) for v in state["warm"]]
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self.alarm = str(state["alarm"])
        self.regimes = {int(k): (float(v[0]), float(v[1])) for k, v in state["regimes"].items()}
        pending = state["pending"]
        self.pending = None if pending is None else (float(pending[0]), float(pending[1]))
        for key, value in state["test"].items():
            setattr(self.test, key, value)


class PageHinkleyDetector(ChangeDetector):
    """``page-hinkley``: :class:`ChangeDetector` with the Page-Hinkley test
    (:class:`.changepoint.PageHinkley`; ``drift`` is delta, ``threshold`` lambda)."""

    Config = DetectorConfig
    test_class = PageHinkley
    test_name = "page-hinkley"


class CUSUMDetector(ChangeDetector):
    """``cusum``: :class:`ChangeDetector` with the two-sided CUSUM test
    (:class:`.changepoint.CUSUM`; ``drift`` is k, ``threshold`` h)."""

    Config = DetectorConfig
    test_class = CUSUM
    test_name = "cusum"
