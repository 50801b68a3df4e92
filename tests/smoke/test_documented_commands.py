"""Every ``l2rl`` command line the README shows runs, on a tiny experiment.

The README's command reference is a synopsis: its placeholders (``CONFIG``, ``RUN_DIR``,
``EXPERIMENT_DIR``, ``DIR``, ``key=value ...``) are filled with a tiny config, the
experiment the synopsis' own ``run`` line made, and a real override, and every optional
``[...]`` part is included, so each option it names is exercised.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from l2rl.cli import main
from l2rl.testing.runs import tiny_run_config

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The ``l2rl ...`` lines of the README's code blocks, comments cut off."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|console)?\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("l2rl ")]


def sweep_file(config: Path) -> Path:
    """A tiny sweep of ``config``: one scenario, two methods, its seeds."""
    path = config.parent / "sweep.yaml"
    sweep = {
        "name": "documented-sweep",
        "output": str(config.parent / "sweep-runs"),
        "seeds": [0],
        "scenarios": {"tiny": config.name},
        "methods": {"fine-tuning": {}, "l2": {"components+": [{"name": "l2"}]}},
    }
    path.write_text(yaml.safe_dump(sweep))
    return path


def concrete(line: str, config: Path, experiment: Path | None, other: Path) -> list[str]:
    """The synopsis line with its placeholders filled and its optional parts kept."""
    line = line.replace("[key=value ...]", "scenario.steps_per_task=100")
    line = re.sub(r"\[([^\]]*)\]", r"\1", line)
    words = shlex.split(line)[1:]
    fills = {"CONFIG": str(config), "DIR": str(other), "SWEEP_FILE": str(sweep_file(config))}
    if experiment is not None:
        fills |= {"RUN_DIR": str(experiment), "EXPERIMENT_DIR": str(experiment)}
    return [fills.get(word, word) for word in words]


def test_the_readme_shows_each_command_once() -> None:
    commands = [line.split()[1] for line in readme_commands()]
    assert sorted(commands) == ["check", "list", "metrics", "report", "resume", "run", "sweep"]


def test_every_readme_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.yaml"
    tiny = tiny_run_config(tmp_path / "unused", name="documented", seeds=[0, 1])
    config.write_text(yaml.safe_dump(tiny))
    runs = tmp_path / "runs"
    lines = sorted(readme_commands(), key=lambda line: not line.startswith("l2rl run "))
    experiment: Path | None = None
    for line in lines:  # run first: the others read the experiment it made
        argv = concrete(line, config, experiment, runs)
        assert main(argv) == 0, argv
        if argv[0] == "run":
            (experiment,) = runs.glob("documented-*")
            assert (experiment / "summary.json").is_file()
