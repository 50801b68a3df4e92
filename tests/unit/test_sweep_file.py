"""Sweep files: validation with errors naming the field or the cell, one experiment per
(scenario, method) with the seeds outside its identity, reruns that run nothing again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2rl.cli import main
from l2rl.config import ConfigError
from l2rl.sweep_file import cell_configs, load_sweep
from l2rl.testing.runs import tiny_run_config


def write(tmp_path: Path, **changes: Any) -> Path:
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(tiny_run_config(tmp_path / "unused")))
    sweep = {
        "name": "t",
        "output": str(tmp_path / "out"),
        "seeds": [0, 1],
        "scenarios": {"tiny": "tiny.yaml"},
        "methods": {"fine-tuning": {}, "l2": {"components+": [{"name": "l2"}]}},
        **changes,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_cells_merge_each_method_into_each_base_and_keep_seeds_out_of_their_folders(
    tmp_path: Path,
) -> None:
    cells = cell_configs(load_sweep(write(tmp_path)))
    assert sorted(cells) == [("tiny", "fine-tuning"), ("tiny", "l2")]
    folder, config = cells[("tiny", "l2")]
    assert folder == tmp_path / "out" / "tiny" / "l2"
    assert [c.name for c in config.components] == ["l2"] and config.seeds == [0, 1]
    more = cell_configs(load_sweep(write(tmp_path, seeds=[0, 1, 2])))
    assert more[("tiny", "l2")][0] == folder  # more seeds, same cell


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 2}, "workers"),
        ({"scenarios": {"tiny": "missing.yaml"}}, "sweep scenario 'tiny': base config not found"),
        ({"methods": {"bad": {"evaluation": {"every": -1}}}}, "sweep cell tiny/bad"),
    ],
)
def test_bad_sweeps_fail_naming_what_is_wrong(
    tmp_path: Path, changes: dict[str, Any], message: str | None
) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(ConfigError, match=message):
        cell_configs(load_sweep(path))


def test_an_unknown_plugin_fails_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, methods={"bad": {"agent": {"name": "dqnn"}}})
    assert main(["sweep", str(path)]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tiny" / "bad" / "seed_0").exists()


def test_a_rerun_runs_nothing_again_and_the_summary_covers_every_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, seeds=[0])
    assert main(["sweep", str(path)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary) == ["tiny/fine-tuning", "tiny/l2"]
    assert summary["tiny/l2"]["cw_average_performance"]["n"] == 1
    evals = tmp_path / "out" / "tiny" / "l2" / "seed_0" / "evals.jsonl"
    before = evals.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["sweep", str(path)]) == 0
    assert evals.stat().st_mtime_ns == before
    assert "[1/" not in capsys.readouterr().out  # no job ran
