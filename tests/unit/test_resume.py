"""A run cut short resumes from its last window-end checkpoint to the very same result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from l2rl.config import RunConfig, parse_config
from l2rl.experiment import metrics_of_run, resume_experiment, run_experiment
from l2rl.runner import Runner


class Crash(Exception):
    """Stands in for a killed process."""


def tiny(tmp_path: Path) -> RunConfig:
    data: dict[str, Any] = {
        "name": "tiny",
        "seeds": [0],
        "scenario": {
            "name": "cartpole-variants",
            "options": {
                "variants": ["base", "swap-actions", "permute-obs"],
                "max_episode_steps": 40,
            },
            "steps_per_task": 300,
        },
        "agent": {"name": "dqn", "options": {"learning_starts": 50, "batch_size": 16}},
        "replay": {"name": "fifo", "options": {"capacity": 400}},
        "evaluation": {"every": 100, "episodes": 2},
        "metrics": {"reference_runs": False},
        "output_dir": str(tmp_path / "runs"),
        "progress": False,
    }
    return parse_config(data)


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]


def test_resumed_run_equals_the_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = run_experiment(tiny(tmp_path)).directory / "seed_0"

    # The same experiment, killed in the second window after one of its evaluations.
    original = Runner._evaluate
    calls = {"n": 0}

    def crashing(self: Runner, block: int, trained_task: int, block_end: bool) -> None:
        original(self, block, trained_task, block_end)
        if block == 1:
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash

    monkeypatch.setattr(Runner, "_evaluate", crashing)
    with pytest.raises(Crash):
        run_experiment(tiny(tmp_path))
    monkeypatch.undo()
    (cut,) = [d for d in (tmp_path / "runs").glob("tiny-*") if d != whole.parent]
    assert not (cut / "seed_0" / "metrics.json").exists()
    assert max(r["global_step"] for r in rows(cut / "seed_0")) == 500  # past the checkpoint

    result = resume_experiment(cut)
    assert rows(cut / "seed_0") == rows(whole)  # partial-window rows replaced, not doubled
    assert result.per_seed[0].to_dict() == metrics_of_run(whole).to_dict()
    assert (cut / "summary.json").is_file()


def test_a_crash_before_any_checkpoint_starts_the_seed_over(tmp_path: Path) -> None:
    directory = run_experiment(tiny(tmp_path)).directory
    expected = rows(directory / "seed_0")
    (directory / "seed_0" / "checkpoint.pt").unlink()
    (directory / "seed_0" / "metrics.json").unlink()
    shutil.rmtree(directory / "seed_0" / "tb")
    resume_experiment(directory)
    assert rows(directory / "seed_0") == expected
