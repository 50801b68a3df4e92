"""Checks every base agent makes of its setting before building anything."""

from __future__ import annotations

from l2rl.config import ConfigError
from l2rl.core import AgentServices, BatchSource
from l2rl.types import EnvSpec


def required_replay(services: AgentServices, agent: str) -> BatchSource:
    """The replay the builder injected; an off-policy agent cannot learn without one.

    Raises:
        ConfigError: no component with role ``replay`` is configured.
    """
    if services.replay is None:
        raise ConfigError(f"{agent} needs a replay component (role replay)")
    return services.replay


def check_multi_head(multi_head: bool, env_spec: EnvSpec, agent: str) -> None:
    """One head per task needs task ids to pick the head.

    Raises:
        ConfigError: ``multi_head`` in a task-agnostic scenario.
    """
    if multi_head and not env_spec.task_aware:
        raise ConfigError(f"{agent} multi_head needs task ids: set scenario.task_aware=true")
