"""Checks every base agent makes of its setting before building anything."""

from __future__ import annotations

from l2rl.config import ConfigError
from l2rl.core import AgentServices, BatchSource, BoundedSource
from l2rl.types import EnvSpec


def required_replay(
    services: AgentServices, agent: str, learning_starts: int | None = None
) -> BatchSource:
    """The replay the builder injected; an off-policy agent cannot learn without one.

    Args:
        services: what the builder injected.
        agent: the agent's name, for messages.
        learning_starts: transitions the replay must hold before the agent's first update,
            checked against a :class:`~l2rl.core.BoundedSource` replay's
            ``max_transitions``.

    Raises:
        ConfigError: no component with role ``replay`` is configured, or it can never
            hold ``learning_starts`` transitions (the agent would never update).
    """
    replay = services.replay
    if replay is None:
        raise ConfigError(f"{agent} needs a replay component (role replay)")
    if (
        learning_starts is not None
        and isinstance(replay, BoundedSource)
        and replay.max_transitions < learning_starts
    ):
        raise ConfigError(
            f"{agent} starts learning once the replay holds learning_starts={learning_starts} "
            f"transitions, but the replay holds at most {replay.max_transitions}: the agent "
            "would never update; raise the replay's capacity or lower learning_starts"
        )
    return replay


def check_multi_head(multi_head: bool, env_spec: EnvSpec, agent: str) -> None:
    """One head per task needs task ids to pick the head.

    Raises:
        ConfigError: ``multi_head`` in a task-agnostic scenario.
    """
    if multi_head and not env_spec.task_aware:
        raise ConfigError(f"{agent} multi_head needs task ids: set scenario.task_aware=true")
