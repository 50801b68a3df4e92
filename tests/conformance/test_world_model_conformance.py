"""The built-in world model passes the conformance kit, with a replay as its companion."""

from __future__ import annotations

from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import DreamerWorldModelComponent
from l2rl.core import Component
from l2rl.testing import check_component
from l2rl.types import EnvSpec

TINY = {
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


def fifo(env_spec: EnvSpec) -> Component:
    return FIFOReplay(FIFOReplay.Config(capacity=64, chunk_steps=8), env_spec)


def test_dreamer_world_model_conforms() -> None:
    report = check_component(DreamerWorldModelComponent, TINY, companions=[fifo])
    assert "gradients applied[task-agnostic]" in report.passed
    assert "state_dict[task-aware]" in report.passed
