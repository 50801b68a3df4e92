"""Chunked storage, shared by every replay: frames stored once, boundaries respected."""

from __future__ import annotations

import dataclasses
import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.components.replay.buffer import StepBatch
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.testing.conformance import state_differences
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(
    observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
    action_space=gym.spaces.Discrete(3),
    num_tasks=3,
    task_aware=True,
)

ENDINGS = ("terminated", "truncated", "cut")
"""How an episode ends: a terminal state, a time limit, or the runner resetting the env
without either flag (what happens at a window boundary)."""


def episode(number: int, length: int, ending: str, task: int | None = 0) -> list[Step]:
    """One episode: observation ``[t, number]`` at its step ``t``, reward ``t``."""
    steps = []
    for t in range(length):
        last = t == length - 1
        steps.append(
            Step(
                obs=np.array([t, number], np.float32),
                action=(t + number) % 3,
                reward=float(t),
                next_obs=np.array([t + 1, number], np.float32),
                terminated=last and ending == "terminated",
                truncated=last and ending == "truncated",
                task_id=task,
                global_step=0,
                first=t == 0,
            )
        )
    return steps


def random_episodes(seed: int, count: int, max_length: int = 7) -> list[Step]:
    rng = np.random.default_rng(seed)
    steps: list[Step] = []
    for number in range(count):
        ending = ENDINGS[int(rng.integers(3))]
        steps += episode(number, int(rng.integers(1, max_length + 1)), ending)
    return steps


def fifo(
    capacity: int = 1000, chunk_steps: int = 5, spec: EnvSpec = SPEC, max_envs: int | None = 1
) -> FIFOReplay:
    """A FIFO replay: the storage layout is the same for every replay."""
    config = FIFOReplay.Config(capacity=capacity, chunk_steps=chunk_steps, max_envs=max_envs)
    return FIFOReplay(config, spec)


def test_each_frame_is_stored_once_except_one_per_chunk() -> None:
    # One 100-step episode in chunks of 10 steps: 101 frames, and every chunk boundary
    # frame is stored twice (the end of one chunk, the start of the next).
    replay = fifo(chunk_steps=10)
    for step in episode(0, 100, "cut"):
        replay.add(step)
    storage = replay.buffer.storage
    rows = np.concatenate(
        [np.arange(s * storage.rows, s * storage.rows + f) for s, f in enumerate(storage.fill)]
    )
    frames, copies = np.unique(storage.obs[rows, 0], return_counts=True)
    assert frames.tolist() == list(range(101))
    assert np.flatnonzero(copies == 2).tolist() == list(range(10, 101, 10))
    assert copies.max() == 2
    assert len(replay) == 100


def test_image_storage_costs_at_most_1_1_times_the_raw_frames() -> None:
    spec = EnvSpec(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), 1, True)
    replay = fifo(capacity=5000, chunk_steps=50, spec=spec)
    frame_bytes = 4 * 84 * 84
    # Every preallocated byte (frames, actions, rewards, flags) per transition of capacity;
    # a store of obs and next_obs would be 2.0.
    ratio = replay.buffer.storage.nbytes / (5000 * frame_bytes)
    assert 1.0 < ratio <= 1.1


def test_transitions_are_exactly_the_steps_and_never_cross_episodes() -> None:
    steps = random_episodes(seed=0, count=60)
    replay = fifo()
    for step in steps:
        replay.add(step)
    storage = replay.buffer.storage
    batch = storage.transitions_at(np.flatnonzero(storage.valid))
    # The stored transitions are the steps added, each once, with their own next_obs.
    got = sorted(
        zip(batch.obs.tolist(), batch.next_obs.tolist(), batch.rewards.tolist(), strict=True)
    )
    want = sorted((s.obs.tolist(), s.next_obs.tolist(), s.reward) for s in steps)
    assert got == want
    assert batch.terminated.sum() == sum(s.terminated for s in steps)
    sample = replay.sample(2000)
    assert torch.equal(sample.next_obs[:, 1], sample.obs[:, 1])  # same episode
    assert torch.equal(sample.next_obs[:, 0], sample.obs[:, 0] + 1)  # the next step


def test_a_first_step_without_end_flags_starts_a_new_episode() -> None:
    replay = fifo()
    for step in episode(0, 3, "cut") + episode(1, 2, "cut"):
        replay.add(step)
    storage = replay.buffer.storage
    assert storage.is_first[:7].tolist() == [True, False, False, False, True, False, False]
    assert storage.obs[4].tolist() == [0.0, 1.0]  # episode 1's reset frame, not [3, 0]
    assert len(replay) == 5


def test_task_change_ends_the_chunk() -> None:
    # The observation stream goes on across the task change, but no transition or
    # chunk mixes the tasks.
    steps = episode(0, 4, "cut", task=0) + episode(0, 8, "cut", task=1)[4:]
    replay = fifo(chunk_steps=20)
    for step in steps:
        replay.add(step)
    storage = replay.buffer.storage
    assert storage.fill[:2].tolist() == [5, 5]  # first row + 4 steps in each chunk
    assert storage.task[:2].tolist() == [0, 1]
    assert storage.is_first[storage.rows] and storage.obs[storage.rows].tolist() == [4.0, 0.0]
    batch = replay.sample(500)
    assert torch.equal(batch.task_ids == 1, batch.obs[:, 0] >= 4)


def test_sequences_never_cross_chunks_and_flag_episode_starts() -> None:
    replay = fifo(chunk_steps=6)
    for step in random_episodes(seed=1, count=80, max_length=9):
        replay.add(step)
    batch = replay.sample_sequences(1000, 5)
    assert batch.obs.shape == (1000, 5, 2) and batch.actions.shape == (1000, 5)
    step_on = (batch.obs[:, 1:, 0] == batch.obs[:, :-1, 0] + 1) & (
        batch.obs[:, 1:, 1] == batch.obs[:, :-1, 1]
    )
    first = batch.is_first[:, 1:]
    # Each frame follows the previous one in its episode, or starts an episode.
    assert torch.all(step_on ^ first)
    assert torch.all(batch.obs[:, :, 0][batch.is_first] == 0)
    assert torch.all(batch.actions[batch.is_first] == 0)
    assert torch.all(batch.rewards[batch.is_first] == 0)
    # Not first: the action and reward that led here (episode number + step - 1, step - 1).
    later = ~batch.is_first
    assert torch.equal(batch.rewards[later], batch.obs[:, :, 0][later] - 1)


def test_sequence_lengths_are_checked() -> None:
    replay = fifo(chunk_steps=4)
    for step in episode(0, 2, "cut"):
        replay.add(step)
    with pytest.raises(ValueError, match=r"in \[1, 5\]"):
        replay.sample_sequences(2, 6)
    with pytest.raises(ValueError, match="no stored chunk holds 4"):
        replay.sample_sequences(2, 4)
    assert replay.sample_sequences(2, 3).obs[:, :, 0].tolist() == [[0, 1, 2]] * 2


def test_the_chunk_being_filled_is_sampled() -> None:
    replay = fifo(chunk_steps=50)
    for step in episode(0, 3, "cut"):
        replay.add(step)
    assert sorted(set(replay.sample(200).rewards.tolist())) == [0.0, 1.0, 2.0]


def test_add_batch_stores_what_add_stores() -> None:
    steps = random_episodes(seed=2, count=50)
    one, many = fifo(capacity=60, chunk_steps=4), fifo(capacity=60, chunk_steps=4)
    for step in steps:
        one.add(step)
    cuts = np.sort(np.random.default_rng(0).choice(np.arange(1, len(steps)), 12, replace=False))
    for piece in np.split(np.arange(len(steps)), cuts):
        many.add_batch(StepBatch.from_steps([steps[i] for i in piece]))
    assert state_differences(one.state_dict(), many.state_dict()) == []


def test_a_step_batch_holds_one_env_and_one_task() -> None:
    steps = episode(0, 3, "terminated", task=1)
    batch = StepBatch.from_steps(steps)
    assert batch.task_id == 1 and batch.env_index == 0 and len(batch) == 3
    assert batch.terminated.tolist() == [False, False, True]
    assert batch.obs[:, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="at least one"):
        StepBatch.from_steps([])
    with pytest.raises(ValueError, match="one env and one task"):
        StepBatch.from_steps([*steps, *episode(1, 2, "cut", task=2)])
    with pytest.raises(ValueError, match="one env and one task"):
        StepBatch.from_steps([steps[0], dataclasses.replace(steps[1], env_index=1)])


def test_parallel_envs_fill_their_own_chunks() -> None:
    replay = fifo(chunk_steps=3, max_envs=2)
    a, b = episode(0, 10, "cut"), episode(1, 10, "cut")
    for sa, sb in zip(a, b, strict=True):
        replay.add(sa)
        replay.add(Step(**{**sb.__dict__, "env_index": 1}))
    assert len(replay) == 20
    batch = replay.sample(1000)
    assert torch.equal(batch.next_obs[:, 1], batch.obs[:, 1])
    assert torch.equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)
    with pytest.raises(ValueError, match=r"max_envs=2.*env_index 2"):
        replay.add(Step(**{**a[0].__dict__, "env_index": 2}))


def test_the_runs_num_envs_sizes_the_replay_by_default() -> None:
    replay = fifo(chunk_steps=3, spec=dataclasses.replace(SPEC, num_envs=3), max_envs=None)
    for index in range(3):
        replay.add(Step(**{**episode(0, 2, "cut")[0].__dict__, "env_index": index}))
    with pytest.raises(ValueError, match=r"max_envs=3.*env_index 3"):
        replay.add(Step(**{**episode(0, 2, "cut")[0].__dict__, "env_index": 3}))


def test_continuous_actions_keep_their_shape_and_dtype() -> None:
    spec = EnvSpec(SPEC.observation_space, gym.spaces.Box(-1, 1, (2,), np.float32), 1, True)
    replay = fifo(spec=spec)
    for t in range(4):
        obs = np.array([t, 0], np.float32)
        replay.add(
            Step(
                obs,
                np.array([t, -t], np.float32),
                1.0,
                obs + np.array([1, 0], np.float32),
                False,
                False,
                0,
                t,
            )
        )
    batch = replay.sample(16)
    assert batch.actions.dtype == torch.float32 and batch.actions.shape == (16, 2)
    assert torch.equal(batch.actions[:, 0], batch.obs[:, 0])
    sequences = replay.sample_sequences(4, 5)
    assert sequences.actions[:, 0].tolist() == [[0.0, 0.0]] * 4  # the first row's


def test_state_round_trip_mid_episode_continues_the_same_way() -> None:
    steps = episode(0, 30, "cut")
    source = fifo(capacity=20, chunk_steps=4)
    for step in steps[:13]:  # 13 steps: the chunk being filled starts with a carried frame
        source.add(step)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    restored = fifo(capacity=20, chunk_steps=4)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for step in steps[13:]:
        source.add(step)
        restored.add(step)
    assert state_differences(source.state_dict(), restored.state_dict()) == []
    assert torch.equal(source.sample(8).obs, restored.sample(8).obs)


def test_sequences_are_uniform_over_the_stored_runs() -> None:
    # Six steps in chunks of 4: frames 0..4 fill the first chunk, the second holds the
    # carried frame 4 and frames 5, 6. Runs of 3 frames start at 0, 1, 2 and 4.
    replay = fifo(chunk_steps=4)
    for step in episode(0, 6, "cut"):
        replay.add(step)
    starts = replay.sample_sequences(8000, 3).obs[:, 0, 0]
    values, counts = np.unique(starts.numpy(), return_counts=True)
    assert values.tolist() == [0.0, 1.0, 2.0, 4.0]
    # 2000 expected each; binomial sd ~39: within 4 sd.
    assert counts.min() > 1840 and counts.max() < 2160


def test_end_rows_index_each_slots_transitions_in_order() -> None:
    # Samplers take a slot's j-th transition from end_rows instead of rejecting rows, so
    # it must list exactly each slot's valid rows, in order: after single adds, batched
    # adds with episode starts inside, evictions that reuse slots, and a load (which
    # rebuilds it, as it is not saved).
    steps = random_episodes(seed=3, count=40)
    single, batched = fifo(capacity=30, chunk_steps=4), fifo(capacity=30, chunk_steps=4)
    for step in steps:
        single.add(step)
    for piece in np.array_split(np.arange(len(steps)), 9):
        batched.add_batch(StepBatch.from_steps([steps[i] for i in piece]))
    restored = fifo(capacity=30, chunk_steps=4)
    restored.load_state_dict(single.state_dict())
    assert single.buffer.slots_used < len(steps) // 4  # slots were reused
    for replay in (single, batched, restored):
        storage = replay.buffer.storage
        for slot in range(storage.num_slots):
            first = slot * storage.rows
            ends = first + np.flatnonzero(storage.valid[first : first + storage.rows])
            indexed = storage.end_rows[first : first + storage.count[slot]]
            assert indexed.tolist() == ends.tolist()
