"""Replay throughput and memory: every built-in replay beside a plain numpy ring buffer.

For CartPole-sized (4 float32) and Atari-sized (4x84x84 uint8) observations, each replay
and a plain preallocated numpy ring buffer (obs and next_obs arrays, no chunks) are
measured in the same run:

- add, single: env steps/s of ``add(step)``, on a fresh instance (the first fill, which
  pays for mapping fresh memory: it varies ~10x between runs, DESIGN.md section 7) and
  then for as many steps again once full (steady state, evicting);
- add, batched: the same for ``add_batch`` of 256 consecutive steps;
- sample: microseconds per ``sample(256)`` once full, timed in alternating blocks with the
  ring buffer's, and the median ratio of the two over the blocks ("vs ring"); for a replay
  whose rule is not uniform (Continual-Dreamer's recency bias) also against a ring that
  draws its rows by the same rule ("vs rule ring"), see below;
- bytes per transition: every preallocated byte (storage and end indexes) over the
  transitions held when full, and its ratio to the raw observation bytes (the ring's is
  ~2: it stores obs and next_obs).

Timings are CPU time of this process (``time.process_time``): on a shared 2-core machine
wall time swings with the other load; CPU time much less.

The step stream is episodes of fixed length (``--episode``) with a terminal last step; the
next observation of a step is the same array object as the following step's observation,
as the runner passes them. Both buffers gather with ``np.take`` (a little faster than
fancy indexing here) and draw rows as ``floor(u * n)``, so the sample ratio compares
layouts, not gather or random-draw primitives.

Sampling rules. FIFO, reservoir and task-balanced replay draw uniformly over their
transitions, as the ring does; WMAR draws uniformly within one of its two buffers, picked
by one more uniform. Continual-Dreamer draws each transition's chunk by the 50:50 recency
rule (three uniforms and a rank transform per transition) before a uniform position in it:
work of the rule, which a ring buffer implementing it pays too. Its "rule ring" is the same
ring drawing rows by that rule over blocks of ``chunk_steps`` rows in age order, with the
same rank function (:func:`~l2rl.components.replay.samplers.recency_ranks`) and one
generator call per minibatch, as the replay; for the other replays the rule ring is the
plain ring. The difference between the two rings is the rule's own cost, printed as the
rule ring's row.

Targets: sampling within 10% of a numpy ring buffer that draws by the same rule ("vs rule
ring" <= 1.10); bytes per stored image transition at most 1.1x the raw observation bytes.
Timings use one torch thread.

Usage::

    python benchmarks/replay.py --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch

from l2rl.components.replay.buffer import StepBatch
from l2rl.components.replay.component import ChunkReplay
from l2rl.components.replay.continual_dreamer import ContinualDreamerReplay
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.replay.reservoir import ReservoirReplay
from l2rl.components.replay.samplers import recency_ranks
from l2rl.components.replay.task_balanced import TaskBalancedReplay
from l2rl.components.replay.wmar import WMARReplay
from l2rl.types import EnvSpec, Step, TransitionBatch

BATCH = 256
ADD_BATCH = 256
SAMPLE_TARGET = 1.10
BYTES_TARGET = 1.10
REPLAYS: dict[str, type[ChunkReplay]] = {
    "fifo": FIFOReplay,
    "reservoir": ReservoirReplay,
    "task-balanced": TaskBalancedReplay,
    "wmar": WMARReplay,
    "continual-dreamer": ContinualDreamerReplay,
}


@dataclass(frozen=True)
class Size:
    """An observation layout and the capacity it is measured at."""

    name: str
    shape: tuple[int, ...]
    dtype: type
    capacity: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one raw observation."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def spec(self) -> EnvSpec:
        """A one-task spec with this observation space and 6 discrete actions."""
        return EnvSpec(
            gym.spaces.Box(0, 255, self.shape, self.dtype), gym.spaces.Discrete(6), 1, True
        )


class Buffer(Protocol):
    """What is measured: a replay or the ring buffer."""

    def add(self, step: Step) -> None: ...
    def add_batch(self, steps: StepBatch) -> None: ...
    def sample(self, batch_size: int) -> TransitionBatch: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Recency:
    """Continual-Dreamer's sampling rule for a ring: blocks of ``block`` rows by age."""

    block: int
    recent_fraction: float


class RingBuffer:
    """The baseline: preallocated numpy arrays, obs and next_obs each stored, FIFO by row.

    Rows are drawn uniformly, or by Continual-Dreamer's recency rule with ``recency``.
    """

    def __init__(
        self,
        capacity: int,
        shape: tuple[int, ...],
        dtype: type,
        seed: int = 0,
        recency: Recency | None = None,
    ) -> None:
        self.capacity = capacity
        self.recency = recency
        self.obs: np.ndarray = np.zeros((capacity, *shape), dtype)
        self.next_obs: np.ndarray = np.zeros((capacity, *shape), dtype)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.bool_)
        self.task_ids = np.zeros(capacity, np.int64)
        self.cursor = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        """Bytes of every array."""
        arrays = (
            self.obs,
            self.next_obs,
            self.actions,
            self.rewards,
            self.terminated,
            self.task_ids,
        )
        return sum(a.nbytes for a in arrays)

    def __len__(self) -> int:
        return self.size

    def add(self, step: Step) -> None:
        """Write one transition at the cursor."""
        i = self.cursor
        self.obs[i] = step.obs
        self.next_obs[i] = step.next_obs
        self.actions[i] = step.action
        self.rewards[i] = step.reward
        self.terminated[i] = step.terminated
        self.task_ids[i] = -1 if step.task_id is None else step.task_id
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_batch(self, steps: StepBatch) -> None:
        """Write consecutive transitions with slice assignments, wrapping at the end."""
        n, start = len(steps), self.cursor
        first = min(n, self.capacity - start)
        for lo, hi, at in ((0, first, start), (first, n, 0)):
            if hi > lo:
                rows = slice(at, at + hi - lo)
                self.obs[rows] = steps.obs[lo:hi]
                self.next_obs[rows] = steps.next_obs[lo:hi]
                self.actions[rows] = steps.actions[lo:hi]
                self.rewards[rows] = steps.rewards[lo:hi]
                self.terminated[rows] = steps.terminated[lo:hi]
                self.task_ids[rows] = -1 if steps.task_id is None else steps.task_id
        self.cursor = (start + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> TransitionBatch:
        """Rows with replacement: uniform, or by the recency rule.

        Uniform rows are drawn as ``floor(u * size)`` like the replays' samplers (twice as
        fast as ``Generator.integers`` for 256 draws), so the ratio measures layouts, not
        the random-draw primitive.
        """
        if self.recency is None:
            rows = (self.rng.random(batch_size) * self.size).astype(np.int64)
        else:
            rows = self._recency_rows(batch_size, self.recency)
        return TransitionBatch(
            obs=torch.from_numpy(self.obs.take(rows, axis=0)),
            actions=torch.from_numpy(self.actions.take(rows)),
            rewards=torch.from_numpy(self.rewards.take(rows)),
            next_obs=torch.from_numpy(self.next_obs.take(rows, axis=0)),
            terminated=torch.from_numpy(self.terminated.take(rows)),
            task_ids=torch.from_numpy(self.task_ids.take(rows)),
        )

    def _recency_rows(self, batch_size: int, rule: Recency) -> np.ndarray:
        """A block of ``rule.block`` rows by age (0 = the oldest rows) drawn by
        :func:`recency_ranks`, then a uniform row in it; one generator call, as the replay.

        The newest block holds the rows left over; when there are none (every block is
        full, as in the benchmark) the ring skips clipping the blocks' sizes.
        """
        u = self.rng.random((4, batch_size))
        blocks = -(-self.size // rule.block)
        first = recency_ranks(u, blocks, rule.recent_fraction) * rule.block
        if self.size % rule.block:
            sizes: np.ndarray | int = np.minimum(self.size - first, rule.block)
        else:
            sizes = rule.block
        ages = first + (u[3] * sizes).astype(np.int64)
        rows: np.ndarray = (ages + (self.cursor - self.size)) % self.capacity
        return rows


class StepStream:
    """Episodes of ``episode`` steps over a pool of distinct frames, built once.

    The frames cycle through a pool (64 for images, to bound memory; the copies cost the
    same whatever the pixels), and each step's ``next_obs`` is the next step's ``obs``
    object unless the episode ended.
    """

    def __init__(self, size: Size, steps: int, episode: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        pool = 64 if size.frame_bytes > 1024 else steps + steps // episode + 1
        frames: list[np.ndarray] = [
            rng.integers(0, 255, size.shape).astype(size.dtype) for _ in range(pool)
        ]
        self.steps: list[Step] = []
        k = 0
        for t in range(steps):
            last = (t + 1) % episode == 0
            obs, next_obs = frames[k % pool], frames[(k + 1) % pool]
            self.steps.append(Step(obs, t % 6, 1.0, next_obs, last, False, 0, t))
            k += 2 if last else 1  # after a terminal step, a reset frame starts the next

    def batches(self, size: int) -> Iterator[StepBatch]:
        """The same steps as arrays, ``size`` at a time."""
        for lo in range(0, len(self.steps), size):
            yield StepBatch.from_steps(self.steps[lo : lo + size])


PLAIN_RING = "numpy ring"
RECENCY_RING = "ring (recency)"


def rule_ring(name: str) -> str:
    """The ring that draws rows by ``name``'s rule (see the module docstring)."""
    return RECENCY_RING if name == "continual-dreamer" else PLAIN_RING


def make(name: str, size: Size) -> tuple[Buffer, float]:
    """A fresh buffer and its preallocated bytes per transition it holds when full.

    For a replay, the transitions its complete chunks hold when every buffer is full
    (``chunk_steps`` each; WMAR's two buffers counted separately, as a chunk both hold
    is the exception); each episode start costs one more frame on top.
    """
    if name in (PLAIN_RING, RECENCY_RING):
        recency = None
        if name == RECENCY_RING:
            defaults = ContinualDreamerReplay.Config()
            recency = Recency(defaults.chunk_steps, defaults.recent_fraction)
        ring = RingBuffer(size.capacity, size.shape, size.dtype, recency=recency)
        return ring, ring.nbytes / size.capacity
    cls = REPLAYS[name]
    replay = cls(cls.Config(capacity=size.capacity), size.spec())
    buffer = replay.buffer
    held = sum(w.capacity for w in buffer.writers) * buffer.storage.chunk_steps
    return replay, buffer.nbytes / held


def add_rates(buffer: Buffer, stream: StepStream) -> tuple[float, float]:
    """Steps/s of single adds: the first pass (fresh memory), then a second (steady)."""
    rates = []
    for _ in range(2):
        start = time.process_time()
        for step in stream.steps:
            buffer.add(step)
        rates.append(len(stream.steps) / (time.process_time() - start))
    return rates[0], rates[1]


def batch_rates(buffer: Buffer, stream: StepStream) -> tuple[float, float]:
    """Steps/s of batched adds (batch building excluded): first pass, then steady."""
    rates = []
    for _ in range(2):
        spent = 0.0
        for steps in stream.batches(ADD_BATCH):
            start = time.process_time()
            buffer.add_batch(steps)
            spent += time.process_time() - start
        rates.append(len(stream.steps) / spent)
    return rates[0], rates[1]


def sample_times(
    buffer: Buffer, plain: Buffer, rule: Buffer, blocks: int, calls: int
) -> tuple[float, float, float]:
    """Median microseconds per sample(256), and median ratios to the plain ring and to the
    ring with ``buffer``'s rule (the same object when the rule is uniform), timed in
    alternating blocks."""
    baselines = [plain] if rule is plain else [plain, rule]
    mine: list[float] = []
    ratios: list[list[float]] = [[] for _ in baselines]
    for _ in range(blocks):
        spent = []
        for b in (*baselines, buffer):
            start = time.process_time()
            for _ in range(calls):
                b.sample(BATCH)
            spent.append((time.process_time() - start) / calls * 1e6)
        mine.append(spent[-1])
        for ratio, base in zip(ratios, spent[:-1], strict=True):
            ratio.append(spent[-1] / base)
    to_plain, to_rule = statistics.median(ratios[0]), statistics.median(ratios[-1])
    return statistics.median(mine), to_plain, to_rule


@dataclass
class Row:
    """One buffer's figures at one size (medians over repeats)."""

    add_first: float
    add_steady: float
    batch_first: float
    batch_steady: float
    sample_us: float
    sample_ratio: float
    rule_ratio: float
    bytes_per_transition: float


def measure(size: Size, names: list[str], repeats: int, episode: int, calls: int) -> dict[str, Row]:
    """Every figure for every buffer at ``size``."""
    stream = StepStream(size, size.capacity, episode)
    rings: dict[str, Buffer] = {}
    for ring_name in (PLAIN_RING, RECENCY_RING):
        rings[ring_name], _ = make(ring_name, size)
        for steps in stream.batches(ADD_BATCH):
            rings[ring_name].add_batch(steps)
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            buffer, _ = make(name, size)
            singles = add_rates(buffer, stream)
            del buffer
            gc.collect()
            buffer, per_transition = make(name, size)
            batched = batch_rates(buffer, stream)
            buffer.sample(BATCH)  # warm up once
            plain, rule = rings[PLAIN_RING], rings[rule_ring(name)]
            sampled = sample_times(buffer, plain, rule, blocks=15, calls=calls)
            results[name].append((*singles, *batched, *sampled, per_transition))
            del buffer
            gc.collect()
    return {
        name: Row(*(statistics.median(col) for col in zip(*runs, strict=True)))
        for name, runs in results.items()
    }


def report(size: Size, rows: dict[str, Row]) -> list[str]:
    """Print the table for ``size``; return the targets missed."""
    print(f"\n{size.name}: obs {size.shape} {np.dtype(size.dtype).name}, capacity {size.capacity}")
    head = (
        f"{'replay':<18}{'add 1st':>10}{'add':>10}{'batch 1st':>11}{'batch':>10}"
        f"{'sample us':>11}{'vs ring':>9}{'vs rule':>9}{'B/trans':>10}{'x obs':>7}"
    )
    print(head)
    print(f"{'':<18}{'(k steps/s)':>20}{'(k steps/s)':>21}{'ring':>29}")
    missed = []
    for name, row in rows.items():
        ratio_obs = row.bytes_per_transition / size.frame_bytes
        print(
            f"{name:<18}{row.add_first / 1e3:>10.1f}{row.add_steady / 1e3:>10.1f}"
            f"{row.batch_first / 1e3:>11.1f}{row.batch_steady / 1e3:>10.1f}"
            f"{row.sample_us:>11.1f}{row.sample_ratio:>9.2f}{row.rule_ratio:>9.2f}"
            f"{row.bytes_per_transition:>10.0f}{ratio_obs:>7.3f}"
        )
        if name in (PLAIN_RING, RECENCY_RING):
            continue
        if row.rule_ratio > SAMPLE_TARGET:
            missed.append(
                f"{size.name} {name}: sample {row.rule_ratio:.2f}x the {rule_ring(name)}'s"
            )
        if size.frame_bytes > 1024 and ratio_obs > BYTES_TARGET:
            missed.append(f"{size.name} {name}: {ratio_obs:.3f}x raw image bytes")
    return missed


def main(argv: list[str] | None = None) -> None:
    """Measure and print; the last lines say which targets were met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cartpole-capacity", type=int, default=100_000)
    parser.add_argument("--atari-capacity", type=int, default=16_384)
    parser.add_argument("--episode", type=int, default=200, help="steps per episode")
    parser.add_argument("--only", nargs="*", default=None, help="replays to measure")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [PLAIN_RING, RECENCY_RING, *(args.only or REPLAYS)]
    sizes = [
        (Size("CartPole-sized", (4,), np.float32, args.cartpole_capacity), 2000),
        (Size("Atari-sized", (4, 84, 84), np.uint8, args.atari_capacity), 40),
    ]
    missed: list[str] = []
    for size, calls in sizes:
        missed += report(size, measure(size, names, args.repeats, args.episode, calls))
    print()
    print(
        "targets: sample <= 1.10x a numpy ring drawing by the same rule, "
        "image bytes/transition <= 1.10x raw obs"
    )
    print("all met" if not missed else "missed:\n  " + "\n  ".join(missed))


if __name__ == "__main__":
    main()
