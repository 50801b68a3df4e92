"""The Plan2Explore ensemble passes the conformance kit beside a replay and a world model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import DreamerWorldModelComponent
from l2rl.components.world_models.plan2explore import Plan2Explore
from l2rl.core import Component
from l2rl.testing import check_component
from l2rl.types import EnvSpec

TINY_MODEL = {
    "deter": 16,
    "latents": 2,
    "classes": 4,
    "units": 16,
    "layers": 1,
    "batch_size": 2,
    "sequence_length": 4,
    "train_every": 4,
    "learning_starts": 8,
}

TINY = {
    "ensemble_size": 3,
    "units": 16,
    "layers": 1,
    "batch_size": 2,
    "sequence_length": 4,
    "train_every": 4,
    "learning_starts": 8,
    # a running normaliser, so that its state goes through the round trip too
    "norm_momentum": 0.9,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small networks: a second thread only adds contention on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=64, chunk_steps=8), env_spec)


def world_model(env_spec: EnvSpec) -> Component:
    return DreamerWorldModelComponent(DreamerWorldModelComponent.Config(**TINY_MODEL), env_spec)


def test_plan2explore_conforms() -> None:
    report = check_component(Plan2Explore, TINY, companions=[fifo, world_model])
    assert "gradients applied[task-aware]" in report.passed
    assert "gradients applied[task-agnostic]" in report.passed
    assert "state_dict[task-agnostic]" in report.passed
