"""``kill -9`` an ``l2rl run`` subprocess at several points (inside windows, between
checkpoints), then ``l2rl resume``: the records and metrics equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2rl.cli import main

CONFIG: dict[str, Any] = {
    "name": "killed",
    "seeds": [0],
    "scenario": {
        "name": "cartpole-variants",
        "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 50},
        "steps_per_task": 1500,
    },
    "agent": {"name": "dqn", "options": {"learning_starts": 64, "batch_size": 32}},
    "replay": {"name": "fifo", "options": {"capacity": 2000}},
    "evaluation": {"every": 250, "episodes": 2},
    "metrics": {"reference_runs": False},
    "checkpoint_every": 200,
    "progress": False,
    "torch_threads": 1,
}


def evaluation_rows(run_dir: Path) -> int:
    path = run_dir / "evals.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def kill_when(output: Path, config: Path, rows: int) -> Path:
    """Start ``l2rl run``, SIGKILL it once its seed has ``rows`` evaluation rows; its
    experiment directory."""
    process = subprocess.Popen(
        [sys.executable, "-m", "l2rl.cli", "run", str(config), f"output_dir={output}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            runs = list(output.glob("killed-*/seed_0"))
            if runs and evaluation_rows(runs[0]) >= rows:
                os.kill(process.pid, signal.SIGKILL)
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            raise AssertionError(f"no {rows} evaluation rows within the deadline")
    finally:
        process.wait()
    (directory,) = output.glob("killed-*")
    return directory


def test_killed_runs_resume_to_the_uninterrupted_records(tmp_path: Path) -> None:
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["run", str(config), f"output_dir={tmp_path / 'whole'}"]) == 0
    (whole,) = (tmp_path / "whole").glob("killed-*")
    expected = {name: (whole / "seed_0" / name).read_text() for name in ("evals.jsonl",)}
    expected_metrics = json.loads((whole / "seed_0" / "metrics.json").read_text())

    inside = []
    # Evaluations are rounds of 2 rows: kill in the first window (before or after its first
    # checkpoints) and twice in the second, mid-window.
    for point, rows in enumerate((3, 9, 15, 21)):
        directory = kill_when(tmp_path / f"cut-{point}", config, rows)
        assert not (directory / "seed_0" / "metrics.json").exists()
        assert main(["resume", str(directory), "--no-progress"]) == 0
        for name, text in expected.items():
            assert (directory / "seed_0" / name).read_text() == text, (point, name)
        metrics = json.loads((directory / "seed_0" / "metrics.json").read_text())
        assert metrics == expected_metrics, point
        resumes = (directory / "seed_0" / "resumes.jsonl").read_text().splitlines()
        assert all(json.loads(row)["bitwise_comparable"] for row in resumes)
        inside += [json.loads(row)["inside_window"] for row in resumes]
    assert any(inside)  # the mid-window checkpoints were resumed from


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the subprocesses write nothing outside tmp_path
