"""Runs that cannot or did not train say so; unfinished runs are named and kept out of
aggregates; resume cleans up after a kill and never shows a step twice; one writer per
experiment directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from rich.console import Console

from l2rl.builder import build_component, build_run
from l2rl.config import ConfigError, PluginRef, parse_config
from l2rl.dirlock import DirectoryLockedError, experiment_lock
from l2rl.experiment import resume_experiment, run_experiment
from l2rl.report import print_metrics
from l2rl.testing.runs import Interrupted, interrupted_at, tiny_run_config
from l2rl.types import EnvSpec, Step


def tiny(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return tiny_run_config(tmp_path / "runs", **changes)


@pytest.mark.parametrize("name", ["fifo", "reservoir", "wmar", "task-balanced"])
@pytest.mark.parametrize(("capacity", "chunk_steps"), [(50, 50), (100, 50), (64, 16), (30, 1)])
def test_max_transitions_bounds_what_a_replay_ever_holds(
    name: str, capacity: int, chunk_steps: int
) -> None:
    spec = EnvSpec(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), 2, True)
    options = {"capacity": capacity, "chunk_steps": chunk_steps}
    replay: Any = build_component(PluginRef(name=name, options=options), spec)
    obs = np.zeros(2, np.float32)
    most = 0
    for t in range(20 * (capacity + chunk_steps)):  # episodes long enough to reach the bound
        first = t % 500 == 0
        replay.add(Step(obs, 0, 0.0, obs, False, t % 500 == 499, t // 700 % 2, t, 0, first))
        most = max(most, len(replay))
    assert most <= replay.max_transitions
    assert most >= replay.max_transitions - chunk_steps  # and is not loose by a whole chunk


def test_a_replay_too_small_to_start_learning_fails_at_build(tmp_path: Path) -> None:
    # the case: capacity 50 (one chunk of 50 plus one being filled) never holds
    # the 100 transitions DQN waits for
    data = tiny(tmp_path, replay={"name": "fifo", "options": {"capacity": 50}})
    data["agent"]["options"]["learning_starts"] = 100
    with pytest.raises(ConfigError, match=r"learning_starts=100 .* at most 99"):
        build_run(parse_config(data), seed=0)
    data["agent"]["options"]["learning_starts"] = 99
    build_run(parse_config(data), seed=0)


def test_a_window_without_an_update_is_flagged_in_metrics_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny(tmp_path)
    data["agent"]["options"]["learning_starts"] = 250  # after the first 200-step window
    result = run_experiment(parse_config(data))
    metrics = json.loads((result.directory / "seed_0" / "metrics.json").read_text())
    assert metrics["windows_without_updates"] == [
        {"block": 0, "task": "base", "learners": ["agent"]}
    ]
    err = capsys.readouterr().err
    assert "seed 0: no optimiser step of learner 'agent' in window 0 (base)" in err
    windows = (result.directory / "seed_0" / "windows.jsonl").read_text().splitlines()
    updates = [json.loads(row)["updates"]["agent"] for row in windows]
    assert updates[0] == 0 and updates[1] > 0


def cut_short(tmp_path: Path, data: dict[str, Any]) -> Path:
    """Run ``data`` killed at the second window's first evaluation; the experiment dir."""
    with interrupted_at(300), pytest.raises(Interrupted):
        run_experiment(parse_config(data))
    (directory,) = sorted((tmp_path / "runs").iterdir(), key=os.path.getmtime)[-1:]
    return directory


def test_metrics_names_an_unfinished_seed_and_leaves_it_out_of_the_aggregate(
    tmp_path: Path,
) -> None:
    directory = cut_short(tmp_path, tiny(tmp_path))
    # a second, finished seed beside the cut one
    finished = run_experiment(parse_config(tiny(tmp_path, seeds=[1]))).directory
    (finished / "seed_1").rename(directory / "seed_1")
    console = Console(record=True, width=200)
    print_metrics(directory, console)
    text = console.export_text()
    assert "seed_0: incomplete: recorded up to step 300 of 400" in text
    assert f"l2rl resume {directory} finishes it" in text
    assert "1 finished seeds (left out, unfinished: seed_0)" in text


def test_resume_removes_leftover_temporaries_and_purges_tensorboard_steps(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    directory = cut_short(tmp_path, tiny(tmp_path))
    leftovers = [directory / ".summary.json.0123456789ab.tmp"]
    leftovers.append(directory / "seed_0" / ".checkpoint.pt.a1b2c3d4e5f6.tmp")
    for path in leftovers:
        path.write_text("half written")
    resume_experiment(directory)
    assert not any(path.exists() for path in leftovers)

    events = EventAccumulator(str(directory / "seed_0" / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("eval/base/score")]
    assert steps == sorted(set(steps)) == [0, 100, 200, 300, 400]


def test_a_second_writer_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    directory = cut_short(tmp_path, tiny(tmp_path))
    holder = f"process {os.getpid()} on "
    with experiment_lock(directory), pytest.raises(DirectoryLockedError, match=holder):
        resume_experiment(directory)
    resume_experiment(directory)  # released when the holder is done
    assert (directory / "seed_0" / "metrics.json").is_file()
