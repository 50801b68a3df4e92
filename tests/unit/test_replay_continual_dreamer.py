"""Continual-Dreamer replay: chunks drawn by the 50:50 recency rule over chunk age."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

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


def short_episodes(replay: ContinualDreamerReplay, steps: range) -> None:
    """Store steps ``t`` (reward ``t``, obs ``10 t``) as episodes of 1 and 2 steps in turn.

    A step that ends its episode has next obs ``10 t + 1``, the first of a 2-step episode
    the next step's obs. In chunks of 4 steps each complete chunk holds steps 3k, 3k + 1
    and 3k + 2 at rows 1, 3 and 4 (row 2 starts an episode: no transition ends there).
    """
    for t in steps:
        last = t % 3 != 1  # episodes {0}, {1, 2}, {3}, {4, 5}, ...
        next_obs = np.array([10 * t + 1 if last else 10 * t + 10], np.float32)
        replay.add(Step(np.array([10 * t], np.float32), 0, float(t), next_obs, last, False, 0, t))


def test_chunk_cache_follows_filling_and_eviction_and_rows_are_uniform_within() -> None:
    # The sampler caches the chunks that hold a transition: a chunk being filled must join
    # once it holds one and an evicted chunk must leave. Inside a chunk a transition is
    # picked by index (no rejection): uniform, and never the row that starts an episode.
    config = ContinualDreamerReplay.Config(
        capacity=8, chunk_steps=4, recent_fraction=0.0, writer="fifo"
    )
    replay = ContinualDreamerReplay(config, SPEC)
    short_episodes(replay, range(6))  # two complete chunks; the one being filled is empty
    assert sorted(set(replay.sample(500).rewards.tolist())) == [0, 1, 2, 3, 4, 5]
    short_episodes(replay, range(6, 7))  # it now holds step 6
    batch = replay.sample(9000)
    assert torch.equal(batch.obs[:, 0], batch.rewards * 10)
    continues = (batch.rewards % 3 == 1)[:, None]
    assert torch.equal(batch.next_obs, batch.obs + torch.where(continues, 10.0, 1.0))
    counts = np.bincount(batch.rewards.numpy().astype(int), minlength=7)
    # Each of the three chunks 1/3; within one, each of its transitions alike.
    want = 9000 * np.array([1 / 9] * 6 + [1 / 3])
    assert ((counts - want) ** 2 / want).sum() < 27.9  # chi-square, df 6, p = 1e-4
    short_episodes(replay, range(7, 9))  # completes a third chunk: the oldest is evicted
    assert sorted(set(replay.sample(500).rewards.tolist())) == [3, 4, 5, 6, 7, 8]
