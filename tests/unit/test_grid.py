"""How a method changes a base setting (l2rl.config.merge_method, its example runs in
test_docstring_examples), and the grid's curves averaged over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2rl.config import ConfigError, merge_method
from l2rl.grid import Grid, mean_curves


def test_methods_merge_mappings_replace_values_and_append_with_plus() -> None:
    base = {
        "replay": {"name": "fifo", "options": {"capacity": 64, "chunk_steps": 16}},
        "components": [{"name": "a"}],
        "seeds": [0, 1],
    }
    merged = merge_method(base, {"replay": {"options": {"capacity": 32}}, "seeds": [5]})
    assert merged["replay"] == {"name": "fifo", "options": {"capacity": 32, "chunk_steps": 16}}
    assert merged["seeds"] == [5]
    assert merge_method(base, {"components+": [{"name": "b"}]})["components"] == [
        {"name": "a"},
        {"name": "b"},
    ]
    assert merge_method(base, {"components": []})["components"] == []
    assert merge_method(base, None) == base
    assert base["replay"]["options"]["capacity"] == 64  # the base is not changed
    with pytest.raises(ConfigError, match="appends"):
        merge_method(base, {"seeds+": 3})
    with pytest.raises(ConfigError, match="appends"):
        merge_method(base, {"replay+": [1]})


def test_only_restricts_a_method_to_its_scenarios(tmp_path: Path) -> None:
    base = (
        "seeds: [0]\nscenario: {name: cartpole-variants, steps_per_task: 10}\n"
        "agent: {name: dqn}\nevaluation: {every: 10, episodes: 1}\n"
    )
    for scenario in ("a", "b"):
        (tmp_path / f"{scenario}.yaml").write_text(base)
    (tmp_path / "methods.yaml").write_text("plain: {}\nnarrow: {only: [b], seeds: [3]}\n")
    grid = Grid(tmp_path, "t", ("a", "b"), ("a", "b"), "plain", "r", ("x",), tmp_path)
    cells = grid.experiment_configs(["a", "b"], ["plain", "narrow"], None, tmp_path)
    assert sorted(cells) == [("a", "plain"), ("b", "narrow"), ("b", "plain")]
    assert cells[("b", "narrow")][1].seeds == [3]  # `only` itself is no config key
    (tmp_path / "methods.yaml").write_text("plain: {}\nnarrow: {only: [c]}\n")
    with pytest.raises(SystemExit, match="`only` must list scenarios of"):
        grid.experiment_configs(["a"], ["plain"], None, tmp_path)


def test_records_of_a_run_without_reference_runs_have_no_reference_file(tmp_path: Path) -> None:
    grid = Grid(tmp_path, "t", ("a",), ("a",), "plain", "r", ("x",), tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name in grid.record_files:
        (run / name).write_text("{}\n")
    config = (
        "name: x\noutput_dir: o\nseeds: [0]\nagent: {name: dqn}\n"
        "scenario: {name: cartpole-variants, steps_per_task: 10}\n"
        "evaluation: {every: 10, episodes: 1}\nmetrics: {reference_runs: %s}\n"
    )
    (run / "reference_evals.jsonl").unlink()
    (run / "config.yaml").write_text(config % "false")
    grid.copy_records(run, tmp_path / "copied")
    assert sorted(p.name for p in (tmp_path / "copied").iterdir()) == sorted(
        set(grid.record_files) - {"reference_evals.jsonl"}
    )
    (run / "config.yaml").write_text(config % "true")  # configured with them: one is missing
    with pytest.raises(FileNotFoundError, match=r"reference_evals\.jsonl"):
        grid.copy_records(run, tmp_path / "copied")


def test_curves_average_the_steps_every_seed_has() -> None:
    runs = [
        {("a", 0): 0.0, ("a", 10): 1.0, ("b", 0): 2.0},
        {("a", 0): 1.0, ("a", 10): 0.0, ("a", 20): 5.0, ("b", 0): 4.0},
    ]
    curves = mean_curves(runs)
    steps, values = curves["a"]
    np.testing.assert_array_equal(steps, [0, 10])
    np.testing.assert_array_equal(values, [0.5, 0.5])
    assert curves["b"][1].tolist() == [3.0]
    assert mean_curves([]) == {}
