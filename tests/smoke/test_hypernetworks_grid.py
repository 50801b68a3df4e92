"""experiments/hypernetworks: every method keeps the base setting's planner, model and
schedule, and the whole pipeline (grid, records, report with the dynamics-error figure and
table) runs end to end on tiny budgets derived from the committed configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from l2rl import aggregate
from l2rl.builder import build_run
from l2rl.config import load_yaml

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "hypernetworks"
METHODS = ["fine-tuning", "coreset", "ewc", "si", "hypercrl"]


def test_every_method_plans_and_trains_the_same_way(
    experiment_script: Callable[..., ModuleType],
) -> None:
    run = experiment_script("hypernetworks")
    assert run.GRID.methods() == METHODS
    grid = run.GRID.experiment_configs(list(run.GRID.scenarios), METHODS, [0], Path("unused"))
    for scenario in run.GRID.scenarios:
        base = grid[(scenario, "fine-tuning")][1]
        shared = ("planner", "hidden", "batch_size", "train_every", "gradient_steps")
        for method in METHODS:
            config = grid[(scenario, method)][1]
            options = config.agent.options
            assert {k: options[k] for k in shared} == {k: base.agent.options[k] for k in shared}
            assert config.components[0].name == "dynamics-heldout"
            model = options.get("model", "mlp")
            assert model == ("hypernetwork" if method == "hypercrl" else "mlp")
            build_run(config, seed=0)  # every method builds


def _tiny(config: dict[str, Any], steps: int) -> dict[str, Any]:
    config["seeds"] = [0]
    config["scenario"]["steps_per_task"] = steps
    config["scenario"]["options"]["gravities"] = [10, 12]
    config["agent"]["options"].update(
        hidden=[8], batch_size=4, train_every=10, gradient_steps=2, random_steps=10, samples=8
    )
    config["agent"]["options"]["horizon"] = 3
    for component in config["components"]:
        if component["name"] == "dynamics-heldout":
            component["options"].update(sequences=1, sequence_length=8)
    config["evaluation"].update(every=steps // 2, episodes=1, max_episode_steps=10)
    return config


def test_the_whole_pipeline_runs_and_reports_from_records_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, experiment_script: Callable[..., ModuleType]
) -> None:
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    run = experiment_script("hypernetworks")
    configs = tmp_path / "configs"
    configs.mkdir()
    for scenario in run.GRID.scenarios:
        base = load_yaml((FOLDER / f"{scenario}.yaml").read_text())
        (configs / f"{scenario}.yaml").write_text(yaml.safe_dump(_tiny(base, steps=20)))
    methods = load_yaml((FOLDER / "methods.yaml").read_text())
    methods["ewc"]["components+"][0]["options"]["fisher_samples"] = 4
    (configs / "methods.yaml").write_text(yaml.safe_dump(methods))
    runs, records, results = tmp_path / "runs", tmp_path / "records", tmp_path / "results"
    paths = ["--output", str(runs), "--records", str(records), "--results", str(results)]
    assert run.main(["--configs", str(configs), "--workers", "1", *paths]) == 0
    markdown = (results / "results.md").read_text()
    assert (results / "pendulum-gravity-dynamics-error.png").is_file()
    for method in METHODS:
        assert markdown.count(f"| {method} |") == 3  # headline, per-task, dynamics error
    again = tmp_path / "again"
    argv = ["--configs", str(configs), "--report-only", "--records", str(records)]
    assert run.main([*argv, "--results", str(again)]) == 0
    assert (again / "results.md").read_text() == markdown
