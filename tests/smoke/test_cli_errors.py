"""Every user mistake and every stopped run ends in one line on stderr and a defined exit
status, with no traceback unless ``--debug``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2rl.cli import main
from l2rl.components.replay.component import ChunkReplay
from l2rl.runner import Runner
from l2rl.testing.runs import tiny_run_config


def write_config(tmp_path: Path, output: Path | None = None) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_run_config(output or tmp_path / "runs")))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("l2rl: ")
    return line


def test_an_unwritable_output_dir_fails_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the config was built although output_dir is unusable")

    monkeypatch.setattr("l2rl.experiment.check_config", never)
    config = write_config(tmp_path, blocker / "runs")
    assert main(["run", str(config)]) == 2
    line = one_line_error(capsys)
    assert "output_dir" in line and str(blocker / "runs") in line


def test_a_malformed_override_names_the_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(write_config(tmp_path)), "agent.options.lr=[1,"]) == 2
    line = one_line_error(capsys)
    assert "'agent.options.lr=[1,'" in line and "not valid YAML" in line


def test_a_damaged_records_line_is_named_by_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(write_config(tmp_path))]) == 0
    (experiment,) = (tmp_path / "runs").iterdir()
    evals = experiment / "seed_0" / "evals.jsonl"
    lines = evals.read_text().splitlines()
    lines[2] = lines[2][:-7]  # a damaged line in the middle (a damaged last one is a crash)
    evals.write_text("\n".join(lines) + "\n")
    (experiment / "seed_0" / "metrics.json").unlink()  # so metrics reads the records
    capsys.readouterr()
    assert main(["metrics", str(experiment / "seed_0")]) == 1
    line = one_line_error(capsys)
    assert f"{evals}, line 3, is not valid JSON" in line


def test_ctrl_c_says_how_to_resume_and_resume_finishes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    assert main(["run", str(config), "output_dir=" + str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()

    original = Runner._evaluate

    def interrupted(
        self: Runner, block: int, trained_task: int, block_end: bool, after_sleep: bool = False
    ) -> None:
        original(self, block, trained_task, block_end, after_sleep)
        if block == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "_evaluate", interrupted)
    capsys.readouterr()
    assert main(["run", str(config)]) == 130
    (cut,) = (tmp_path / "runs").iterdir()
    assert one_line_error(capsys) == (
        f"l2rl: interrupted, every record so far is kept; l2rl resume {cut} finishes the run"
    )
    monkeypatch.undo()
    assert main(["resume", str(cut)]) == 0
    for name in ("evals.jsonl", "metrics.json"):
        assert (cut / "seed_0" / name).read_text() == (whole / "seed_0" / name).read_text()


def test_a_component_error_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ChunkReplay, ctx: Any) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(ChunkReplay, "on_run_start", broken)
    config = write_config(tmp_path)
    assert main(["run", str(config)]) == 1
    line = one_line_error(capsys)
    assert "component 'fifo' failed in on_run_start: ValueError: boom" in line
    (experiment,) = (tmp_path / "runs").iterdir()
    assert json.loads((experiment / "seed_0" / "agent.json").read_text())["name"] == "dqn"

    with pytest.raises(Exception, match="boom"):
        main(["run", str(config), "--debug"])
    with pytest.raises(Exception, match="boom"):
        main(["--debug", "run", str(config)])


def test_a_diverging_run_is_one_line_naming_the_learner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(write_config(tmp_path)), "agent.options.lr=1e30"]) == 1
    line = one_line_error(capsys)
    assert line.startswith("l2rl: error: learner 'agent': ") and " at step " in line
