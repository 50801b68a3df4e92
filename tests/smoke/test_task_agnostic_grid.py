"""experiments/task_agnostic: every method changes only where EWC's task ends come from,
and the whole pipeline (grid, records with task changes, report with the detection table)
runs end to end on tiny budgets derived from the committed configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from l2rl import aggregate


def test_the_methods_differ_only_in_where_task_ends_come_from(
    experiment_script: Callable[..., ModuleType],
) -> None:
    run = experiment_script("task_agnostic")
    grid = run.GRID.experiment_configs(["cartpole-variants"], run.GRID.methods(), [0], Path("x"))
    configs = {method: config for (_, method), (_, config) in grid.items()}
    aware = {m: c.scenario.task_aware for m, c in configs.items()}
    assert aware == {m: m == "ewc-oracle" for m in configs}
    names = {m: [c.name for c in config.components] for m, config in configs.items()}
    assert names["fine-tuning"] == []
    assert names["ewc-no-boundaries"] == names["ewc-oracle"] == ["ewc"]
    assert names["ewc-page-hinkley"] == ["ewc", "page-hinkley"]
    assert names["ewc-cusum"] == ["ewc", "cusum"]
    agents = {c.agent.model_dump_json() for c in configs.values()}
    assert len(agents) == 1  # one agent for all
    # minatar-sequence runs three of them, the detector one of its own
    minatar = run.GRID.experiment_configs(["minatar-sequence"], run.GRID.methods(), [0], Path("x"))
    names = {
        method: [c.name for c in config.components] for (_, method), (_, config) in minatar.items()
    }
    assert names == {
        "fine-tuning": [],
        "ewc-oracle": ["ewc"],
        "ewc-page-hinkley-length": ["ewc", "page-hinkley"],
    }


def test_the_whole_pipeline_runs_and_reports_detections(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    experiment_script: Callable[..., ModuleType],
    tiny_cartpole_configs: Callable[..., dict[str, Any]],
) -> None:
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    run = experiment_script("task_agnostic")
    configs = tmp_path / "configs"
    methods = tiny_cartpole_configs("task_agnostic", configs, steps_per_task=300, every=150)
    # sensitive enough to fire on 600 steps (DQN's TD loss moves at every step; 30-step
    # episodes give too few returns)
    touchy = {"statistic": "loss", "loss_key": "loss_td", "warmup": 5, "threshold": 2.0}
    for method in ("ewc-page-hinkley", "ewc-cusum"):
        options = methods[method]["components+"][0]["options"]
        options.update(touchy, direction="both", rewarm_opposite=False, min_std=1e-3)
    (configs / "methods.yaml").write_text(yaml.safe_dump(methods))

    records, results = tmp_path / "records", tmp_path / "results"
    paths = ["--output", str(tmp_path / "runs"), "--records", str(records)]
    arguments = ["--scenarios", "cartpole-variants", "--configs", str(configs), *paths]
    assert run.main([*arguments, "--results", str(results)]) == 0
    changes = records / "cartpole-variants" / "ewc-cusum" / "seed_0" / "task_changes.jsonl"
    assert changes.is_file()
    markdown = (results / "results.md").read_text()
    assert "task-change detection" in markdown
    for method in ("ewc-page-hinkley", "ewc-cusum"):
        assert f"| {method} | 1 |" in markdown
