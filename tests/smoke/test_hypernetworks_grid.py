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
METHODS = {
    "pendulum-gravity": ["fine-tuning", "coreset", "ewc", "si", "hypercrl"],
    "cartpole-continuous": ["fine-tuning", "coreset", "ewc", "si", "hypercrl"],
    "cartpole-variants": ["fine-tuning", "hypercrl-q"],
}


def test_every_method_plans_and_trains_the_same_way(
    experiment_script: Callable[..., ModuleType],
) -> None:
    run = experiment_script("hypernetworks")
    methods = run.GRID.methods()
    assert methods == ["fine-tuning", "coreset", "ewc", "si", "hypercrl", "hypercrl-q"]
    grid = run.GRID.experiment_configs(list(run.GRID.scenarios), methods, [0], Path("unused"))
    assert sorted(grid) == sorted((s, m) for s, names in METHODS.items() for m in names)
    shared = {
        "pendulum-gravity": ("planner", "hidden", "batch_size", "train_every", "gradient_steps"),
        "cartpole-continuous": ("planner", "hidden", "samples", "horizon", "angle_dims"),
        "cartpole-variants": ("hidden_sizes", "batch_size", "train_every", "lr"),
    }
    for (scenario, method), (_, config) in grid.items():
        base = grid[(scenario, "fine-tuning")][1]
        options = config.agent.options
        keys = shared[scenario]
        assert {k: options[k] for k in keys} == {k: base.agent.options[k] for k in keys}
        generated = method.startswith("hypercrl")
        assert options.get("model", "mlp") == ("hypernetwork" if generated else "mlp")
        if scenario != "cartpole-variants":
            assert config.components[0].name == "dynamics-heldout"
        build_run(config, seed=0)  # every method builds


def _tiny(config: dict[str, Any], steps: int) -> dict[str, Any]:
    config["seeds"] = [0]
    config["scenario"]["steps_per_task"] = steps
    options = config["agent"]["options"]
    if config["agent"]["name"] == "mpc":
        if config["scenario"]["name"] == "pendulum-gravity":
            config["scenario"]["options"]["gravities"] = [10, 12]
        else:
            config["scenario"]["options"]["lengths"] = [0.6, 0.8]
        options.update(hidden=[8], batch_size=4, train_every=10, gradient_steps=2)
        options.update(random_steps=10, samples=8, horizon=3, elites=4)
    else:
        config["scenario"]["options"]["max_episode_steps"] = 20
        options.update(hidden_sizes=[8], batch_size=4, learning_starts=8, train_every=2)
    for component in config.get("components", []):
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
    for method in METHODS["pendulum-gravity"]:
        # headline, per-task and dynamics-error rows on the two MPC scenarios; fine-tuning
        # also has headline and per-task rows on cartpole-variants
        assert markdown.count(f"| {method} |") == (8 if method == "fine-tuning" else 6)
    assert markdown.count("| hypercrl-q |") == 2
    assert (results / "cartpole-continuous-dynamics-error.png").is_file()
    again = tmp_path / "again"
    argv = ["--configs", str(configs), "--report-only", "--records", str(records)]
    assert run.main([*argv, "--results", str(again)]) == 0
    assert (again / "results.md").read_text() == markdown
