"""Crash-safe file writing: atomic replacement and the permissions of what it creates."""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import torch

from l2rl.checkpoint import write_checkpoint
from l2rl.core import AgentServices, RunContext
from l2rl.logging.files import atomic_torch_save, atomic_write_json, atomic_write_text
from l2rl.testing import FakeAgent, fake_scenario


@pytest.fixture(params=[0o022, 0o002, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask (restored after)."""
    mask: int = request.param
    previous = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


WRITERS: dict[str, Callable[[Path], None]] = {
    "text": lambda p: atomic_write_text(p, "hello\n"),
    "json": lambda p: atomic_write_json(p, {"a": 1}),
    "torch": lambda p: atomic_torch_save(p, {"w": torch.ones(2)}),
}


FAILING: dict[str, Callable[[Path], None]] = {  # writes that raise half-way
    "text": lambda p: atomic_write_text(p, 1),  # type: ignore[arg-type]
    "json": lambda p: atomic_write_json(p, {"a": float("nan")}),  # NaN is refused
    "torch": lambda p: atomic_torch_save(p, {"f": lambda: 1}),  # a lambda cannot be pickled
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_atomic_writes_follow_the_umask_like_open(kind: str, umask: int, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")  # what open() makes under this umask
    path = tmp_path / "sub" / f"file.{kind}"
    WRITERS[kind](path)
    assert _mode(path) == 0o666 & ~umask == _mode(plain)
    WRITERS[kind](path)  # replacing an existing file too
    assert _mode(path) == 0o666 & ~umask
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError, AttributeError, pickle.PicklingError)):
        FAILING[kind](path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_checkpoints_follow_the_umask(umask: int, tmp_path: Path) -> None:
    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    agent = FakeAgent(FakeAgent.Config(), scenario.env_spec(), AgentServices(), seed=0)
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(
        path,
        block=0,
        schedule=[(0, 4)],
        ctx=cast(RunContext, SimpleNamespace(global_step=4, learner_updates={"agent": 0})),
        episodes=0,
        agent=agent,
        components=[],
    )
    assert _mode(path) == 0o666 & ~umask
    assert torch.load(path, weights_only=False)["block"] == 0
