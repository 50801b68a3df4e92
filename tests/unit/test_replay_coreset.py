"""The coreset replay: what it keeps of a finished task and how it fills a minibatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2rl.components.replay.coreset import CoresetReplay
from l2rl.testing import fake_scenario
from l2rl.types import Step, TaskInfo


def make(capacity: int = 100, coreset_size: int = 5) -> CoresetReplay:
    replay = CoresetReplay(
        CoresetReplay.Config(capacity=capacity, coreset_size=coreset_size),
        fake_scenario(3, 4).env_spec(),
    )
    replay.on_run_start(_Ctx())  # type: ignore[arg-type]
    return replay


class _Ctx:
    seed = 0


def window(replay: CoresetReplay, task: int, steps: int, start: float) -> None:
    replay.on_task_start(None, TaskInfo(task, f"t{task}", task, 3))  # type: ignore[arg-type]
    for i in range(steps):
        obs = np.full(4, start + i, np.float32)
        step = Step(obs, 1, 0.5, obs + 0.5, False, False, task, i)
        replay.on_step(None, step)  # type: ignore[arg-type]


def test_a_finished_task_leaves_a_random_coreset_and_batches_draw_b_from_each() -> None:
    replay = make(coreset_size=5)
    window(replay, 0, 30, start=0.0)
    window(replay, 1, 20, start=100.0)
    assert len(replay) == 20 and set(replay.coresets) == {0}
    kept = replay.coresets[0]["obs"][:, 0]
    assert len(kept) == 5 and len(set(kept.tolist())) == 5 and kept.max() < 30
    batch = replay.sample(8)
    assert len(batch) == 16
    assert (batch.task_ids[:8] == 1).all() and (batch.task_ids[8:] == 0).all()
    assert (batch.obs[:8, 0] >= 100).all()
    assert set(batch.obs[8:, 0].tolist()) <= set(kept.tolist())
    window(replay, 2, 10, start=200.0)
    assert len(replay.sample(4)) == 12  # current + two coresets
    # A cycle back to task 0: its coreset sits out while task 0 trains again.
    window(replay, 0, 10, start=300.0)
    batch = replay.sample(4)
    assert len(batch) == 12 and sorted(set(batch.task_ids.tolist())) == [0, 1, 2]
    assert (batch.obs[:4, 0] >= 300).all()


def test_current_memory_is_fifo_and_an_empty_one_refuses_to_sample() -> None:
    replay = make(capacity=10)
    with pytest.raises(ValueError, match="no transition of the current task"):
        replay.sample(2)
    window(replay, 0, 25, start=0.0)
    assert len(replay) == 10
    assert sorted(replay.current.arrays["obs"][:, 0].tolist()) == list(range(15, 25))


def test_state_round_trip_reproduces_memory_and_samples() -> None:
    replay = make()
    window(replay, 0, 12, start=0.0)
    window(replay, 1, 7, start=50.0)
    state = replay.state_dict()
    fresh = make()
    fresh.load_state_dict(state)
    a, b = replay.sample(6), fresh.sample(6)
    for field in ("obs", "actions", "rewards", "next_obs", "terminated", "task_ids"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))
