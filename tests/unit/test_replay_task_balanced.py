"""Task-balanced replay end to end: equal per-task shares, chunks never mix tasks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from l2rl.components.replay.task_balanced import TaskBalancedReplay
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Discrete(2), 3, True)


def task_stream(steps_per_task: int, tasks: int, aware: bool = True) -> list[Step]:
    """One uninterrupted observation stream whose task id changes every window."""
    frames = [np.array([t], np.float32) for t in range(steps_per_task * tasks + 1)]
    return [
        Step(
            frames[t],
            0,
            float(t),
            frames[t + 1],
            False,
            False,
            t // steps_per_task if aware else None,
            t,
        )
        for t in range(steps_per_task * tasks)
    ]


def make(capacity: int = 60) -> TaskBalancedReplay:
    return TaskBalancedReplay(TaskBalancedReplay.Config(capacity=capacity, chunk_steps=2), SPEC)


def test_each_task_keeps_its_quota_of_the_memory() -> None:
    # 30 chunks of memory, three tasks of 30 chunks each: 10 chunks (20 steps) per task.
    for seed in range(3):
        replay = make()
        replay.seed(seed)
        for step in task_stream(60, 3):
            replay.add(step)
        storage = replay.buffer.storage
        tasks = storage.task[np.flatnonzero(storage.valid) // storage.rows]
        assert np.bincount(tasks).tolist() == [20, 20, 20]
        batch = replay.sample(3000)
        assert abs(batch.task_ids.float().mean().item() - 1.0) < 0.06  # tasks drawn equally


def test_no_transition_or_chunk_mixes_tasks() -> None:
    replay = make()
    for step in task_stream(5, 3):
        replay.add(step)
    assert len(replay) == 15
    batch = replay.sample(500)
    assert torch.equal(batch.task_ids, (batch.obs[:, 0] // 5).long())  # step t: task t // 5
    # The stream goes on across the task changes, but frames 5 and 10 start new chunks
    # (stored again, as first rows) instead of continuing the previous task's chunk.
    storage = replay.buffer.storage
    assert storage.obs[storage.is_first, 0].tolist() == [0.0, 5.0, 10.0]
    for frame in (5.0, 10.0):
        rows = np.flatnonzero(storage.obs[:, 0] == frame)
        # The copy that ends the old task's chunk, and the new chunk's first row.
        assert storage.valid[rows].tolist() == [True, False]
        assert storage.task[rows // storage.rows].tolist() == [frame // 5 - 1, frame // 5]


def test_without_task_ids_it_is_a_reservoir() -> None:
    replay = make(capacity=20)
    for step in task_stream(60, 3, aware=False):
        replay.add(step)
    storage = replay.buffer.storage
    assert len(replay) == 20
    assert set(storage.task[np.flatnonzero(storage.valid) // storage.rows].tolist()) == {-1}
