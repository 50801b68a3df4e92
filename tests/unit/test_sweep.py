"""Sweeps: shared references run once, every seed runs, an interrupted sweep finishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from l2rl.config import RunConfig, parse_config
from l2rl.sweep import SweepEvent, run_sweep


def tiny(tmp_path: Path, **changes: Any) -> RunConfig:
    data: dict[str, Any] = {
        "name": "tiny",
        "seeds": [0, 1],
        "scenario": {
            "name": "cartpole-variants",
            "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 30},
            "steps_per_task": 120,
        },
        "agent": {"name": "dqn", "options": {"learning_starts": 32, "batch_size": 16}},
        "replay": {"name": "fifo", "options": {"capacity": 500}},
        "evaluation": {"every": 60, "episodes": 1},
        "metrics": {"reference_replay": {"name": "fifo", "options": {"capacity": 500}}},
        "output_dir": str(tmp_path / "runs"),
    }
    return parse_config(data | changes)


def test_sweep_shares_references_runs_every_seed_and_resumes(tmp_path: Path) -> None:
    experiments = {
        tmp_path / "runs" / "a": tiny(tmp_path),
        # another method on the same scenario: different replay, same shared reference
        tmp_path / "runs" / "b": tiny(
            tmp_path, replay={"name": "fifo", "options": {"capacity": 50}}
        ),
    }
    events: list[SweepEvent] = []
    summaries = run_sweep(experiments, workers=1, on_event=events.append)
    labels = [e.label for e in events]
    # 2 tasks x 2 seeds references, shared by both experiments; then 2 experiments x 2 seeds
    assert sum(label.startswith("reference") for label in labels) == 4
    assert len(labels) == 8
    assert events[-1].done == events[-1].total == 8
    for directory in experiments:
        summary = json.loads((directory / "summary.json").read_text())
        assert summary == summaries[directory]
        assert summary["cw_forgetting"]["n"] == 2
        assert summary["cw_forward_transfer"]["n"] == 2

    # a crash mid-seed leaves a directory without metrics.json: only that seed runs again
    (tmp_path / "runs" / "b" / "seed_1" / "metrics.json").unlink()
    events.clear()
    run_sweep(experiments, workers=1, on_event=events.append)
    assert [e.label for e in events] == [f"{tmp_path / 'runs' / 'b'} seed 1"]
    assert (tmp_path / "runs" / "b" / "seed_1" / "metrics.json").is_file()


def test_sweep_in_worker_processes(tmp_path: Path) -> None:
    directory = tmp_path / "runs" / "a"
    config = tiny(tmp_path, metrics={"reference_runs": False})
    summaries = run_sweep({directory: config}, workers=2)
    assert summaries[directory]["cw_average_performance"]["n"] == 2
    assert (directory / "seed_0" / "evals.jsonl").is_file()
