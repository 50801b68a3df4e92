"""The regularizers' memories: reservoir sampling of a window and the episodic store."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from l2rl.components.regularizers.memory import EpisodicMemory, Reservoir

FIELDS = {"x": ((), np.dtype(np.int64)), "v": ((2,), np.dtype(np.float32))}


def row(i: int) -> dict[str, object]:
    return {"x": i, "v": np.array([i, -i], dtype=np.float32)}


def test_reservoir_keeps_everything_until_full_then_a_uniform_sample() -> None:
    reservoir = Reservoir(4, FIELDS, seed=0)
    for i in range(3):
        reservoir.add(row(i))
    assert len(reservoir) == 3
    assert reservoir.rows()["x"].tolist() == [0, 1, 2]
    torch.testing.assert_close(reservoir.rows()["v"][2], torch.tensor([2.0, -2.0]))
    # Each of 40 rows is held with probability 4/40; over many seeds every row is, about
    # equally often (a FIFO would only ever hold the last four).
    counts = np.zeros(40)
    for seed in range(2000):
        sample = Reservoir(4, FIELDS, seed=seed)
        for i in range(40):
            sample.add(row(i))
        assert len(sample) == 4 and sample.seen == 40
        kept = sample.rows()["x"].numpy()
        assert len(set(kept)) == 4
        counts[kept] += 1
    frequency = counts / 2000
    assert np.all(np.abs(frequency - 0.1) < 0.03), frequency


def test_reservoir_clear_and_state_round_trip() -> None:
    reservoir = Reservoir(3, FIELDS, seed=1)
    for i in range(10):
        reservoir.add(row(i))
    buffer = io.BytesIO()
    torch.save(reservoir.state_dict(), buffer)
    buffer.seek(0)
    restored = Reservoir(3, FIELDS, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for i in range(10, 30):  # the same stream of slot choices continues in both
        reservoir.add(row(i))
        restored.add(row(i))
    assert restored.rows()["x"].tolist() == reservoir.rows()["x"].tolist()
    reservoir.clear()
    assert len(reservoir) == 0 and reservoir.rows()["x"].shape == (0,)
    with pytest.raises(ValueError, match="fields"):
        Reservoir(3, {"x": FIELDS["x"]}).load_state_dict(restored.state_dict())


def test_episodic_memory_samples_every_task_and_a_revisit_replaces_its_rows() -> None:
    memory = EpisodicMemory(seed=0)
    with pytest.raises(ValueError, match="empty"):
        memory.sample(1)
    memory.store(0, {"x": torch.zeros(10, dtype=torch.int64)})
    memory.store(1, {"x": torch.ones(30, dtype=torch.int64)})
    assert len(memory) == 40 and memory.tasks == [0, 1]
    drawn = memory.sample(4000)["x"]
    assert 0.70 < float(drawn.double().mean()) < 0.80  # uniform over rows: 30/40 are task 1
    memory.store(0, {"x": torch.full((5,), 7, dtype=torch.int64)})
    assert len(memory) == 35
    assert sorted(set(memory.sample(500)["x"].tolist())) == [1, 7]
    with pytest.raises(ValueError, match="fields"):
        memory.store(2, {"y": torch.zeros(1)})


def test_episodic_memory_state_round_trip_continues_the_same_draws() -> None:
    memory = EpisodicMemory(seed=3)
    memory.store(4, {"x": torch.arange(6), "y": torch.arange(6).double()})
    restored = EpisodicMemory()
    restored.load_state_dict(memory.state_dict())
    assert restored.tasks == [4]
    assert memory.sample(8)["x"].tolist() == restored.sample(8)["x"].tolist()
