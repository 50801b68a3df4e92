"""FIFO replay: eviction rule, uniform sampling over stored transitions, seeding, state."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.replay.writers import FIFOWriter
from l2rl.core import BatchSource, RunContext
from l2rl.types import EnvSpec, Step, TransitionBatch

SPEC = EnvSpec(
    observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
    action_space=gym.spaces.Discrete(3),
    num_tasks=2,
    task_aware=True,
)


def make_step(i: int, task_id: int | None = 0) -> Step:
    """Transition number ``i``: every field is a function of ``i`` so rows are identifiable.

    Step ``i + 1`` starts where step ``i`` ended unless step ``i`` terminated (odd ``i``).
    """
    return Step(
        obs=np.array([i, i + 0.5], np.float32),
        action=i % 3,
        reward=float(i),
        next_obs=np.array([i + 1, i + 1.5], np.float32),
        terminated=i % 2 == 1,
        truncated=False,
        task_id=task_id,
        global_step=i,
    )


def make_replay(capacity: int, n: int, seed: int = 0, chunk_steps: int = 1) -> FIFOReplay:
    replay = FIFOReplay(FIFOReplay.Config(capacity=capacity, chunk_steps=chunk_steps), SPEC)
    replay.seed(seed)
    for i in range(n):
        replay.add(make_step(i))
    return replay


def stored(replay: FIFOReplay) -> TransitionBatch:
    """Every stored transition, in storage order."""
    storage = replay.buffer.storage
    return storage.transitions_at(np.flatnonzero(storage.valid))


def test_writer_evicts_the_oldest_chunk() -> None:
    writer = FIFOWriter(3)
    rng = np.random.default_rng(0)
    assert [writer.place(c, 0, rng) for c in range(5)] == [[], [], [], [0], [1]]
    assert writer.held() == [2, 3, 4]


def test_eviction_keeps_exactly_the_last_capacity_transitions() -> None:
    # chunk_steps=1 makes every chunk one transition: the classic transition ring buffer.
    replay = make_replay(capacity=3, n=5)
    assert len(replay) == 3
    batch = stored(replay)
    order = torch.argsort(batch.rewards)
    assert batch.rewards[order].tolist() == [2.0, 3.0, 4.0]
    assert batch.obs[order].tolist() == [[2.0, 2.5], [3.0, 3.5], [4.0, 4.5]]
    assert batch.next_obs[order].tolist() == [[3.0, 3.5], [4.0, 4.5], [5.0, 5.5]]
    assert batch.actions[order].tolist() == [2, 0, 1]
    assert batch.terminated[order].tolist() == [False, True, False]


def test_eviction_is_by_whole_chunks_and_keeps_the_newest_steps() -> None:
    # Chunks of 4 steps, 2 kept: after 21 steps of one episode that never ends the
    # complete chunks hold steps 12..19 and the chunk being filled holds step 20.
    replay = FIFOReplay(FIFOReplay.Config(capacity=8, chunk_steps=4), SPEC)
    for i in range(21):
        obs = np.array([i, i + 0.5], np.float32)
        replay.add(Step(obs, i % 3, float(i), obs + 1, False, False, 0, i))
    assert sorted(stored(replay).rewards.tolist()) == [float(i) for i in range(12, 21)]


def test_batch_dtypes_and_unknown_task_id() -> None:
    replay = FIFOReplay(FIFOReplay.Config(capacity=4, chunk_steps=1), SPEC)
    replay.add(make_step(0, task_id=None))
    replay.add(make_step(1, task_id=1))
    batch = stored(replay)
    assert sorted(batch.task_ids.tolist()) == [-1, 1]
    assert batch.obs.dtype == torch.float32
    assert batch.actions.dtype == torch.int64
    assert batch.rewards.dtype == torch.float32
    assert batch.terminated.dtype == torch.bool
    assert batch.task_ids.dtype == torch.int64
    assert len(batch) == 2


def test_uint8_observations_stay_uint8() -> None:
    spec = EnvSpec(gym.spaces.Box(0, 255, (2, 2), np.uint8), gym.spaces.Discrete(2), 1, True)
    replay = FIFOReplay(FIFOReplay.Config(capacity=4, chunk_steps=2), spec)
    frame = np.array([[0, 255], [7, 8]], np.uint8)
    replay.add(Step(frame, 1, 0.0, frame + 1, False, False, None, 0))
    batch = replay.sample(1)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8
    assert batch.obs[0].tolist() == frame.tolist()
    assert batch.next_obs[0].tolist() == (frame + 1).tolist()


def test_sampling_is_uniform_over_stored_transitions_only() -> None:
    replay = make_replay(capacity=10, n=4)
    rewards = replay.sample(4000).rewards.numpy()
    values, counts = np.unique(rewards, return_counts=True)
    assert values.tolist() == [0.0, 1.0, 2.0, 3.0]  # empty slots are never drawn
    # 1000 expected per transition; binomial sd ~27, so 900..1100 is > 3.5 sd either side.
    assert counts.min() > 900 and counts.max() < 1100


def test_empty_replay_refuses_to_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        make_replay(capacity=4, n=0).sample(2)


def test_same_seed_same_samples_different_seed_different() -> None:
    a, b, c = make_replay(50, 40, seed=3), make_replay(50, 40, seed=3), make_replay(50, 40, seed=4)
    ra, rb, rc = (r.sample(32).rewards for r in (a, b, c))
    assert torch.equal(ra, rb)
    assert not torch.equal(ra, rc)


def test_on_run_start_seeds_from_the_run_seed() -> None:
    replay = make_replay(50, 40, seed=0)
    ctx = RunContext(agent=None, env_spec=SPEC, tasks=(), seed=9, logger=None)  # type: ignore[arg-type]
    replay.on_run_start(ctx)
    assert torch.equal(replay.sample(32).rewards, make_replay(50, 40, seed=9).sample(32).rewards)


def test_sampler_stream_differs_from_a_plain_seed() -> None:
    # The agent seeds its own generator with the run seed; the replay must not share it.
    replay = make_replay(1000, 10, seed=5)
    plain = np.random.default_rng(5).integers(0, 1000, 16)
    assert not np.array_equal(replay.buffer.sampler.rng.integers(0, 1000, 16), plain)


def test_state_dict_round_trip_gives_identical_future() -> None:
    source = make_replay(capacity=8, n=11, seed=1, chunk_steps=2)
    source.sample(5)  # advance the sampler so its state is not the seeded start
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    restored = FIFOReplay(FIFOReplay.Config(capacity=8, chunk_steps=2), SPEC)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored) == len(source)
    for i in range(11, 14):  # the next writes land in the same slots
        source.add(make_step(i))
        restored.add(make_step(i))
    for _ in range(3):
        a, b = source.sample(16), restored.sample(16)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)


def test_load_refuses_another_capacity() -> None:
    # (8 chunks + 1 chunk being filled) x 2 rows vs (4 + 1) x 2.
    state = make_replay(capacity=8, n=3).state_dict()
    with pytest.raises(ValueError, match=r"float32\[18, 2\], this storage holds float32\[10, 2\]"):
        FIFOReplay(FIFOReplay.Config(capacity=4, chunk_steps=1), SPEC).load_state_dict(state)


def test_is_a_batch_source_with_replay_role() -> None:
    replay = make_replay(4, 1)
    assert isinstance(replay, BatchSource)
    assert FIFOReplay.role == "replay"


def test_rejects_spaces_without_a_fixed_layout() -> None:
    spec = EnvSpec(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2), 1, True)
    with pytest.raises(ValueError, match="observation space"):
        FIFOReplay(FIFOReplay.Config(), spec)


@pytest.mark.parametrize("option", ["capacity", "chunk_steps", "max_envs"])
def test_config_rejects_non_positive_sizes(option: str) -> None:
    with pytest.raises(ValueError):
        FIFOReplay.Config(**{option: 0})
