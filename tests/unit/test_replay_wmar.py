"""WMAR replay: each chunk to both buffers, stored once; minibatches from one buffer 50:50."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.components.replay.wmar import WMARReplay
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Discrete(2), 1, True)


def filled(seed: int) -> WMARReplay:
    """Two chunks of 4 steps per buffer, fed one 160-step episode: 40 complete chunks.

    Chunk ``k`` holds frames ``4k .. 4k + 4`` (steps ``4k .. 4k + 3``); the chunk being
    filled holds only the carried frame 160, no transition.
    """
    replay = WMARReplay(WMARReplay.Config(capacity=16, chunk_steps=4), SPEC)
    replay.seed(seed)
    frames = [np.array([t], np.float32) for t in range(161)]
    for t in range(160):
        replay.add(Step(frames[t], 0, float(t), frames[t + 1], False, False, 0, t))
    return replay


def chunk_numbers(replay: WMARReplay, slots: list[int]) -> list[int]:
    """Which chunks of the stream the slots hold, from their first frames."""
    storage = replay.buffer.storage
    return sorted(int(storage.obs[s * storage.rows, 0]) // 4 for s in slots)


def test_every_chunk_goes_to_both_buffers_and_is_stored_once() -> None:
    overlaps = 0
    for seed in range(40):
        replay = filled(seed)
        short, long = replay.short_term.held(), replay.long_term.held()
        assert chunk_numbers(replay, short) == [38, 39]  # the newest, FIFO
        assert len(long) == 2
        stored = set(short) | set(long)
        assert set(np.flatnonzero(replay.buffer.storage.count).tolist()) == stored
        assert len(replay) == 4 * len(stored)  # a chunk both buffers hold counts once
        overlaps += len(stored) == 3
    # The long-term buffer also holds one of the newest two chunks with probability
    # 1 - C(38, 2) / C(40, 2) ~ 0.1, and then it is stored once.
    assert overlaps > 0


def test_long_term_buffer_is_a_uniform_sample_of_all_chunks() -> None:
    held = np.zeros(40)
    for seed in range(400):
        replay = filled(seed)
        held[chunk_numbers(replay, replay.long_term.held())] += 1
    expected = 400 * 2 / 40
    # Chi-square over the 40 chunks, df 39, p = 1e-4 limit 80; a FIFO scores ~ 15000.
    assert ((held - expected) ** 2 / expected).sum() < 80


def test_each_minibatch_comes_from_one_buffer_chosen_50_50() -> None:
    replay = filled(seed=1)
    short = set(chunk_numbers(replay, replay.short_term.held()))
    long = set(chunk_numbers(replay, replay.long_term.held()))
    assert not short & long  # for this seed the long-term chunks are old ones
    from_short = 0
    for _ in range(1000):
        chunks = set((replay.sample(8).obs[:, 0] // 4).long().tolist())
        assert chunks <= short or chunks <= long
        from_short += chunks <= short
    # Binomial(1000, 0.5): sd 15.8; 440..560 is > 3.5 sd either side.
    assert 440 < from_short < 560


def test_an_empty_long_term_buffer_passes_every_minibatch_to_the_short_term_one() -> None:
    replay = WMARReplay(WMARReplay.Config(capacity=16, chunk_steps=4), SPEC)
    with pytest.raises(ValueError, match="empty"):
        replay.sample(4)
    frames = [np.array([t], np.float32) for t in range(4)]
    for t in range(3):  # the chunk being filled: three steps, no complete chunk yet
        replay.add(Step(frames[t], 0, float(t), frames[t + 1], False, False, 0, t))
    assert replay.buffer.ends[1].size == 0
    rewards = torch.cat([replay.sample(8).rewards for _ in range(50)])
    assert sorted(set(rewards.tolist())) == [0.0, 1.0, 2.0]


def test_sequences_come_from_one_buffer_too() -> None:
    replay = filled(seed=1)
    short = set(chunk_numbers(replay, replay.short_term.held()))
    sources = set()
    for _ in range(100):
        batch = replay.sample_sequences(4, 5)  # 5 rows: a whole chunk
        starts = batch.obs[:, 0, 0]
        assert torch.equal(batch.obs[:, :, 0], starts[:, None] + torch.arange(5))
        from_short = {int(s) // 4 in short for s in starts.tolist()}
        assert len(from_short) == 1
        sources |= from_short
    assert sources == {True, False}


def test_cached_views_follow_every_change() -> None:
    # Samplers cache the buffers' chunk lists; they must match the writers after each step.
    replay = WMARReplay(WMARReplay.Config(capacity=16, chunk_steps=4), SPEC)
    frames = [np.array([t], np.float32) for t in range(61)]
    for t in range(60):
        replay.add(Step(frames[t], 0, float(t), frames[t + 1], t % 7 == 6, False, 0, t))
        replay.sample(4)
        buffer = replay.buffer
        filling = [s.slot for s in buffer._streams.values()]
        assert buffer.views()[0].tolist() == replay.short_term.held() + filling
        assert buffer.views()[1].tolist() == replay.long_term.held()
        sampled = set((buffer.sampler.transitions(buffer, 64) // buffer.storage.rows).tolist())
        assert sampled <= set(replay.short_term.held() + filling) or sampled <= set(
            replay.long_term.held()
        )
