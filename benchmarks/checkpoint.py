"""What a checkpoint costs: bytes and seconds for a full image replay, against raw arrays.

A DQN agent on Atari-sized observations (4x84x84 uint8) with a FIFO replay holding
``--transitions`` transitions (default 100 000, about 2.8 GB of frames) is checkpointed as
the runner does inside a window (:func:`l2rl.checkpoint.write_checkpoint`: agent, replay,
counters, RNG state and the window's state with its pickled envs, written atomically and
fsynced). Beside it, in the same run, the baseline: the replay's storage arrays alone
written with ``numpy.save`` to one file and fsynced, the least any checkpoint of that
replay must write. Printed per repeat: bytes on disk, wall seconds, and the ratio of both
to the baseline; the median ratio at the end.

Target: a checkpoint within 1.2x of the raw arrays' bytes and seconds (the replay is the
checkpoint; nothing copies it on the way).

Usage::

    python benchmarks/checkpoint.py --transitions 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2rl.builder import build_agent, build_component, services_from
from l2rl.checkpoint import WindowState, write_checkpoint
from l2rl.config import PluginRef
from l2rl.core import RunContext
from l2rl.logging.recorder import Recorder
from l2rl.types import EnvSpec, ReturnRange, Step, TaskSpec

SHAPE = (4, 84, 84)


def filled_replay(transitions: int) -> tuple[Any, Any, EnvSpec]:
    """A FIFO replay holding ``transitions`` image transitions, and a DQN agent on it."""
    spec = EnvSpec(
        gym.spaces.Box(0, 255, SHAPE, np.uint8), gym.spaces.Discrete(6), 1, task_aware=False
    )
    options = {"capacity": transitions, "chunk_steps": 100}
    replay: Any = build_component(PluginRef(name="fifo", options=options), spec)
    agent = build_agent(
        PluginRef(name="dqn", options={"learning_starts": 100}),
        spec,
        services_from([replay]),
        seed=0,
    )
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(64, *SHAPE), dtype=np.uint8)  # cycled: cheap to make
    for t in range(transitions + 100):
        obs, next_obs = frames[t % 64], frames[(t + 1) % 64]
        end = t % 1000 == 999
        replay.add(Step(obs, t % 6, 0.0, next_obs, False, end, None, t + 1, 0, t % 1000 == 0))
    return replay, agent, spec


def raw_arrays_save(replay: Any, path: Path) -> None:
    """The baseline: every storage array in one ``.npy`` stream, fsynced."""
    storage = replay.buffer.storage
    with path.open("wb") as handle:
        for name in ("obs", "actions", "rewards", "terminated", "is_first", "valid"):
            np.save(handle, getattr(storage, name))
        handle.flush()
        os.fsync(handle.fileno())


def checkpoint_save(replay: Any, agent: Any, spec: EnvSpec, path: Path) -> None:
    """The runner's checkpoint inside a window, with one CartPole env in its state."""
    task = TaskSpec("t", lambda: gym.make("CartPole-v1"), ReturnRange(0.0, 500.0))
    ctx = RunContext(agent, spec, (task,), 0, Recorder())
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    window = WindowState.capture(10, [obs], [0.0], [False], [env], {"agent": 0}, True)
    write_checkpoint(
        path,
        block=0,
        schedule=[(0, 10**6)],
        ctx=ctx,
        episodes=0,
        agent=agent,
        components=[replay],
        window=window,
    )


def timed(function: Any, *args: Any) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    replay, agent, spec = filled_replay(args.transitions)
    print(f"replay: {len(replay)} transitions of {SHAPE} uint8")
    byte_ratios, time_ratios = [], []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        for repeat in range(args.repeats):
            raw, ckpt = Path(folder) / "raw.npy", Path(folder) / "checkpoint.pt"
            raw_seconds = timed(raw_arrays_save, replay, raw)
            ckpt_seconds = timed(checkpoint_save, replay, agent, spec, ckpt)
            raw_bytes, ckpt_bytes = raw.stat().st_size, ckpt.stat().st_size
            byte_ratios.append(ckpt_bytes / raw_bytes)
            time_ratios.append(ckpt_seconds / raw_seconds)
            print(
                f"repeat {repeat}: checkpoint {ckpt_bytes / 2**20:.0f} MiB in "
                f"{ckpt_seconds:.2f} s; raw arrays {raw_bytes / 2**20:.0f} MiB in "
                f"{raw_seconds:.2f} s; ratios: bytes {byte_ratios[-1]:.3f}, "
                f"seconds {time_ratios[-1]:.2f}"
            )
            raw.unlink()
            ckpt.unlink()
    print(
        f"median ratio vs raw arrays: bytes {statistics.median(byte_ratios):.3f}, "
        f"seconds {statistics.median(time_ratios):.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
