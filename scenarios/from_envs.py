"""Tasks and scenarios from any gymnasium environments, by id or by factory.

The Python API for building a scenario without writing a task family::

    scenario = scenario_from_envs(
        ["MountainCar-v0", "Acrobot-v1"],
        steps_per_task=50_000,
        normalizer=[ReturnRange(-200, -100), ReturnRange(-500, 0)],
        pad_observations=True,  # 2 and 6 features: zero-pad both to 6
    )

and the ``gym-sequence`` task family, which does the same from a run config. Tasks of one
scenario must share their spaces (:meth:`l2rl.scenario.Scenario.env_spec` checks it); the one
adapter offered here is ``pad_observations`` for 1-D Box observations of different lengths.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import Field, field_validator, model_validator

from l2rl.config import ConfigError, PluginConfig
from l2rl.scenario import Scenario, TaskFamily
from l2rl.types import EnvFactory, ReturnRange, ScoreNormalizer, SuccessRate, TaskSpec

EnvSource = str | EnvFactory
"""A registered gymnasium env id (``"module:Id"`` imports ``module`` first) or a factory."""


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` (with gymnasium's "did you mean") if ``env_id`` is not registered.

    An id of the form ``"module:EnvId"`` imports ``module`` first, as ``gym.make`` does, so
    that packages which register their envs on import (e.g. ``ale_py``) can be named.
    """
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (gym.error.Error, ImportError) as err:
        raise ValueError(f"unknown gymnasium env {env_id!r}: {err}") from None


class PadObservation(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """Zero-pad a 1-D Box observation to the length of a declared, longer Box space.

    The values of the wrapped env's features are kept in the first positions and cast to the
    declared dtype; the extra positions are always 0. Build the declared space with
    :func:`padded_space` so that every task of a scenario declares the same one.

    Args:
        env: an env with a 1-D ``Box`` observation space.
        space: the declared 1-D ``Box``; at least as long as the env's observations.
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], space: gym.spaces.Box) -> None:
        super().__init__(env)
        inner = env.observation_space
        if not (isinstance(inner, gym.spaces.Box) and len(inner.shape) == 1):
            raise ConfigError(f"PadObservation needs a 1-D Box observation space, got {inner}")
        if len(space.shape) != 1 or space.shape[0] < inner.shape[0]:
            raise ConfigError(f"cannot pad observations of shape {inner.shape} to {space}")
        self._length = inner.shape[0]
        self.observation_space = space

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The observation followed by zeros, in the declared dtype."""
        space = self.observation_space
        assert isinstance(space, gym.spaces.Box)
        padded = np.zeros(space.shape, dtype=space.dtype)
        padded[: self._length] = observation
        return padded


def padded_space(spaces: Sequence[gym.spaces.Space[Any]]) -> gym.spaces.Box:
    """One 1-D Box that holds every given 1-D Box once zero-padded to the longest.

    Its bounds are the elementwise union (min of lows, max of highs, with 0 for padded
    positions) and its dtype the common numpy type, so each task's padded values lie inside
    it and every task can declare exactly this space.

    Raises:
        ConfigError: a space is not a 1-D Box.
    """
    boxes: list[gym.spaces.Box] = []
    for space in spaces:
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ConfigError(f"pad_observations handles 1-D Box observations only, got {space}")
        boxes.append(space)
    length = max(box.shape[0] for box in boxes)
    dtype = np.result_type(*(box.dtype for box in boxes))
    low = np.full(length, np.inf)
    high = np.full(length, -np.inf)
    for box in boxes:
        n = box.shape[0]
        low[:n] = np.minimum(low[:n], box.low)
        high[:n] = np.maximum(high[:n], box.high)
        # This task's padded positions always hold 0, so the union must contain 0 there.
        low[n:] = np.minimum(low[n:], 0.0)
        high[n:] = np.maximum(high[n:], 0.0)
    return gym.spaces.Box(low.astype(dtype), high.astype(dtype), dtype=dtype)


def _make_padded(factory: EnvFactory, space: gym.spaces.Box) -> gym.Env[Any, Any]:
    return PadObservation(factory(), space)


def _factory(source: EnvSource) -> EnvFactory:
    # partial of gym.make (not a lambda) keeps the task picklable for worker processes, and
    # builds a fresh env on every call: the runner makes separate train and eval envs.
    return partial(gym.make, source) if isinstance(source, str) else source


def _describe(source: EnvSource) -> str:
    if isinstance(source, str):
        return source
    return str(getattr(source, "__qualname__", repr(source)))


def _normalizers(
    count: int,
    normalizer: ScoreNormalizer | Sequence[ScoreNormalizer] | None,
    return_range: tuple[float, float] | None,
) -> list[ScoreNormalizer]:
    if (normalizer is None) == (return_range is None):
        raise ConfigError(
            "choose how tasks are scored: give exactly one of `normalizer` (e.g. SuccessRate(), "
            "or one per env) and `return_range` (low, high)"
        )
    if return_range is not None:
        low, high = return_range
        try:
            return [ReturnRange(low, high)] * count
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if isinstance(normalizer, Sequence):
        if len(normalizer) != count:
            raise ConfigError(f"got {len(normalizer)} normalizers for {count} envs")
        return list(normalizer)
    assert normalizer is not None
    return [normalizer] * count


def tasks_from_envs(
    envs: Sequence[EnvSource],
    names: Sequence[str] | None = None,
    normalizer: ScoreNormalizer | Sequence[ScoreNormalizer] | None = None,
    return_range: tuple[float, float] | None = None,
    pad_observations: bool = False,
) -> tuple[TaskSpec, ...]:
    """One task per environment, in order.

    Args:
        envs: registered env ids (``"CartPole-v1"``, ``"module:EnvId"``) or zero-argument
            factories. A factory must build a fresh env on every call.
        names: task names; defaults to the env id, or ``task-<i>`` for a factory.
        normalizer: how every task is scored (one normaliser), or one per env.
        return_range: shorthand for ``normalizer=ReturnRange(low, high)``; give exactly one
            of ``normalizer`` and ``return_range``.
        pad_observations: zero-pad 1-D Box observations to the longest and declare one union
            Box for all tasks (builds each env once to read its space). Without it spaces
            are left as they are, and a scenario whose spaces differ fails at
            :meth:`~l2rl.scenario.Scenario.env_spec`.

    Raises:
        ConfigError: no envs, unknown env id, names missing or not unique, no (or two)
            normaliser choices, or ``pad_observations`` with a non-1-D-Box observation.
    """
    if not envs:
        raise ConfigError("tasks_from_envs needs at least one env")
    for source in envs:
        if isinstance(source, str):
            try:
                check_env_id(source)
            except ValueError as err:
                raise ConfigError(str(err)) from None
    if names is None:
        names = [
            source.rpartition(":")[2] if isinstance(source, str) else f"task-{i}"
            for i, source in enumerate(envs)
        ]
    if len(names) != len(envs):
        raise ConfigError(f"got {len(names)} names for {len(envs)} envs")
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must be unique, got {list(names)}; pass `names`")
    scores = _normalizers(len(envs), normalizer, return_range)
    factories = [_factory(source) for source in envs]
    params: list[dict[str, Any]] = [{"env": _describe(source)} for source in envs]
    if pad_observations:
        spaces = []
        for factory in factories:
            env = factory()
            try:
                spaces.append(env.observation_space)
            finally:
                env.close()
        space = padded_space(spaces)
        factories = [partial(_make_padded, factory, space) for factory in factories]
        for p in params:
            p["padded_to"] = space.shape[0]
    return tuple(
        TaskSpec(name=name, make_env=factory, normalizer=score, params=p)
        for name, factory, score, p in zip(names, factories, scores, params, strict=True)
    )


def scenario_from_envs(
    envs: Sequence[EnvSource],
    steps_per_task: int,
    cycles: int = 1,
    task_aware: bool = True,
    *,
    scenario_name: str = "gym-sequence",
    names: Sequence[str] | None = None,
    normalizer: ScoreNormalizer | Sequence[ScoreNormalizer] | None = None,
    return_range: tuple[float, float] | None = None,
    pad_observations: bool = False,
) -> Scenario:
    """A scenario training on ``envs`` in order, ``steps_per_task`` steps each.

    The task arguments are those of :func:`tasks_from_envs`; ``cycles`` repeats the
    sequence; ``task_aware`` says whether task ids and boundaries are given to the learner.
    """
    tasks = tasks_from_envs(
        envs,
        names=names,
        normalizer=normalizer,
        return_range=return_range,
        pad_observations=pad_observations,
    )
    return Scenario.sequence(
        scenario_name, tasks, steps_per_task, cycles=cycles, task_aware=task_aware
    )


class GymSequenceConfig(PluginConfig):
    """Options of ``gym-sequence``: registered env ids and how their returns are scored."""

    env_ids: list[str] = Field(
        min_length=1,
        description=(
            'Registered gymnasium env ids, in training order (e.g. "MountainCar-v0"; '
            '"module:EnvId" imports module first). Task names are the ids.'
        ),
    )
    return_low: float | list[float] | None = Field(
        default=None,
        description=(
            "Return scored 0: one value for all tasks or one per env. Give it with "
            "`return_high`, or set `success` instead."
        ),
    )
    return_high: float | list[float] | None = Field(
        default=None,
        description="Return scored 1: one value for all tasks or one per env.",
    )
    success: bool = Field(
        default=False,
        description=(
            "Score by success rate (info['success'] / info['is_success'], else a positive "
            "return) instead of a return range."
        ),
    )
    pad_observations: bool = Field(
        default=False,
        description=(
            "Zero-pad 1-D Box observations of different lengths to the longest, with one "
            "union Box declared for all tasks."
        ),
    )

    @field_validator("env_ids")
    @classmethod
    def _known_envs(cls, env_ids: list[str]) -> list[str]:
        for env_id in env_ids:
            check_env_id(env_id)
        return env_ids

    @model_validator(mode="after")
    def _one_score_rule(self) -> GymSequenceConfig:
        has_range = self.return_low is not None or self.return_high is not None
        if self.success == has_range:
            raise ValueError(
                "choose how tasks are scored: either `success: true`, or both `return_low` "
                "and `return_high`"
            )
        self.normalizers()  # checks lengths and low < high now, not at build time
        return self

    def normalizers(self) -> list[ScoreNormalizer]:
        """One score rule per env, from ``success`` or ``return_low``/``return_high``."""
        count = len(self.env_ids)
        if self.success:
            return [SuccessRate()] * count
        if self.return_low is None or self.return_high is None:
            raise ValueError("`return_low` and `return_high` must be given together")
        lows = _per_env(self.return_low, count, "return_low")
        highs = _per_env(self.return_high, count, "return_high")
        return [ReturnRange(low, high) for low, high in zip(lows, highs, strict=True)]


def _per_env(value: float | list[float], count: int, field: str) -> list[float]:
    if isinstance(value, list):
        if len(value) != count:
            raise ValueError(f"`{field}` has {len(value)} values for {count} env_ids")
        return value
    return [value] * count


def _build(config: GymSequenceConfig) -> tuple[TaskSpec, ...]:
    return tasks_from_envs(
        config.env_ids,
        normalizer=config.normalizers(),
        pad_observations=config.pad_observations,
    )


gym_sequence: TaskFamily[GymSequenceConfig] = TaskFamily(
    GymSequenceConfig,
    _build,
    "Any registered gymnasium envs in order, scored by return range or success rate.",
)
"""The ``gym-sequence`` task family."""
