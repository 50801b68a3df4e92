"""End indexes: each buffer's transitions packed densely, kept exact as chunks come and go."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.components.replay.buffer import StepBatch
from l2rl.components.replay.component import ChunkReplay
from l2rl.components.replay.continual_dreamer import ContinualDreamerReplay
from l2rl.components.replay.end_index import EndIndex
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.replay.reservoir import ReservoirReplay
from l2rl.components.replay.task_balanced import TaskBalancedReplay
from l2rl.components.replay.wmar import WMARReplay
from l2rl.types import EnvSpec, Step

SPEC = EnvSpec(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Discrete(2), 3, True)


def test_remove_fills_holes_from_the_back_and_keeps_positions() -> None:
    index = EndIndex(20)
    index.add(np.array([10, 11, 12, 13]))
    index.add_one(5)
    index.add(np.array([7, 8]))
    assert index.held().tolist() == [10, 11, 12, 13, 5, 7, 8]
    # 11 and 8 leave: 8 was last (nothing moves for it), 7 fills 11's hole.
    index.remove(np.array([11, 8]))
    assert index.held().tolist() == [10, 7, 12, 13, 5]
    # Removing every row at the back moves nothing; removing the front moves the back in.
    index.remove(np.array([5, 13]))
    assert index.held().tolist() == [10, 7, 12]
    index.remove(np.array([10, 7]))
    assert index.held().tolist() == [12]
    index.add(np.array([1, 2]))
    index.remove(np.array([12]))  # the position map followed every move
    assert index.held().tolist() == [2, 1]


def test_rows_at_maps_uniforms_to_positions() -> None:
    index = EndIndex(10)
    index.add(np.array([9, 4, 6]))
    u = np.array([0.0, 0.33, 0.34, 0.99, np.nextafter(1.0, 0.0)])
    assert index.rows_at(u).tolist() == [9, 9, 4, 6, 6]


def test_state_round_trip_keeps_the_order_and_refuses_foreign_rows() -> None:
    index = EndIndex(10)
    index.add(np.array([3, 1, 2]))
    index.remove(np.array([3]))
    restored = EndIndex(10)
    restored.load_state_dict(index.state_dict())
    assert restored.held().tolist() == index.held().tolist() == [2, 1]
    restored.remove(np.array([2]))
    assert restored.held().tolist() == [1]
    with pytest.raises(ValueError, match="rows up to 12"):
        EndIndex(10).load_state_dict({"ends": torch.tensor([1, 12])})


def make(kind: str) -> ChunkReplay:
    """Small replays of every kind: chunks of 3 steps, a few chunks per buffer."""
    if kind == "fifo":
        return FIFOReplay(FIFOReplay.Config(capacity=12, chunk_steps=3, max_envs=2), SPEC)
    if kind == "reservoir":
        return ReservoirReplay(ReservoirReplay.Config(capacity=12, chunk_steps=3, max_envs=2), SPEC)
    if kind == "task-balanced":
        config = TaskBalancedReplay.Config(capacity=12, chunk_steps=3, max_envs=2)
        return TaskBalancedReplay(config, SPEC)
    if kind == "wmar":
        return WMARReplay(WMARReplay.Config(capacity=24, chunk_steps=3, max_envs=2), SPEC)
    config = ContinualDreamerReplay.Config(capacity=12, chunk_steps=3, max_envs=2)
    return ContinualDreamerReplay(config, SPEC)


KINDS = ["fifo", "reservoir", "task-balanced", "wmar", "continual-dreamer"]


def stream(seed: int, steps: int) -> list[Step]:
    """Two envs' steps interleaved: random episode lengths, endings, and task switches."""
    rng = np.random.default_rng(seed)
    out: list[Step] = []
    frame = [0, 10_000]
    open_obs: list[np.ndarray | None] = [None, None]
    task = 0
    for t in range(steps):
        if rng.random() < 0.02:
            task = (task + 1) % 3
        env = int(rng.integers(2))
        obs = open_obs[env]
        if obs is None or rng.random() < 0.05:  # a reset, sometimes without an end flag
            frame[env] += 1
            obs = np.array([frame[env]], np.float32)
        frame[env] += 1
        next_obs = np.array([frame[env]], np.float32)
        ended = rng.random() < 0.15
        terminated = ended and rng.random() < 0.5
        truncated = ended and not terminated
        out.append(Step(obs, t % 2, float(t), next_obs, terminated, truncated, task, t, env))
        open_obs[env] = None if ended else next_obs
    return out


def assert_indexes_match_the_chunks(replay: ChunkReplay) -> None:
    """Each index holds exactly the rows that end a transition in its buffer's chunks."""
    buffer = replay.buffer
    storage = buffer.storage
    for slots, index in zip(buffer.views(), buffer.ends, strict=True):
        rows = (slots[:, None] * storage.rows + np.arange(storage.rows)).ravel()
        assert sorted(index.held().tolist()) == sorted(rows[storage.valid[rows]].tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_every_index_holds_exactly_its_chunks_transitions_after_every_step(kind: str) -> None:
    replay = make(kind)
    for step in stream(seed=KINDS.index(kind), steps=400):
        replay.add(step)
        assert_indexes_match_the_chunks(replay)
    # Samples come only from the held transitions of the sampled buffer.
    rows = replay.buffer.sampler.transitions(replay.buffer, 500)
    assert replay.buffer.storage.valid[rows].all()


@pytest.mark.parametrize("kind", KINDS)
def test_batched_adds_keep_the_indexes_exact_too(kind: str) -> None:
    replay = make(kind)
    steps = [s for s in stream(seed=7, steps=600) if s.env_index == 0]
    rng = np.random.default_rng(0)
    start = 0
    while start < len(steps):
        # A batch holds one task's steps (as a runner's window would).
        stop = min(len(steps), start + int(rng.integers(1, 20)))
        while any(s.task_id != steps[start].task_id for s in steps[start:stop]):
            stop -= 1
        replay.add_batch(StepBatch.from_steps(steps[start:stop]))
        assert_indexes_match_the_chunks(replay)
        start = stop


@pytest.mark.parametrize("kind", KINDS)
def test_a_restored_replay_draws_the_same_rows(kind: str) -> None:
    steps = stream(seed=11, steps=300)
    source = make(kind)
    for step in steps[:200]:
        source.add(step)
    restored = make(kind)
    restored.load_state_dict(source.state_dict())
    for step in steps[200:]:
        source.add(step)
        restored.add(step)
        assert torch.equal(source.sample(16).rewards, restored.sample(16).rewards)


def test_load_refuses_an_index_that_does_not_match_its_chunks() -> None:
    source = make("fifo")
    for step in stream(seed=1, steps=50):
        source.add(step)
    state = source.state_dict()
    state["ends"][0]["ends"] = state["ends"][0]["ends"][1:]
    with pytest.raises(ValueError, match="end index 0 does not hold"):
        make("fifo").load_state_dict(state)
    del state["ends"]
    with pytest.raises(ValueError, match="no end indexes"):
        make("fifo").load_state_dict(state)
