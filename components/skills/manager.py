"""What the skill managers share: their role, the policy module the agent binds, their
lifecycle events and the check for a task-aware run (SLIM's; CSP has a searched mode)."""

from __future__ import annotations

from torch import nn

from l2rl.config import ConfigError, PluginConfig
from l2rl.core import Component, RunContext
from l2rl.types import EnvSpec, SkillEvent


class SkillManager(Component):
    """A component of role ``skill_manager`` whose skills are parameter sets of the policy
    module an agent binds (:class:`~l2rl.core.SkillService`'s ``bound`` and ``bind``).

    Attributes:
        policy: the bound module, ``None`` until an agent binds it.
        events: every lifecycle event recorded so far, in order.
    """

    role = "skill_manager"

    def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.policy: nn.Module | None = None
        self.events: list[SkillEvent] = []

    @property
    def bound(self) -> bool:
        """Whether the agent bound its policy module."""
        return self.policy is not None

    def bind(self, policy: nn.Module) -> None:
        """Skills are parameter sets of ``policy`` from now on (it holds the learner's)."""
        self.policy = policy

    def _policy(self) -> nn.Module:
        """The bound module.

        Raises:
            RuntimeError: no agent bound one.
        """
        if self.policy is None:
            raise RuntimeError(f"{self.name}: no agent bound its policy module (skills service)")
        return self.policy

    def _require_task_aware(self, ctx: RunContext) -> None:
        """Refuse a task-agnostic run: the skills are chosen per task.

        Raises:
            ConfigError: the scenario is task-agnostic.
        """
        if not ctx.env_spec.task_aware:
            raise ConfigError(f"{self.name} needs a task-aware scenario (it chooses per task)")

    def _emit(self, ctx: RunContext, event: SkillEvent) -> None:
        """Keep ``event`` and write it to the run's records."""
        self.events.append(event)
        ctx.record_skill_event(event)
