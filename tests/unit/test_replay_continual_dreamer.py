"""Continual-Dreamer replay: chunks drawn by the 50:50 recency rule over chunk age."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from l2rl.components.replay.continual_dreamer import ContinualDreamerReplay
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Discrete(2), 1, True)


def filled(recent_fraction: float, writer: str = "reservoir") -> ContinualDreamerReplay:
    """10 chunks of 2 steps kept out of 100, fed one 200-step episode.

    Chunk ``k`` holds frames ``2k .. 2k + 2``; the chunk being filled holds only a carried
    frame, so neither transitions nor 3-frame sequences come from it.
    """
    config = ContinualDreamerReplay.Config(
        capacity=20, chunk_steps=2, recent_fraction=recent_fraction, writer=writer
    )
    replay = ContinualDreamerReplay(config, SPEC)
    frames = [np.array([t], np.float32) for t in range(201)]
    for t in range(200):
        replay.add(Step(frames[t], 0, float(t), frames[t + 1], False, False, 0, t))
    return replay


def age_ranks(replay: ContinualDreamerReplay, first_frames: np.ndarray) -> np.ndarray:
    """Rank by age (0 = oldest) of the held chunk each first frame starts."""
    storage = replay.buffer.storage
    held = sorted(int(storage.obs[s * storage.rows, 0]) for s in replay.buffer.writers[0].held())
    return np.searchsorted(held, first_frames)


def expected(n: int, p: float) -> np.ndarray:
    k = np.arange(n)
    return p * (2 * k + 1) / n**2 + (1 - p) / n


@pytest.mark.parametrize("p", [1.0, 0.5, 0.0])
def test_chunks_are_drawn_by_recency_rank(p: float) -> None:
    replay = filled(p)
    # Reservoir slots are not in age order, so this fails if ranks followed slots.
    storage = replay.buffer.storage
    held = replay.buffer.writers[0].held()
    assert storage.serial[held].tolist() != sorted(storage.serial[held].tolist())
    draws = 20_000
    starts = (replay.sample(draws).obs[:, 0].numpy() // 2 * 2).astype(int)
    counts = np.bincount(age_ranks(replay, starts), minlength=10)
    want = draws * expected(10, p)
    # Chi-square, df 9, p = 1e-4 limit 33.7.
    assert ((counts - want) ** 2 / want).sum() < 33.7


def test_sequences_follow_the_same_rule() -> None:
    replay = filled(1.0)
    batch = replay.sample_sequences(20_000, 3)  # a whole chunk each: frames 2k .. 2k + 2
    starts = batch.obs[:, 0, 0].numpy().astype(int)
    assert np.array_equal(batch.obs[:, :, 0].numpy(), starts[:, None] + np.arange(3))
    counts = np.bincount(age_ranks(replay, starts), minlength=10)
    want = 20_000 * expected(10, 1.0)
    assert ((counts - want) ** 2 / want).sum() < 33.7


def test_fifo_writer_keeps_the_newest_chunks() -> None:
    replay = filled(0.5, writer="fifo")
    storage = replay.buffer.storage
    firsts = sorted(int(storage.obs[s * storage.rows, 0]) for s in replay.buffer.writers[0].held())
    assert firsts == list(range(180, 200, 2))
