"""Reservoir replay end to end: steps are retained uniformly over insertion time."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from l2rl.components.replay.reservoir import ReservoirReplay
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Discrete(2), 1, False)


def long_episode(length: int) -> list[Step]:
    """One episode whose observation at step ``t`` is ``[t]``."""
    frames = [np.array([t], np.float32) for t in range(length + 1)]
    return [
        Step(frames[t], t % 2, float(t), frames[t + 1], False, False, None, t)
        for t in range(length)
    ]


def test_retention_is_uniform_over_insertion_time() -> None:
    # 200 steps in chunks of 2 (100 chunks), 10 chunks kept: each step is held with
    # probability 1/10 whether it came first or last. The last chunk completes with step
    # 200, so the chunk being filled holds no transition.
    steps, trials = long_episode(200), 600
    held = np.zeros(200)
    for seed in range(trials):
        replay = ReservoirReplay(ReservoirReplay.Config(capacity=20, chunk_steps=2), SPEC)
        replay.seed(seed)
        for step in steps:
            replay.add(step)
        storage = replay.buffer.storage
        held[storage.rewards[storage.valid].astype(int)] += 1
        assert len(replay) == 20
    assert np.array_equal(held[0::2], held[1::2])  # chunks are kept or dropped whole
    per_chunk, expected = held[0::2], trials / 10
    # Chi-square over the 100 chunks, df 99, p = 1e-4 limit 160; a FIFO scores ~ 5 * 10^4.
    assert ((per_chunk - expected) ** 2 / expected).sum() < 160
    assert abs(per_chunk[:50].sum() - per_chunk[50:].sum()) < 0.1 * per_chunk.sum()


def test_minibatches_are_uniform_over_held_transitions() -> None:
    replay = ReservoirReplay(ReservoirReplay.Config(capacity=20, chunk_steps=2), SPEC)
    for step in long_episode(200):
        replay.add(step)
    storage = replay.buffer.storage
    held = np.sort(storage.rewards[storage.valid])
    drawn, counts = np.unique(replay.sample(20_000).rewards.numpy(), return_counts=True)
    assert np.array_equal(drawn, held)
    # 1000 expected per transition; binomial sd ~31: within 5 sd.
    assert counts.min() > 845 and counts.max() < 1155
