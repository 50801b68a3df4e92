"""The baseline tooling: records are committed per seed, the table is rebuilt from them
alone, and the rerun script finds every differing field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from l2rl.config import parse_config
from l2rl.sweep import run_sweep

BASELINES = Path(__file__).resolve().parents[2] / "experiments" / "baselines"


def _tiny(output: Path, replay: dict[str, Any]) -> Any:
    return parse_config(
        {
            "name": "tiny",
            "seeds": [0, 1],
            "scenario": {
                "name": "cartpole-variants",
                "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 30},
                "steps_per_task": 120,
            },
            "agent": {"name": "dqn", "options": {"learning_starts": 32, "batch_size": 16}},
            "replay": replay,
            "evaluation": {"every": 20, "episodes": 2},
            "metrics": {"reference_replay": {"name": "fifo", "options": {"capacity": 500}}},
            "output_dir": str(output),
        }
    )


def test_table_is_rebuilt_from_committed_records_alone(
    tmp_path: Path, experiment_script: Callable[..., ModuleType]
) -> None:
    run = experiment_script("baselines")
    runs, records = tmp_path / "runs", tmp_path / "records"
    grid = {
        ("cartpole-variants", "fine-tuning"): (
            runs / "fine-tuning",
            _tiny(runs, {"name": "fifo", "options": {"capacity": 500}}),
        ),
        ("cartpole-variants", "reservoir"): (
            runs / "reservoir",
            _tiny(runs, {"name": "reservoir", "options": {"capacity": 500}}),
        ),
    }
    run_sweep({d: c for d, c in grid.values()}, workers=1)
    for (scenario, method), (directory, _) in grid.items():
        for seed in (0, 1):
            run.copy_records(
                directory / f"seed_{seed}", records / scenario / method / f"seed_{seed}"
            )
    committed = sorted(p.name for p in (records / "cartpole-variants/reservoir/seed_0").iterdir())
    assert committed == sorted(run.RECORD_FILES)

    cells = {key: run.cell_metrics(records / key[0] / key[1]) for key in grid}
    # the runs themselves are gone: only committed records feed the table
    for directory, _ in grid.values():
        for path in sorted(directory.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    markdown = run.write_report(cells, ["fine-tuning", "reservoir"], tmp_path / "results")
    assert "| reservoir |" in markdown and "P(> fine-tuning)" in markdown
    assert "Seeds per method: 2" in markdown
    summary = json.loads((tmp_path / "results" / "results.json").read_text())
    poi = summary["cartpole-variants/reservoir"]["probability_of_improvement"]
    assert 0.0 <= poi["ci_low"] <= poi["estimate"] <= poi["ci_high"] <= 1.0
    assert "probability_of_improvement" not in summary["cartpole-variants/fine-tuning"]
    assert (tmp_path / "results" / "cartpole-variants-profiles.png").is_file()
    # the same records give the same table
    again = run.write_report(cells, ["fine-tuning", "reservoir"], tmp_path / "again")
    assert again == markdown


def test_rerun_comparison_names_every_differing_field(
    experiment_script: Callable[..., ModuleType],
) -> None:
    rerun = experiment_script("baselines", "rerun_cell")
    rows = [{"score": 0.5, "episode_returns": [1.0, 2.0]}, {"score": 0.25}]
    assert rerun.compare_rows("evals.jsonl", rows, [dict(r) for r in rows]) == []
    changed = [rows[0], {"score": 0.5}]
    assert rerun.compare_rows("evals.jsonl", rows, changed) == [
        "evals.jsonl record 1: score: 0.25 -> 0.5"
    ]
    assert rerun.compare_rows("evals.jsonl", rows, rows[:1])[0].startswith("evals.jsonl: 2")
    notes = rerun.manifest_differences(
        {"packages": {"numpy": "2.4"}, "torch": {"version": "a", "build": "x"}},
        {"packages": {"numpy": "2.5"}, "torch": {"version": "a", "build": "y"}},
    )
    assert notes == ["package numpy: 2.4 -> 2.5"]
