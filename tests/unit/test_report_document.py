"""l2rl report: a run's, an experiment's and a sweep's Markdown and HTML reports with their
figures, unfinished seeds named and left out."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from l2rl import aggregate
from l2rl.config import parse_config
from l2rl.experiment import run_experiment
from l2rl.report_document import find_experiments, write_report
from l2rl.testing.runs import tiny_run_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep folder: <scenario>/<method>/seed_*, two methods, two seeds each."""
    root = tmp_path_factory.mktemp("sweep")
    for method, replay in (("fifo", "fifo"), ("reservoir", "reservoir")):
        config = tiny_run_config(
            root / "runs", name=method, seeds=[0, 1], replay={"name": replay, "options": {}}
        )
        directory = run_experiment(parse_config(config)).directory
        shutil.move(directory, root / "cartpole-variants" / method)
    shutil.rmtree(root / "runs")
    return root


def test_a_sweep_report_has_every_experiment_and_the_comparison(
    sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    labels = [e.label for e in find_experiments(sweep)]
    assert labels == ["cartpole-variants/fifo", "cartpole-variants/reservoir"]
    out = write_report(sweep, sweep / "out")
    markdown = (out / "report.md").read_text()
    for label in labels:
        assert f"## {label}" in markdown
    assert "## Comparison" in markdown and "| method | cartpole-variants |" in markdown
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == [
        "cartpole-variants-bars.png",
        "cartpole-variants-fifo-curves.png",
        "cartpole-variants-fifo-matrix.png",
        "cartpole-variants-reservoir-curves.png",
        "cartpole-variants-reservoir-matrix.png",
    ]
    assert all((out / name).read_bytes().startswith(PNG) for name in figures)
    page = (out / "report.html").read_text()
    embedded = page.count('src="data:image/png;base64,')
    assert embedded == len(figures)
    first = page.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(first).startswith(PNG)


def test_an_experiment_with_a_cut_seed_reports_the_finished_one(
    sweep: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(aggregate, "RLIABLE_RESAMPLES", 20)
    experiment = tmp_path / "fifo"
    shutil.copytree(sweep / "cartpole-variants" / "fifo", experiment)
    (experiment / "seed_1" / "metrics.json").unlink()  # as if it had been cut short
    markdown = (write_report(experiment) / "report.md").read_text()
    assert "seed_1: incomplete: recorded up to step 400 of 400" in markdown
    assert "metric (1 seeds, 90% interval)" in markdown
    assert "## Comparison" not in markdown
