"""requirements.lock pins every dependency within pyproject.toml's ranges, and is what the
set-up installed (unless it ran with L2RL_UNPINNED=1)."""

from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])


@pytest.mark.skipif(os.environ.get("L2RL_UNPINNED") == "1", reason="unpinned install")
def test_installed_versions_are_the_locked_ones() -> None:
    for name, version in _locked().items():
        installed = Version(importlib.metadata.version(name))
        # torch's local build carries a "+cpu" tag that the lock leaves out
        assert installed.public == str(version), (name, installed, version)
