"""experiments/world_models: the committed configs give every method the same replay memory,
and the whole pipeline (grid, records, report with its extra figures) runs end to end on
tiny budgets derived from those configs."""

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
from l2rl.logging.files import read_jsonl

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "world_models"
PROBE = "world-model-heldout"


def test_every_method_stores_the_same_number_of_transitions(
    experiment_script: Callable[..., ModuleType],
) -> None:
    run = experiment_script("world_models")
    methods = run.GRID.methods()
    assert methods == ["fifo", "reservoir", "wmar", "continual-dreamer"]
    grid = run.GRID.experiment_configs(list(run.GRID.scenarios), methods, [0], Path("unused"))
    for scenario in run.GRID.scenarios:
        slots = {}
        for method in methods:
            _, config = grid[(scenario, method)]
            names = [c.name for c in config.components]
            assert names[:2] == ["dreamer-world-model", PROBE], names
            assert config.replay is not None and config.replay.name == method
            # the reference runs are the fifo method's Dreamer: its replay and world model
            fifo = grid[(scenario, "fifo")][1]
            assert config.metrics.reference_replay == fifo.replay
            assert config.metrics.reference_components == fifo.components[:1]
            built = build_run(config, seed=0)
            (replay,) = [c for c in built.components if c.role == "replay"]
            chunk = replay.config.chunk_steps
            # complete chunks the writers may hold, times the steps of a chunk
            slots[method] = sum(w.capacity for w in replay.buffer.writers) * chunk
            if method == "continual-dreamer":
                (explore,) = [c for c in config.components if c.name == "plan2explore"]
                assert "intrinsic_weight" not in explore.options  # the 0.9 / 0.9 defaults
        assert len(set(slots.values())) == 1, (scenario, slots)
        assert slots["fifo"] == grid[(scenario, "fifo")][1].replay.options["capacity"]


def _tiny(config: dict[str, Any], steps: int) -> dict[str, Any]:
    """A committed base setting at smoke size: every key the real one has, tiny values."""
    config["seeds"] = [0]
    config["scenario"]["steps_per_task"] = steps
    config["agent"]["options"].update(
        units=16, batch_size=2, sequence_length=8, learning_starts=20, horizon=3
    )
    config["replay"]["options"].update(capacity=64, chunk_steps=16)
    config["metrics"]["reference_replay"]["options"].update(capacity=64, chunk_steps=16)
    world_model = {
        "deter": 16,
        "units": 16,
        "latents": 4,
        "classes": 4,
        "batch_size": 2,
        "sequence_length": 8,
        "learning_starts": 20,
    }
    for component in [*config["components"], *config["metrics"]["reference_components"]]:
        if component["name"] == "dreamer-world-model":
            component["options"].update(world_model)
            if "cnn_depth" in component["options"]:
                component["options"]["cnn_depth"] = 4
        if component["name"] == PROBE:
            component["options"].update(sequences=2, sequence_length=8)
    config["evaluation"].update(every=steps // 2, episodes=1)
    if config["scenario"]["name"] == "cartpole-variants":
        config["scenario"]["options"]["max_episode_steps"] = 30
    return config


def test_the_whole_pipeline_runs_and_reports_from_records_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, experiment_script: Callable[..., ModuleType]
) -> None:
    # rliable's bootstraps dominate a tiny grid's report; their size is not under test here
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    run = experiment_script("world_models")
    configs = tmp_path / "configs"
    configs.mkdir()
    for scenario in run.GRID.scenarios:
        base = load_yaml((FOLDER / f"{scenario}.yaml").read_text())
        tiny = _tiny(base, steps=40)
        (configs / f"{scenario}.yaml").write_text(yaml.safe_dump(tiny))
    methods = load_yaml((FOLDER / "methods.yaml").read_text())
    methods["continual-dreamer"]["components+"][0]["options"].update(
        units=16, batch_size=2, sequence_length=8, learning_starts=20, ensemble_size=2
    )
    (configs / "methods.yaml").write_text(yaml.safe_dump(methods))

    runs, records, results = tmp_path / "runs", tmp_path / "records", tmp_path / "results"
    paths = ["--output", str(runs), "--records", str(records), "--results", str(results)]
    assert run.main(["--configs", str(configs), "--workers", "1", *paths]) == 0

    seed = records / "minatar-sequence" / "continual-dreamer" / "seed_0"
    assert sorted(p.name for p in seed.iterdir()) == sorted(run.GRID.record_files)
    tags = {row["tag"] for row in read_jsonl(seed / "eval_scalars.jsonl")}
    games = load_yaml((configs / "minatar-sequence.yaml").read_text())["scenario"]["options"]
    for game in games["games"]:
        assert f"eval/world_model/{game}/loss_total" in tags
    markdown = (results / "results.md").read_text()
    for scenario in run.GRID.scenarios:
        assert f"## {scenario}" in markdown
        for name in ("curves", "heldout-loss", "profiles"):
            assert (results / f"{scenario}-{name}.png").is_file(), name
    for method in ("fifo", "reservoir", "wmar", "continual-dreamer"):
        # headline, per-task and held-out-loss rows, 2 scenarios
        assert markdown.count(f"| {method} |") == 6
    assert "P(> fifo)" in markdown
    assert "at the end of the task's own window -> at the run's end" in markdown

    # a grid cut short is collected from its finished seeds without running anything
    collected = tmp_path / "collected"
    argv = ["--configs", str(configs), "--collect-only", "--output", str(runs)]
    assert run.main([*argv, "--records", str(collected), "--results", str(tmp_path / "r2")]) == 0
    assert sorted(p.relative_to(collected) for p in collected.rglob("*")) == sorted(
        p.relative_to(records) for p in records.rglob("*")
    )

    # the runs are gone: the committed records alone give the same report
    for path in sorted(runs.rglob("*"), reverse=True):
        path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    again = tmp_path / "again"
    argv = ["--configs", str(configs), "--report-only", "--records", str(records)]
    assert run.main([*argv, "--results", str(again)]) == 0
    assert (again / "results.md").read_text() == markdown
