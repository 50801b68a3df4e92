"""The lifecycle hooks, their fixed order, and the dispatcher that calls components.

Hook order within one run (task-aware; see :mod:`l2rl.core` for the whole loop)::

    on_run_start
      on_task_start                      # once per training window
        on_step                          # every env step
        before_update                    # every optimiser step ...
          (component.losses)
          after_backward                 #   gradients exist, not yet applied
          after_update                   #   parameters changed
        on_eval_task_start / on_eval_task_end   # around each task's evaluation
        on_eval_hidden_task_start        # task-agnostic: before each task's evaluation
        on_eval                          # all records of one evaluation round
        on_parameters_changed            # when a component reports a grown/shrunk learner
      on_task_end
      on_consolidate
    on_run_end

Components run in role order (:data:`ROLE_ORDER`, then any custom role by name) and, within
a role, in the order the config lists them. The closing hooks (:data:`END_HOOKS`) run in the
reverse order, like nested context managers: two components that swap weights in on
``on_eval_task_start`` unwind them in the opposite order. The update hooks
(:data:`UPDATE_HOOKS`) and ``losses`` of a component run only for the updates of the learner
its ``learner`` attribute names (the agent by default).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l2rl.core import Component


class Hook(enum.StrEnum):
    """Every lifecycle event a component can handle; the value is the method name."""

    RUN_START = "on_run_start"
    TASK_START = "on_task_start"
    STEP = "on_step"
    BEFORE_UPDATE = "before_update"
    AFTER_BACKWARD = "after_backward"
    AFTER_UPDATE = "after_update"
    EVAL_TASK_START = "on_eval_task_start"
    EVAL_TASK_END = "on_eval_task_end"
    EVAL_HIDDEN_TASK_START = "on_eval_hidden_task_start"
    EVAL = "on_eval"
    TASK_END = "on_task_end"
    CONSOLIDATE = "on_consolidate"
    PARAMETERS_CHANGED = "on_parameters_changed"
    RUN_END = "on_run_end"


END_HOOKS = frozenset({Hook.EVAL_TASK_END, Hook.TASK_END, Hook.RUN_END})
"""Hooks that close what an earlier hook opened: dispatched in reverse component order."""
UPDATE_HOOKS = frozenset({Hook.BEFORE_UPDATE, Hook.AFTER_BACKWARD, Hook.AFTER_UPDATE})
"""Hooks of one learner's optimiser step: dispatched to the components aimed at it."""

ROLE_ORDER: tuple[str, ...] = (
    "detector",
    "replay",
    "world_model",
    "exploration",
    "hypernetwork",
    "skill_manager",
    "consolidator",
    "regularizer",
    "custom",
)
"""Dispatch order of the built-in roles. Roles not listed run after these, sorted by name."""

HOOK_NAMES = frozenset(h.value for h in Hook)
# Method-name prefixes that mark a hook; a method with one of these prefixes that is not a
# hook is almost always a typo (``on_tsk_end``), so registration rejects it.
_HOOK_PREFIXES = ("on_", "before_", "after_")


class ComponentError(RuntimeError):
    """An exception raised inside a component, re-raised naming the component and hook."""

    def __init__(self, component: str, hook: str, cause: BaseException | str) -> None:
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"component {component!r} failed in {hook}: {detail}")
        self.component = component
        self.hook = hook
        self.detail = detail

    def __reduce__(self) -> tuple[type[ComponentError], tuple[str, str, str]]:
        # Rebuilt from strings so the error survives pickling (e.g. from a worker process).
        return (type(self), (self.component, self.hook, self.detail))


class HookRegistrationError(TypeError):
    """A component defines a hook-like method that is not a hook, or a bad signature."""


def role_rank(role: str) -> tuple[int, str]:
    """Sort key that puts components in role order, custom roles last by name."""
    if role in ROLE_ORDER:
        return (ROLE_ORDER.index(role), "")
    return (len(ROLE_ORDER), role)


def overridden_hooks(component: Component) -> list[Hook]:
    """The hooks this component implements, checked against the base-class signatures.

    Raises:
        HookRegistrationError: for an unknown hook-like method name or a signature whose
            parameter count differs from the base class's.
    """
    from l2rl.core import Component

    found: list[Hook] = []
    for name, member in inspect.getmembers(type(component), inspect.isfunction):
        if not name.startswith(_HOOK_PREFIXES):
            continue
        if name not in HOOK_NAMES:
            raise HookRegistrationError(
                f"{type(component).__name__}.{name} looks like a hook but is not one; "
                f"known hooks: {', '.join(sorted(HOOK_NAMES))}"
            )
        base = getattr(Component, name)
        if member is base:
            continue
        expected = len(inspect.signature(base).parameters)
        got = len(inspect.signature(member).parameters)
        if got != expected:
            raise HookRegistrationError(
                f"{type(component).__name__}.{name} takes {got} parameters, "
                f"the hook passes {expected} (signature {inspect.signature(base)})"
            )
        found.append(Hook(name))
    return found


class HookDispatcher:
    """Calls the components that implement each hook, in role order.

    Only overridden hooks are called, so a component pays nothing for hooks it ignores.
    Update hooks and loss providers are looked up per learner name.
    """

    def __init__(self, components: Sequence[Component]) -> None:
        from l2rl.core import Component

        self.components = sorted(components, key=lambda c: role_rank(c.role))
        self._table: dict[Hook, list[tuple[str, Callable[..., Any]]]] = {h: [] for h in Hook}
        self._update_table: dict[tuple[Hook, str], list[tuple[str, Callable[..., Any]]]] = {}
        self._loss_providers: dict[str, list[Component]] = {}
        for component in self.components:
            for hook in overridden_hooks(component):
                handler = (component.name, getattr(component, hook.value))
                if hook in UPDATE_HOOKS:
                    self._update_table.setdefault((hook, component.learner), []).append(handler)
                else:
                    self._table[hook].append(handler)
            if type(component).losses is not Component.losses:
                self._loss_providers.setdefault(component.learner, []).append(component)
        for hook in END_HOOKS:
            self._table[hook].reverse()

    def has(self, hook: Hook, learner: str = "agent") -> bool:
        """Whether any component implements ``hook`` (for ``learner``'s updates)."""
        return bool(self.handlers(hook, learner))

    def handlers(self, hook: Hook, learner: str = "agent") -> list[tuple[str, Callable[..., Any]]]:
        """``(component name, bound method)`` pairs for ``hook``, in dispatch order; for an
        update hook, those of the components aimed at ``learner``."""
        if hook in UPDATE_HOOKS:
            return self._update_table.get((hook, learner), [])
        return self._table[hook]

    def loss_providers(self, learner: str = "agent") -> list[Component]:
        """Components that add loss terms to ``learner``'s, in dispatch order."""
        return self._loss_providers.get(learner, [])

    def fire(self, hook: Hook, *args: Any, learner: str = "agent") -> None:
        """Call every handler of ``hook``; wrap any exception with the component's name.

        ``learner`` selects the handlers of an update hook (ignored by the others).
        """
        for name, method in self.handlers(hook, learner):
            try:
                method(*args)
            except ComponentError:
                raise
            except Exception as exc:
                raise ComponentError(name, hook.value, exc) from exc
