"""Hook registration and dispatch: names, signatures, role order, error wrapping."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

from l2rl.config import PluginConfig
from l2rl.core import Component, RunContext
from l2rl.hooks import (
    ROLE_ORDER,
    ComponentError,
    Hook,
    HookDispatcher,
    HookRegistrationError,
    overridden_hooks,
    role_rank,
)
from l2rl.testing import NoOpComponent, RecordingComponent, fake_scenario
from l2rl.testing.fakes import HookCall
from l2rl.types import EnvSpec, Losses, Step, TaskInfo

ENV_SPEC: EnvSpec = fake_scenario().env_spec()


def recorder(name: str, role: str, log: list[HookCall]) -> RecordingComponent:
    cls = type(f"Recording_{role}", (RecordingComponent,), {"role": role})
    component: RecordingComponent = cls(PluginConfig(), ENV_SPEC, log=log)
    component.name = name
    return component


def test_every_hook_is_a_component_method_and_every_hook_like_method_a_hook() -> None:
    methods = {
        name
        for name, _ in inspect.getmembers(Component, inspect.isfunction)
        if name.startswith(("on_", "before_", "after_"))
    }
    assert methods == {hook.value for hook in Hook}


def test_only_overridden_hooks_are_registered() -> None:
    assert set(overridden_hooks(NoOpComponent(PluginConfig(), ENV_SPEC))) == {
        Hook.STEP,
        Hook.AFTER_UPDATE,
    }
    assert overridden_hooks(Component(PluginConfig(), ENV_SPEC)) == []
    assert set(overridden_hooks(RecordingComponent(PluginConfig(), ENV_SPEC))) == set(Hook)


def test_a_misspelt_hook_is_rejected_with_the_known_names() -> None:
    class Typo(Component):
        def after_updte(self, ctx: RunContext, stats: Any) -> None:
            pass

    with pytest.raises(HookRegistrationError, match=r"Typo\.after_updte looks like a hook") as err:
        overridden_hooks(Typo(PluginConfig(), ENV_SPEC))
    assert "after_update" in str(err.value)  # the message lists the real hooks


def test_a_hook_with_the_wrong_parameter_count_is_rejected() -> None:
    class Extra(Component):
        def on_task_end(  # type: ignore[override]
            self, ctx: RunContext, task: TaskInfo, extra: int
        ) -> None:
            pass

    expected = "on_task_end takes 4 parameters, the hook passes 3"
    with pytest.raises(HookRegistrationError, match=expected):
        overridden_hooks(Extra(PluginConfig(), ENV_SPEC))


def test_non_hook_helpers_with_other_names_are_allowed() -> None:
    class Helper(Component):
        def observe_reward(self, value: float) -> None:
            pass

    assert overridden_hooks(Helper(PluginConfig(), ENV_SPEC)) == []


def test_role_rank_puts_builtin_roles_in_order_then_custom_roles_by_name() -> None:
    roles = ["zeta", "custom", "regularizer", "alpha", *reversed(ROLE_ORDER)]
    assert sorted(set(roles), key=role_rank) == [*ROLE_ORDER, "alpha", "zeta"]


def test_dispatch_follows_role_order_then_the_given_order() -> None:
    log: list[HookCall] = []
    components = [
        recorder("custom-1", "custom", log),
        recorder("reg-1", "regularizer", log),
        recorder("zeta-1", "zeta", log),
        recorder("replay-1", "replay", log),
        recorder("alpha-1", "alpha", log),
        recorder("reg-2", "regularizer", log),
        recorder("detector-1", "detector", log),
    ]
    dispatcher = HookDispatcher(components)
    dispatcher.fire(Hook.BEFORE_UPDATE, None)
    assert [call.component for call in log] == [
        "detector-1",
        "replay-1",
        "reg-1",
        "reg-2",
        "custom-1",
        "alpha-1",
        "zeta-1",
    ]
    assert {call.hook for call in log} == {"before_update"}
    assert [c.name for c in dispatcher.loss_providers()] == [call.component for call in log]


def test_hooks_nobody_implements_call_nothing() -> None:
    dispatcher = HookDispatcher([NoOpComponent(PluginConfig(), ENV_SPEC)])
    assert dispatcher.has(Hook.STEP) and dispatcher.has(Hook.AFTER_UPDATE)
    assert not dispatcher.has(Hook.TASK_END)
    assert dispatcher.handlers(Hook.TASK_END) == []
    assert dispatcher.loss_providers() == []


def test_a_component_exception_is_wrapped_naming_component_and_hook() -> None:
    class Broken(Component):
        role = "regularizer"

        def on_step(self, ctx: RunContext, step: Step) -> None:
            raise KeyError("missing")

    log: list[HookCall] = []
    broken = Broken(PluginConfig(), ENV_SPEC)
    broken.name = "ewc"
    later = recorder("after-broken", "custom", log)
    dispatcher = HookDispatcher([later, broken])
    with pytest.raises(ComponentError) as err:
        dispatcher.fire(Hook.STEP, None, None)
    assert str(err.value) == "component 'ewc' failed in on_step: KeyError: 'missing'"
    assert (err.value.component, err.value.hook) == ("ewc", "on_step")
    assert isinstance(err.value.__cause__, KeyError)
    assert log == []  # the custom component runs after the regularizer, and never ran


def test_a_component_error_passes_through_unwrapped() -> None:
    class Relays(Component):
        def on_run_end(self, ctx: RunContext) -> None:
            raise ComponentError("inner", "on_step", ValueError("x"))

    relays = Relays(PluginConfig(), ENV_SPEC)
    relays.name = "outer"
    with pytest.raises(ComponentError) as err:
        HookDispatcher([relays]).fire(Hook.RUN_END, None)
    assert err.value.component == "inner"


def test_loss_providers_are_only_components_that_override_losses() -> None:
    class Penalty(Component):
        role = "regularizer"

        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            return {}

    penalty = Penalty(PluginConfig(), ENV_SPEC)
    dispatcher = HookDispatcher([NoOpComponent(PluginConfig(), ENV_SPEC), penalty])
    assert dispatcher.loss_providers() == [penalty]


def test_component_error_survives_pickling() -> None:
    error = ComponentError("ewc", "on_task_end", ValueError("bad fisher"))
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ComponentError)
    assert (copy.component, copy.hook, str(copy)) == ("ewc", "on_task_end", str(error))
    assert "ValueError: bad fisher" in str(copy)
