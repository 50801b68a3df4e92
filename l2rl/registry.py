"""Plugins by name, found through entry points.

Three groups: ``l2rl.agents`` (an :class:`~l2rl.core.Agent` subclass), ``l2rl.components``
(a :class:`~l2rl.core.Component` subclass) and ``l2rl.scenarios`` (a scenario factory, see
:mod:`l2rl.scenario`). l2rl's own built-ins register through these same groups in its
``pyproject.toml``, exactly as a third-party package does.
"""

from __future__ import annotations

import difflib
import importlib.util
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

Group = Literal["l2rl.agents", "l2rl.components", "l2rl.scenarios"]
GROUPS: tuple[Group, ...] = ("l2rl.agents", "l2rl.components", "l2rl.scenarios")


class UnknownPluginError(LookupError):
    """No plugin of that name is registered; the message suggests the nearest names and
    lists the available ones."""


class PluginLoadError(ImportError):
    """A registered entry point could not be imported."""


def _entry_points(group: Group) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        # Two distributions registering one name would make the choice depend on install
        # order; refuse rather than pick silently.
        if ep.name in found and found[ep.name].value != ep.value:
            raise PluginLoadError(
                f"{group}: name {ep.name!r} is registered twice "
                f"({found[ep.name].value} and {ep.value})"
            )
        found[ep.name] = ep
    return found


def available(group: Group) -> list[str]:
    """Registered names in ``group``, sorted."""
    return sorted(_entry_points(group))


def describe(group: Group) -> dict[str, str]:
    """``name -> 'module:attr'`` for every plugin in ``group``."""
    return {name: ep.value for name, ep in sorted(_entry_points(group).items())}


def missing_modules(group: Group) -> dict[str, str]:
    """``name -> error`` for every plugin in ``group`` whose module cannot be found, found
    without importing it (only its parent packages are imported), so listing stays fast;
    a module that exists but fails to import is caught by :func:`import_errors` only."""
    errors: dict[str, str] = {}
    for name, ep in sorted(_entry_points(group).items()):
        try:
            found = importlib.util.find_spec(ep.module) is not None
        except (ImportError, ValueError) as exc:  # a parent package is missing or broken
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if not found:
            errors[name] = f"ModuleNotFoundError: No module named {ep.module!r}"
    return errors


def import_errors(group: Group) -> dict[str, str]:
    """``name -> error`` for every plugin in ``group`` whose entry point fails to import
    (each plugin is imported to find out); the others are absent."""
    errors: dict[str, str] = {}
    for name, ep in sorted(_entry_points(group).items()):
        try:
            ep.load()
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return errors


def load(group: Group, name: str) -> Any:
    """The object registered as ``name`` in ``group``.

    Raises:
        UnknownPluginError: ``name`` is not registered (lists what is).
        PluginLoadError: the entry point exists but importing it failed.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown plugin group {group!r}; groups: {', '.join(GROUPS)}")
    points = _entry_points(group)
    if name not in points:
        names = ", ".join(sorted(points)) or "(none)"
        kind = group.split(".")[1][:-1]
        close = difflib.get_close_matches(name, sorted(points), n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownPluginError(f"unknown {kind} {name!r}; {hint}available: {names}")
    try:
        return points[name].load()
    except Exception as exc:
        raise PluginLoadError(
            f"{group} plugin {name!r} ({points[name].value}) failed to import: {exc}"
        ) from exc
