"""experiments/skills: the methods differ only in their skill manager (or replay), the
README's memory figure holds, and the whole pipeline (grid, records with skill events,
report with the bank table) runs end to end on tiny budgets from the committed configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from l2rl import aggregate
from l2rl.builder import build_run


def test_the_methods_differ_only_in_their_skill_manager(
    experiment_script: Callable[..., ModuleType],
) -> None:
    run = experiment_script("skills")
    grid = run.GRID.experiment_configs(["cartpole-variants"], run.GRID.methods(), [0], Path("x"))
    configs = {method: config for (_, method), (_, config) in grid.items()}
    names = {m: [c.name for c in config.components] for m, config in configs.items()}
    assert names == {
        "fine-tuning": [],
        "reservoir": [],
        "slim": ["slim"],
        "slim-no-retire": ["slim"],
        "slim-no-expand": ["slim"],
        "csp": ["csp"],
    }
    options = {m: dict(configs[m].components[0].options) for m in ("slim", "slim-no-retire")}
    assert options["slim-no-retire"] == {**options["slim"], "retire": False}
    assert len({c.agent.model_dump_json() for c in configs.values()}) == 1
    assert {c.scenario.cycles for c in configs.values()} == {2}  # A B C A B C
    # the README's memory figure: one skill is one Q-network of 10 934 floats
    built = build_run(configs["slim"], seed=0)
    assert sum(p.numel() for p in built.agent.networks().parameters()) == 10_934


def test_the_whole_pipeline_runs_and_reports_the_bank(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    experiment_script: Callable[..., ModuleType],
    tiny_cartpole_configs: Callable[..., dict[str, Any]],
) -> None:
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    run = experiment_script("skills")
    configs = tmp_path / "configs"
    methods = tiny_cartpole_configs("skills", configs, steps_per_task=150, every=75)
    chosen = {m: methods[m] for m in ("fine-tuning", "slim", "csp")}
    for entry in (chosen["slim"], chosen["csp"]):
        entry["components"][0]["options"]["validation_episodes"] = 1
    chosen["slim"]["components"][0]["options"].update(tau=2.0, patience=1, n_min=0)
    (configs / "methods.yaml").write_text(yaml.safe_dump(chosen))

    records, results = tmp_path / "records", tmp_path / "results"
    paths = ["--output", str(tmp_path / "runs"), "--records", str(records)]
    arguments = ["--scenarios", "cartpole-variants", "--configs", str(configs), *paths]
    assert run.main([*arguments, "--results", str(results)]) == 0
    seed = records / "cartpole-variants" / "slim" / "seed_0"
    assert (seed / "skill_events.jsonl").is_file() and (seed / "windows.jsonl").is_file()
    markdown = (results / "results.md").read_text()
    assert "the skill bank" in markdown
    for method in ("slim", "csp"):
        assert f"| {method} | " in markdown.split("the skill bank")[1]
