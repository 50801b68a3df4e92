"""The conformance checker every component, built-in or third-party, must pass.

:func:`check_component` checks what the framework relies on and what a plugin author most
often gets wrong: the class's declarations (role, options model), its hook names and
signatures, a save/restore round trip of its state, a real run with the runner in both the
task-aware and the task-agnostic setting, that every parameter which received a gradient
belongs to some learner's optimizer (else its gradient is silently never applied), a round
trip of each of its learners' optimizer state, for the replay role the batch-source
protocol, and for a weight service (a hypernetwork) that its generated weights carry
gradient to its learners' parameters and that a restored instance generates the same
weights for every task (the default :class:`~l2rl.testing.fakes.FakeAgent` runs its layer on
the generated weights when it gets a weight service). :func:`check_agent` does the same for
an agent. Both collect every failure and
raise one :class:`ConformanceError` listing them all, so a test run shows everything to fix
at once.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from l2rl.builder import services_from
from l2rl.config import ConfigError, EvalConfig, PluginConfig, validate_options
from l2rl.core import (
    Agent,
    AgentServices,
    BatchSource,
    Component,
    Learner,
    RunContext,
    SkillService,
    WeightService,
)
from l2rl.hooks import Hook, HookRegistrationError, overridden_hooks
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.testing.fakes import FakeAgent, fake_scenario
from l2rl.types import EnvSpec, Losses, TransitionBatch

AgentFactory = Callable[[EnvSpec, AgentServices, int], Agent]
"""Builds the agent a component is run with: ``(env_spec, services, seed) -> Agent``."""

_MODES = ((True, "task-aware"), (False, "task-agnostic"))
_MAX_DIFFERENCES = 5
# Methods the runner calls besides hooks; a wrong parameter count fails only mid-run.
_OTHER_METHODS = ("losses", "state_dict", "load_state_dict")


@dataclass(frozen=True)
class ConformanceReport:
    """The checks a component passed.

    Attributes:
        component: the name the component ran under.
        passed: names of the checks passed, in the order run.
        hooks: the hooks the component implements.
    """

    component: str
    passed: tuple[str, ...]
    hooks: tuple[str, ...]


class ConformanceError(AssertionError):
    """A component failed conformance checks; the message lists every failed check.

    Attributes:
        component: the name the component ran under.
        failures: ``(check, what went wrong)`` pairs.
        passed: the checks that passed.
    """

    def __init__(self, component: str, failures: list[tuple[str, str]], passed: list[str]) -> None:
        lines = [f"component {component!r} failed {len(failures)} conformance check(s):"]
        lines += [f"  - {check}: {detail}" for check, detail in failures]
        super().__init__("\n".join(lines))
        self.component = component
        self.failures = list(failures)
        self.passed = list(passed)


ComponentFactory = Callable[[EnvSpec], Component]
"""Builds a companion component for a conformance run: ``env_spec -> Component``."""


def _built(factories: Sequence[ComponentFactory], env_spec: EnvSpec) -> list[Component]:
    """The companions, named after their class unless the factory named them."""
    components = [factory(env_spec) for factory in factories]
    for component in components:
        component.name = component.name or type(component).__name__
    return components


def _fake_agent(env_spec: EnvSpec, services: AgentServices, seed: int) -> Agent:
    return FakeAgent(FakeAgent.Config(), env_spec, services, seed)


class _Checks:
    """Collects passed and failed checks."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failures: list[tuple[str, str]] = []

    def record(self, check: str, problem: str | None) -> bool:
        if problem is None:
            self.passed.append(check)
            return True
        self.failures.append((check, problem))
        return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def check_component(
    component_cls: type[Component],
    options: Mapping[str, Any] | None = None,
    *,
    num_tasks: int = 2,
    steps_per_task: int = 32,
    agent_factory: AgentFactory | None = None,
    name: str | None = None,
    seed: int = 0,
    settings: tuple[str, ...] = ("task-aware", "task-agnostic"),
    companions: Sequence[ComponentFactory] = (),
) -> ConformanceReport:
    """Check that ``component_cls`` works with the framework; raise listing all failures.

    The runs use :func:`~l2rl.testing.fakes.fake_scenario` (a 4-float ``Box`` observation,
    2 discrete actions) with ``num_tasks`` tasks of ``steps_per_task`` steps, evaluated
    mid-window and at each window's end, one episode per task.

    Args:
        component_cls: the component class, as its entry point would load it.
        options: the component's options (validated by its ``Config``).
        num_tasks: tasks in the fake scenario.
        steps_per_task: env steps in each training window.
        agent_factory: builds the agent, ``(env_spec, services, seed) -> Agent``; default
            :class:`~l2rl.testing.fakes.FakeAgent`, which samples from a replay component
            when given one. Pass one when the component needs a particular agent.
        name: the name the component runs under (default: the class name).
        seed: the runs' seed.
        settings: the scenario settings to run in; a component that needs task ids (e.g.
            PackNet) passes ``("task-aware",)``.
        companions: build the other components the checked one needs services from,
            ``env_spec -> Component`` (e.g. a replay serving sequences to a world model);
            they run beside it and are wired as the builder would wire them.

    Returns:
        The checks passed.

    Raises:
        ConformanceError: at least one check failed; every failure is listed.
    """
    label = name or str(getattr(component_cls, "__name__", repr(component_cls)))
    unknown = sorted(set(settings) - {mode for _, mode in _MODES})
    if unknown or not settings:
        raise ValueError(f"settings must be a non-empty subset of {[m for _, m in _MODES]}")
    checks = _Checks()
    config = _check_declarations(component_cls, options or {}, label, checks)
    if config is None:
        raise ConformanceError(label, checks.failures, checks.passed)
    hooks = _check_hooks(component_cls, config, label, checks)
    if hooks is not None:
        for task_aware, mode in (m for m in _MODES if m[1] in settings):
            _check_run(
                component_cls,
                config,
                label,
                checks,
                task_aware=task_aware,
                mode=mode,
                num_tasks=num_tasks,
                steps_per_task=steps_per_task,
                agent_factory=agent_factory or _fake_agent,
                seed=seed,
                companions=companions,
            )
    if checks.failures:
        raise ConformanceError(label, checks.failures, checks.passed)
    return ConformanceReport(label, tuple(checks.passed), tuple(hooks or ()))


def _check_declarations(
    cls: type[Component], options: Mapping[str, Any], label: str, checks: _Checks
) -> PluginConfig | None:
    """Subclass, role and Config declarations, then the options; the config if usable."""
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        checks.record("subclass", f"{cls!r} is not a subclass of l2rl.core.Component")
        return None
    checks.record("subclass", None)
    role = getattr(cls, "role", None)
    checks.record(
        "role",
        None
        if isinstance(role, str) and role and not any(c.isspace() for c in role)
        else f"role must be a non-empty string without spaces, got {role!r}",
    )
    model = getattr(cls, "Config", None)
    if not (isinstance(model, type) and issubclass(model, PluginConfig)):
        checks.record("config", f"Config must be a PluginConfig subclass, got {model!r}")
        return None
    checks.record("config", None)
    try:
        config = validate_options(model, options, f"component {label!r} options")
    except ConfigError as err:
        checks.record("options", str(err))
        return None
    checks.record("options", None)
    return config


def _check_hooks(
    cls: type[Component], config: PluginConfig, label: str, checks: _Checks
) -> list[str] | None:
    """Hook names and signatures, and the other methods the runner calls."""
    scenario = fake_scenario(num_tasks=1, steps_per_task=1)
    try:
        component = cls(config, scenario.env_spec())
    except Exception as exc:
        checks.record("construct", f"{label}(config, env_spec) raised {_describe(exc)}")
        return None
    checks.record("construct", None)
    problems = []
    try:
        implemented = set(overridden_hooks(component))
        hooks = [hook.value for hook in Hook if hook in implemented]  # dispatch-doc order
    except HookRegistrationError as err:
        problems.append(str(err))
        hooks = []
    for method in _OTHER_METHODS:
        expected = _parameter_count(getattr(Component, method))
        got = _parameter_count(getattr(cls, method))
        if got != expected:
            problems.append(f"{cls.__name__}.{method} takes {got} parameters, expected {expected}")
    if not checks.record("hooks", "; ".join(problems) or None):
        return None
    return hooks


def _parameter_count(function: Any) -> int:
    return len(inspect.signature(function).parameters)


def _check_run(
    cls: type[Component],
    config: PluginConfig,
    label: str,
    checks: _Checks,
    *,
    task_aware: bool,
    mode: str,
    num_tasks: int,
    steps_per_task: int,
    agent_factory: AgentFactory,
    seed: int,
    companions: Sequence[ComponentFactory],
) -> None:
    """A full run in one setting, then state round trip and (replay) sampling."""
    scenario = fake_scenario(num_tasks, steps_per_task, task_aware=task_aware)
    env_spec = scenario.env_spec()
    try:
        component = cls(config, env_spec)
    except Exception as exc:
        checks.record(f"run[{mode}]", f"{label}(config, env_spec) raised {_describe(exc)}")
        return
    component.name = label
    if component.role == "replay" and not checks.record(
        f"replay protocol[{mode}]",
        None
        if isinstance(component, BatchSource)
        else "a replay component must define __len__() and sample(batch_size)",
    ):
        return
    probe = _BatchProbe(env_spec)
    try:
        others = _built(companions, env_spec)
        services = services_from([*others, component])
        for wired in (*others, component):
            wired.wire(services)
        bound = _capture_binding(component)
        agent = agent_factory(env_spec, services, seed)
        if isinstance(component, SkillService) and not checks.record(
            f"skills bound[{mode}]",
            None
            if bound
            else "the agent never bound the skills service (bind(policy)): pass an "
            "agent_factory whose agent acts with skills, e.g. a DQN",
        ):
            return
        evaluation = EvalConfig(every=max(1, steps_per_task // 2), episodes=1)
        runner = Runner(scenario, agent, [*others, component, probe], evaluation, seed)
        changed_by_evaluation = _watch_evaluations(runner)
        result = runner.run()
    except Exception as exc:
        checks.record(f"run[{mode}]", _describe(exc))
        return
    if not checks.record(
        f"run[{mode}]",
        None
        if result.updates > 0
        else "the agent made no update, so update hooks and losses were never exercised; "
        "raise steps_per_task or pass an agent_factory whose agent learns sooner",
    ):
        return
    checks.record(
        f"gradients applied[{mode}]",
        _orphans_problem([component, agent], runner.learners),
    )
    checks.record(
        f"weights after evaluation[{mode}]",
        None
        if not changed_by_evaluation
        else "an evaluation left the learners' weights changed (a component that swaps "
        "weights in for evaluation must put the trained ones back): "
        + "; ".join(changed_by_evaluation[:5]),
    )
    if isinstance(component, SkillService):
        checks.record(f"skill parameters[{mode}]", _skills_problem(component, bound[0], env_spec))
    _check_state_round_trip(
        cls,
        config,
        env_spec,
        component,
        checks,
        mode,
        runner.ctx,
        probe.batch,
        services,
        bound[0] if bound else None,
    )
    if component.role == "replay":
        checks.record(f"replay sample[{mode}]", _replay_problem(component, env_spec))
    if isinstance(component, WeightService):
        checks.record(f"generated weights[{mode}]", _generated_weights_problem(component))


def _capture_binding(component: Component) -> list[nn.Module]:
    """The module a skill manager's ``bind`` receives, once the agent binds it (the
    instance's ``bind`` is wrapped; nothing changes for other components)."""
    bound: list[nn.Module] = []
    if isinstance(component, SkillService):
        original = component.bind

        def bind(policy: nn.Module) -> None:
            bound.append(policy)
            original(policy)

        component.bind = bind  # type: ignore[method-assign]
    return bound


def _skills_problem(component: SkillService, policy: nn.Module, env_spec: EnvSpec) -> str | None:
    """Whether the skills selected (in training and evaluation, for every task) and the
    training parameter sets have the bound module's names and shapes, and the training
    sets carry gradient to the module's parameters."""
    live = dict(policy.named_parameters())
    shapes = {n: tuple(p.shape) for n, p in live.items()}
    obs = np.asarray(env_spec.observation_space.sample())
    for task in range(env_spec.num_tasks):
        for evaluation in (False, True):
            try:
                skill = component.select(obs, task, evaluation)
                params = component.parameters(int(skill), live)
            except Exception as exc:
                return f"select/parameters for task {task} raised {_describe(exc)}"
            if not isinstance(skill, int | np.integer):
                return f"select returned {type(skill).__name__}, not an int"
            got = {n: tuple(t.shape) for n, t in params.items()}
            if got != shapes:
                return f"parameters({skill}) has {got}, the bound module {shapes}"
    try:
        sets = component.train_parameters([live, live])
    except Exception as exc:
        return f"train_parameters raised {_describe(exc)}"
    if len(sets) != 2 or any({n: tuple(t.shape) for n, t in p.items()} != shapes for p in sets):
        return "train_parameters must return one set per given set, each like the module's"
    total = torch.stack([t.float().pow(2).sum() for t in sets[0].values()]).sum()
    grads = torch.autograd.grad(total, list(live.values()), allow_unused=True)
    if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
        return "train_parameters carries no gradient to the bound module's parameters"
    return None


def _generated_weights_problem(component: Component) -> str | None:
    """Whether ``weights(None)`` is differentiable in the component's learners' parameters
    (so that an agent's loss trains them)."""
    assert isinstance(component, WeightService)
    try:
        generated = dict(component.weights(None))
    except Exception as exc:
        return f"weights(None) raised {_describe(exc)}"
    if not generated:
        return "weights(None) gave no tensors"
    params = [
        p
        for learner in component.learners()
        for group in learner.optimizer.param_groups
        for p in group["params"]
    ]
    if not all(w.requires_grad for w in generated.values()) or not params:
        return (
            "the generated weights carry no gradient to the component's learners (they "
            "must be computed from parameters that the learners' optimizers step)"
        )
    total = torch.stack([w.float().pow(2).sum() for w in generated.values()]).sum()
    grads = torch.autograd.grad(total, params, allow_unused=True)
    if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
        return "no parameter of the component's learners gets a gradient from weights(None)"
    return None


def _watch_evaluations(runner: Runner) -> list[str]:
    """Make ``runner`` compare every learner's weights before and after each evaluation;
    the list it fills with the differences of the first evaluation that changed them."""
    found: list[str] = []
    evaluate = runner._evaluate

    def weights() -> dict[str, Any]:
        return {
            learner.learner_name: {
                key: value.detach().clone()
                for key, value in learner.networks().state_dict().items()
            }
            for learner in runner.learners
        }

    def watched(block: int, trained_task: int, block_end: bool, after_sleep: bool = False) -> None:
        before = weights()
        evaluate(block, trained_task, block_end, after_sleep)
        # Learners a skill manager added or removed meanwhile (its on_eval may expand the
        # bank, reported as a parameters change) are not weights the evaluation changed.
        after = weights()
        kept = sorted(set(before) & set(after))
        if not found:
            found.extend(
                state_differences(
                    {k: before[k] for k in kept}, {k: after[k] for k in kept}, "weights"
                )
            )

    runner._evaluate = watched  # type: ignore[method-assign]
    return found


class _BatchProbe(Component):
    """Keeps the run's last minibatch, to show it to a restored component afterwards."""

    # Sorts after every other role, so it sees the batch last and changes nothing.
    role = "~conformance-probe"

    def __init__(self, env_spec: EnvSpec) -> None:
        super().__init__(PluginConfig(), env_spec)
        self.name = "conformance-probe"
        self.batch: Any = None

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        """Keep ``batch``; add nothing."""
        self.batch = batch
        return {}


def _check_state_round_trip(
    cls: type[Component],
    config: PluginConfig,
    env_spec: EnvSpec,
    component: Component,
    checks: _Checks,
    mode: str,
    ctx: RunContext,
    batch: Any,
    services: AgentServices,
    policy: nn.Module | None = None,
) -> None:
    """Save, load safely into a fresh instance, compare states, then behaviour.

    The fresh instance is wired and sees ``on_run_start`` before it loads the state, as
    on a resume (a component may build its modules at run start). Equal state dicts do not
    prove much when state lives outside ``state_dict`` (a forgotten key): the restored
    instance must also give the same loss terms on the run's last minibatch and, for a
    replay, the same sample.
    """
    check = f"state_dict[{mode}]"
    try:
        state = component.state_dict()
    except Exception as exc:
        checks.record(check, f"state_dict() raised {_describe(exc)}")
        return
    if not isinstance(state, Mapping):
        checks.record(check, f"state_dict() must return a dict, got {type(state).__name__}")
        return
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except Exception as exc:
        checks.record(check, f"torch.save(state_dict()) failed: {_describe(exc)}")
        return
    buffer.seek(0)
    try:
        # Checkpoints are read back with weights_only=True (no arbitrary unpickling), so
        # state must be tensors and plain Python values.
        loaded = torch.load(buffer, weights_only=True)
    except Exception as exc:
        checks.record(
            check,
            "torch.load(weights_only=True) refused the state (keep to tensors and plain "
            f"Python values, no numpy arrays or custom objects): {_describe(exc)}",
        )
        return
    try:
        fresh = cls(config, env_spec)
        fresh.wire(services)
        if isinstance(fresh, SkillService) and policy is not None:
            fresh.bind(policy)  # the agent's constructor does, before a resume loads
        fresh.on_run_start(ctx)  # as the runner does before it restores a checkpoint
        fresh.load_state_dict(loaded)
        restored = fresh.state_dict()
    except Exception as exc:
        checks.record(check, f"load_state_dict into a fresh instance raised {_describe(exc)}")
        return
    differences = state_differences(state, restored)
    for mine, theirs in zip(component.learners(), fresh.learners(), strict=False):
        differences += state_differences(
            mine.optimizer.state_dict(),
            theirs.optimizer.state_dict(),
            f"learner {mine.learner_name!r} optimizer",
        )
    if differences:
        checks.record(
            check,
            "a fresh instance loaded with state_dict() gives a different state_dict() "
            "(a learner's optimizer state belongs in its component's state_dict): "
            + "; ".join(differences),
        )
        return
    try:
        differences = _behaviour_differences(component, fresh, ctx, batch)
    except Exception as exc:
        checks.record(check, f"the restored instance raised {_describe(exc)}")
        return
    checks.record(
        check,
        None
        if not differences
        else "a fresh instance loaded with state_dict() behaves differently (is some state "
        "missing from state_dict?): " + "; ".join(differences),
    )


def _behaviour_differences(
    original: Component, restored: Component, ctx: RunContext, batch: Any
) -> list[str]:
    """Differences in loss terms on ``batch`` and, for a replay, in ``sample(4)``."""
    found: list[str] = []
    if batch is not None and type(original).losses is not Component.losses:
        mine = _seeded(original.losses, ctx, batch)
        theirs = _seeded(restored.losses, ctx, batch)
        found += state_differences(mine, theirs, "losses(ctx, last batch)")
    if isinstance(original, WeightService):
        assert isinstance(restored, WeightService)
        for task in (None, *range(len(ctx.tasks))):
            with torch.no_grad():
                mine, theirs = original.weights(task), restored.weights(task)
            found += state_differences(dict(mine), dict(theirs), f"weights({task})")
    if isinstance(original, SkillService):
        assert isinstance(restored, SkillService)
        for skill in range(-1, 16):
            try:
                mine = dict(original.parameters(skill, {}))
            except KeyError:
                continue
            theirs = dict(restored.parameters(skill, {}))
            found += state_differences(mine, theirs, f"parameters({skill})")
    if original.role == "replay" and isinstance(original, BatchSource) and len(original) > 0:
        assert isinstance(restored, BatchSource)
        try:
            mine = original.sample(4)
        except Exception:
            return found  # the replay sample check reports it
        theirs = restored.sample(4)
        found += state_differences(_fields(mine), _fields(theirs), "sample(4)")
    return found


def _seeded(method: Callable[..., Any], *args: Any) -> Any:
    """Call ``method`` with torch's and numpy's global generators at a fixed state.

    So that a loss drawing from the global generators gives the same value twice; the
    callers' generator states are restored afterwards.
    """
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            np.random.seed(0)
            return method(*args)
    finally:
        np.random.set_state(numpy_state)


def _fields(batch: Any) -> Any:
    """A dataclass's fields as a dict, for comparison; anything else as it is."""
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return batch


def _replay_problem(component: Component, env_spec: EnvSpec) -> str | None:
    """Why sampling from a replay that saw a run is wrong, or ``None``."""
    assert isinstance(component, BatchSource)
    if len(component) <= 0:
        return f"len() is {len(component)} after a run that stored transitions"
    try:
        batch = component.sample(4)
    except Exception as exc:
        return f"sample(4) raised {_describe(exc)}"
    if not isinstance(batch, TransitionBatch):
        return f"sample(4) must return a TransitionBatch, got {type(batch).__name__}"
    rows = len(batch)
    obs_shape = (rows, *(env_spec.observation_space.shape or ()))
    if rows < 4 or rows % 4 != 0 or tuple(batch.obs.shape) != obs_shape:
        return (
            f"sample(4) returned obs of shape {tuple(batch.obs.shape)}, expected 4 rows (or a "
            f"whole multiple of 4) of {obs_shape[1:]}"
        )
    return None


def state_differences(a: Any, b: Any, path: str = "state") -> list[str]:
    """Where two state dicts differ (at most a few places), recursing into containers.

    Tensors and arrays compare by dtype, shape and values (NaN equals NaN); mappings by
    keys and values; lists and tuples element-wise; anything else with ``==``.
    """
    found: list[str] = []
    _diff(a, b, path, found)
    return found[:_MAX_DIFFERENCES]


def _diff(a: Any, b: Any, path: str, found: list[str]) -> None:
    if len(found) >= _MAX_DIFFERENCES:
        return
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            found.append(f"{path}: {type(a).__name__} vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape:
            found.append(f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        elif not _arrays_equal(a.detach().cpu().numpy(), b.detach().cpu().numpy()):
            found.append(f"{path}: tensor values differ")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            found.append(f"{path}: {type(a).__name__} vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape:
            found.append(f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        elif not _arrays_equal(a, b):
            found.append(f"{path}: array values differ")
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            found.append(f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}")
            return
        for key in a:
            _diff(a[key], b[key], f"{path}[{key!r}]", found)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if type(a) is not type(b) or len(a) != len(b):
            found.append(
                f"{path}: {type(a).__name__} of {len(a)} vs {type(b).__name__} of {len(b)}"
            )
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", found)
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif type(a) is not type(b) or a != b:
        found.append(f"{path}: {a!r} vs {b!r}")


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    # equal_nan only applies to inexact kinds; numpy raises for it on e.g. strings.
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))


# --- gradients nobody applies ---------------------------------------------------------------
def _parameters_of(owner: object, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """``(name, parameter)`` of every ``nn.Module``/``nn.Parameter`` attribute of ``owner``
    and of its learners (one level of plain containers too)."""
    values: list[tuple[str, Any]] = list(vars(owner).items())
    if isinstance(owner, Component):
        values += [(f"learners()[{i}]", lrn) for i, lrn in enumerate(owner.learners())]
    for attr, value in values:
        items = list(value.items()) if isinstance(value, dict) else [("", value)]
        if isinstance(value, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(value)]
        for key, item in items:
            name = f"{prefix}{attr}{f'[{key}]' if key else ''}"
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, torch.nn.Parameter):
                yield name, item
            elif isinstance(item, torch.nn.Module):
                for param_name, param in item.named_parameters():
                    yield f"{name}.{param_name}", param
            elif isinstance(item, Learner):
                yield from _parameters_of(item, f"{name}.", seen)


def orphan_gradients(owners: Sequence[object], learners: Sequence[Learner]) -> list[str]:
    """Parameters of ``owners`` holding a gradient that no learner's optimizer applies.

    Such a gradient is computed and then silently dropped: the parameter never learns.
    Call it after a run (gradients of the last update are still in ``.grad``).
    """
    applied = {
        id(p) for learner in learners for g in learner.optimizer.param_groups for p in g["params"]
    }
    found: list[str] = []
    visited: set[int] = set()  # objects walked, so shared modules are listed once
    for owner in owners:
        label = getattr(owner, "name", "") or type(owner).__name__
        for name, param in _parameters_of(owner, f"{label}.", visited):
            if param.grad is not None and id(param) not in applied:
                found.append(name)
    return sorted(set(found))


def _orphans_problem(owners: Sequence[object], learners: Sequence[Learner]) -> str | None:
    orphans = orphan_gradients(owners, learners)
    if not orphans:
        return None
    return (
        "these parameters received a gradient but belong to no learner's optimizer, so it is "
        "never applied (offer a Learner through learners(), or detach them): "
        + ", ".join(orphans[:_MAX_DIFFERENCES])
    )


# --- agents ------------------------------------------------------------------------------------
def check_agent(
    agent_cls: type[Agent],
    options: Mapping[str, Any] | None = None,
    *,
    scenario: Scenario | None = None,
    companions: Sequence[ComponentFactory] = (),
    seed: int = 0,
    name: str | None = None,
) -> ConformanceReport:
    """Check that ``agent_cls`` works with the runner; raise listing all failures.

    Builds the agent with validated ``options`` on ``scenario`` (default: a two-task
    :func:`~l2rl.testing.fakes.fake_scenario` of 64 steps per task: 4 floats in, 2
    discrete actions), runs it, and checks that it made at least one update, that every
    parameter that received a gradient belongs to its optimizer, that a fresh instance
    loaded with its ``state_dict()`` (read back with ``weights_only=True``) has the same
    state, optimizer included, and acts the same, and that ``untrained_task_heads`` is a
    bool. ``companions`` build the components the agent needs services from,
    ``env_spec -> Component`` (the replay an off-policy agent samples from, the world model
    a Dreamer agent imagines in); they run beside it, wired as the builder would.

    >>> from l2rl.testing import FakeAgent
    >>> check_agent(FakeAgent).passed[:2]
    ('options', 'run')

    Raises:
        ConformanceError: at least one check failed; every failure is listed.
    """
    label = name or agent_cls.__name__
    checks = _Checks()
    try:
        config = validate_options(agent_cls.Config, options or {}, f"agent {label!r} options")
    except ConfigError as exc:
        checks.record("options", str(exc))
        raise ConformanceError(label, checks.failures, checks.passed) from None
    checks.record("options", None)
    scenario = scenario or fake_scenario(num_tasks=2, steps_per_task=64)
    env_spec = scenario.env_spec()
    try:
        components = _built(companions, env_spec)
        services = services_from(components)
        for component in components:
            component.wire(services)
        agent = agent_cls(config, env_spec, services, seed)
        runner = Runner(scenario, agent, components, EvalConfig(every=32, episodes=1), seed)
        result = runner.run()
    except Exception as exc:
        checks.record("run", _describe(exc))
        raise ConformanceError(label, checks.failures, checks.passed) from None
    checks.record(
        "run",
        None if result.updates > 0 else "the agent made no update; lower its warm-up options",
    )
    checks.record("gradients applied", _orphans_problem([agent, *components], runner.learners))
    checks.record(
        "state_dict", _agent_round_trip_problem(agent_cls, config, env_spec, services, agent, seed)
    )
    heads = agent.untrained_task_heads
    checks.record(
        "untrained_task_heads",
        None if isinstance(heads, bool) else f"must be a bool, got {type(heads).__name__}",
    )
    if checks.failures:
        raise ConformanceError(label, checks.failures, checks.passed)
    return ConformanceReport(label, tuple(checks.passed), ())


def _agent_round_trip_problem(
    cls: type[Agent],
    config: PluginConfig,
    env_spec: EnvSpec,
    services: AgentServices,
    agent: Agent,
    seed: int,
) -> str | None:
    buffer = io.BytesIO()
    try:
        torch.save(agent.state_dict(), buffer)
        buffer.seek(0)
        fresh = cls(config, env_spec, services, seed + 1)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
    except Exception as exc:
        return f"save, weights_only load and load_state_dict raised {_describe(exc)}"
    differences = state_differences(agent.state_dict(), fresh.state_dict())
    if differences:
        return "a fresh instance loaded with state_dict() differs: " + "; ".join(differences)
    obs = np.asarray(env_spec.observation_space.sample())
    task_id = 0 if env_spec.task_aware else None
    for each in (agent, fresh):  # as the runner does before an evaluation episode
        each.on_episode_start([0], evaluation=True)
    mine, theirs = _seeded(agent.act, obs, task_id, False), _seeded(fresh.act, obs, task_id, False)
    if state_differences({"action": mine}, {"action": theirs}):
        return f"the restored agent acts differently: {mine!r} vs {theirs!r}"
    return None
