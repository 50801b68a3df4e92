"""Wire a scenario, an agent and its components from a validated :class:`RunConfig`.

The builder is the only place that resolves plugin names. Order of construction: scenario
(and its shared spaces), replay and the other components, then the services they offer
(:data:`l2rl.core.SERVICE_SLOTS`) handed to every component's ``wire`` (the second wiring
step: a world model gets the replay's sequences), then the agent with the same services
(constructor injection: the agent never imports a component).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from l2rl import registry
from l2rl.config import ConfigError, EvalConfig, PluginRef, RunConfig, validate_options
from l2rl.core import SERVICE_SLOTS, Agent, AgentServices, BatchSource, Component
from l2rl.hooks import overridden_hooks
from l2rl.runner import Runner
from l2rl.scenario import Scenario, TaskFamily
from l2rl.types import EnvSpec


@dataclass
class BuiltRun:
    """Everything the runner needs for one seed."""

    scenario: Scenario
    env_spec: EnvSpec
    agent: Agent
    components: list[Component]
    evaluation: EvalConfig
    seed: int

    def runner(self, **options: Any) -> Runner:
        """The :class:`~l2rl.runner.Runner` of this run; ``options`` are its keyword
        arguments (recorder, progress, checkpoint_path, ...)."""
        return Runner(
            self.scenario,
            self.agent,
            self.components,
            self.evaluation,
            self.seed,
            env_spec=self.env_spec,
            **options,
        )


def _load_plugin(group: registry.Group, name: str) -> Any:
    try:
        return registry.load(group, name)
    except registry.UnknownPluginError as err:
        raise ConfigError(str(err)) from None


def build_scenario(config: RunConfig) -> Scenario:
    """The scenario named in the config, with its schedule and setting."""
    family = _load_plugin("l2rl.scenarios", config.scenario.name)
    if not isinstance(family, TaskFamily):
        raise ConfigError(
            f"scenario {config.scenario.name!r} is registered as {type(family).__name__}, "
            "not an l2rl.scenario.TaskFamily"
        )
    tasks = family.tasks(
        config.scenario.options, where=f"scenario {config.scenario.name!r} options"
    )
    return Scenario.sequence(
        name=config.scenario.name,
        tasks=tasks,
        steps_per_task=config.scenario.steps_per_task,
        cycles=config.scenario.cycles,
        task_aware=config.scenario.task_aware,
    )


def build_component(ref: PluginRef, env_spec: EnvSpec) -> Component:
    """Instantiate one component from its reference, validating its options.

    Raises:
        ConfigError: unknown name, bad options, or a class that is not a Component.
        l2rl.hooks.HookRegistrationError: a misspelt hook or a wrong hook signature.
    """
    cls = _load_plugin("l2rl.components", ref.name)
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"component {ref.name!r} is not an l2rl.core.Component subclass")
    label = ref.label or ref.name
    options = validate_options(cls.Config, ref.options, f"component {label!r} options")
    component = cls(options, env_spec)
    component.name = label
    overridden_hooks(component)  # fail now, before training, on a misspelt hook
    return component


def build_agent(ref: PluginRef, env_spec: EnvSpec, services: AgentServices, seed: int) -> Agent:
    """Instantiate the agent with the services the components offer."""
    cls = _load_plugin("l2rl.agents", ref.name)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ConfigError(f"agent {ref.name!r} is not an l2rl.core.Agent subclass")
    options = validate_options(cls.Config, ref.options, f"agent {ref.name!r} options")
    try:
        agent: Agent = cls(options, env_spec, services, seed)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"agent {ref.name!r}: {err}") from err
    return agent


def services_from(components: Sequence[Component]) -> AgentServices:
    """Fill each service slot from the components (:data:`l2rl.core.SERVICE_SLOTS`).

    Raises:
        ConfigError: two components of one serving role, or a replay that is no batch
            source.
    """
    serving_roles = {role for role, _ in SERVICE_SLOTS.values()}
    by_role: dict[str, Component] = {}
    for component in components:
        if component.role in serving_roles:
            if component.role in by_role:
                names = f"{by_role[component.role].name}, {component.name}"
                raise ConfigError(
                    f"at most one component may have role {component.role!r}, got: {names}"
                )
            by_role[component.role] = component
    offered = {role: component.service() for role, component in by_role.items()}
    if "replay" in offered and not isinstance(offered["replay"], BatchSource):
        raise ConfigError(
            f"replay component {by_role['replay'].name!r} does not offer sample(batch_size) "
            "and __len__"
        )
    slots: dict[str, Any] = {}
    for slot, (role, protocol) in SERVICE_SLOTS.items():
        provider = offered.get(role)
        slots[slot] = provider if isinstance(provider, protocol) else None
    return AgentServices(**slots)


def build_run(config: RunConfig, seed: int, scenario: Scenario | None = None) -> BuiltRun:
    """Build scenario (unless given), components and agent for one seed.

    Args:
        config: the validated run config.
        seed: this run's seed.
        scenario: use this scenario instead of the configured one (reference runs).
    """
    scenario = scenario or build_scenario(config)
    env_spec = scenario.env_spec(num_envs=config.num_envs)
    refs = ([config.replay] if config.replay is not None else []) + list(config.components)
    labels = [r.label or r.name for r in refs]
    duplicates = sorted({n for n in labels if labels.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"component names must be unique; give a `label` to repeated ones: {duplicates}"
        )
    components = [build_component(ref, env_spec) for ref in refs]
    services = services_from(components)
    for component in components:  # second wiring step: components get services too
        component.wire(services)
    agent = build_agent(config.agent, env_spec, services, seed)
    if services.weights is not None and not services.weights.bound:
        raise ConfigError(
            f"agent {config.agent.name!r} runs no network on the weights the hypernetwork "
            "component generates (it never binds the weights service); use an agent that "
            "supports generated weights, e.g. mpc with model: hypernetwork"
        )
    if services.skills is not None and not services.skills.bound:
        raise ConfigError(
            f"agent {config.agent.name!r} does not act with the skills of the skill manager "
            "(it never binds the skills service); use an agent that supports skills, e.g. dqn"
        )
    return BuiltRun(
        scenario=scenario,
        env_spec=env_spec,
        agent=agent,
        components=components,
        evaluation=config.evaluation,
        seed=seed,
    )


def reference_config(config: RunConfig) -> RunConfig:
    """The config of the single-task reference runs: same agent, no further components but
    ``metrics.reference_components`` (an agent that needs a world model keeps it), and
    ``metrics.reference_replay`` if set (so several methods can share one reference)."""
    replay = config.metrics.reference_replay or config.replay
    components = list(config.metrics.reference_components)
    return config.model_copy(update={"components": components, "replay": replay})


def check_config(config: RunConfig) -> None:
    """Build everything once without training, so bad input fails before any run starts:
    the run, and (with ``metrics.reference_runs``) a single-task reference run, whose
    components are only ``metrics.reference_components``."""
    run = build_run(config, seed=config.seeds[0])
    if config.metrics.reference_runs:
        try:
            build_run(reference_config(config), config.seeds[0], run.scenario.single_task(0))
        except ConfigError as exc:
            kept = [ref.name for ref in config.metrics.reference_components]
            raise ConfigError(
                f"the single-task reference runs (metrics.reference_runs; their components "
                f"are metrics.reference_components = {kept}): {exc}"
            ) from exc
