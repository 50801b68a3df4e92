"""The l2rl command line end to end on a tiny scenario."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from l2rl.cli import _parser, main
from l2rl.logging.files import read_records
from l2rl.metrics import HEADLINE_METRICS

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "scenario": {
        "name": "cartpole-variants",
        "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 50},
        "steps_per_task": 300,
    },
    "agent": {"name": "dqn", "options": {"learning_starts": 64, "batch_size": 32}},
    "replay": {"name": "fifo", "options": {"capacity": 1000}},
    "evaluation": {"every": 100, "episodes": 2},
    "progress": False,
}


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    return path


def test_help_documents_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "check", "list", "metrics"):
        assert command in out


def test_list_shows_builtins_from_entry_points(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    builtins = ("dqn", "dreamer", "fifo", "dreamer-world-model", "plan2explore")
    for name in (*builtins, "cartpole-variants", "minigrid-sequence", "minatar-sequence"):
        assert name in out


def test_run_writes_every_output_and_metrics_reads_them_back(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tiny_config), "scenario.steps_per_task=200"]) == 0
    out = capsys.readouterr().out
    assert "cw_forgetting" in out and "90% CI" in out and "IQM" in out
    (experiment,) = (tmp_path / "runs").glob("tiny-*")
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["cw_average_performance"]["n"] == 2
    assert (experiment / "environment.json").is_file()
    for seed in (0, 1):
        run = experiment / f"seed_{seed}"
        metrics = json.loads((run / "metrics.json").read_text())
        for key in HEADLINE_METRICS:
            assert key in metrics
        assert metrics["missing_evaluations"] == {"count": 0, "evaluations": []}
        environment = json.loads((run / "environment.json").read_text())
        assert environment["torch"]["version"] == torch.__version__
        assert environment["git"]["commit"]  # the tests run from a git checkout
        assert {"cpu", "numpy", "packages", "python"} <= set(environment)
        (record, *_) = read_records(run / "evals.jsonl")
        assert len(record.episode_returns) == record.episodes
        assert np.mean(record.episode_returns) == pytest.approx(record.mean_return)
        assert yaml.safe_load((run / "config.yaml").read_text())["seeds"] == [seed]
        rows = (run / "evals.jsonl").read_text().splitlines()
        # 2 tasks x (1 before training + 2 windows x (200 steps / every 100)) evaluations
        assert len(rows) == 2 * (1 + 2 * 2)
        assert (run / "reference_evals.jsonl").is_file()
        assert (run / "checkpoint.pt").is_file()
        assert any((run / "tb").iterdir())
    # the reference runs are cached and shared by both seeds' later experiments
    assert len(list((tmp_path / "runs" / "_reference").iterdir())) == 2 * 2

    assert main(["metrics", str(experiment)]) == 0
    assert "cw_average_performance" in capsys.readouterr().out


def test_bad_config_exits_2_with_a_message(
    tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tiny_config), "agent.options.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert "l2rl: error:" in err and "lr" in err
    assert main(["check", str(tiny_config), "agent.name=nope"]) == 2
    assert "unknown agent 'nope'" in capsys.readouterr().err


def test_check_accepts_a_good_config(tiny_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tiny_config)]) == 0
    assert "ok" in capsys.readouterr().out


def test_metrics_on_an_empty_folder_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["metrics", str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err


def test_run_with_worker_processes(tiny_config: Path, tmp_path: Path) -> None:
    args = ["run", str(tiny_config), "--workers", "2", "metrics.reference_runs=false"]
    assert main(args) == 0
    (experiment,) = (tmp_path / "runs").glob("tiny-*")
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["cw_forgetting"]["n"] == 2
    assert main(["run", str(tiny_config), "--workers", "0"]) == 2


def _help_examples(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """The command lines under 'examples:' in ``l2rl --help``, without the ``l2rl``."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    lines = out.split("examples:", 1)[1].splitlines()
    return [shlex.split(line)[1:] for line in lines if line.strip().startswith("l2rl ")]


def test_the_seeds_list_ends_at_the_first_override() -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(
        ["run", "c.yaml", "--seeds", "0", "1", "2", "a.b=5000", "c=1e-3"]
    )
    assert (args.seeds, args.overrides_after_seeds, extra) == (
        [0, 1, 2],
        ["a.b=5000", "c=1e-3"],
        [],
    )
    args, _ = parser.parse_known_args(["run", "c.yaml", "--seeds", "4,5", "--no-progress"])
    assert args.seeds == [4, 5] and args.no_progress


def tiny_sweep(config: Path) -> Path:
    """experiments/sweep.yaml with the tiny config as its scenario and one seed."""
    sweep = yaml.safe_load((Path(__file__).parents[2] / "experiments" / "sweep.yaml").read_text())
    sweep.update(seeds=[0], output=str(config.parent / "sweep"), scenarios={"tiny": str(config)})
    path = config.parent / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_every_help_example_parses_and_runs(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = _help_examples(capsys)
    expected = {"run", "check", "list", "metrics", "report", "resume", "sweep"}
    assert {e[0] for e in examples} == expected
    for example in examples:  # every one parses with the real parser, nothing left over
        _, extra = _parser().parse_known_args(example)
        assert all("=" in e for e in extra), example
    # Run each on the tiny config (budgets cut by overrides appended at the end, which win),
    # 'metrics' and 'resume' on the experiment the first run wrote.
    tiny = ["scenario.steps_per_task=100", "metrics.reference_runs=false"]
    experiment: Path | None = None
    for example in examples:
        argv = [str(tiny_config) if a == "experiments/default.yaml" else a for a in example]
        if argv[0] == "run":
            argv += tiny
        if argv[0] in ("metrics", "report", "resume"):
            assert experiment is not None
            argv = [argv[0], str(experiment)]
        if argv[0] == "sweep":  # the example's sweep, on the tiny config
            argv[1] = str(tiny_sweep(tiny_config))
        before = set((tmp_path / "runs").glob("tiny-*"))
        assert main(argv) == 0, argv
        capsys.readouterr()
        if argv[0] == "run":
            (new,) = set((tmp_path / "runs").glob("tiny-*")) - before
            experiment = experiment or new
            if "--seeds" in argv:
                assert sorted(p.name for p in new.glob("seed_*")) == ["seed_0", "seed_1", "seed_2"]
                config = yaml.safe_load((new / "seed_0" / "config.yaml").read_text())
                assert config["agent"]["options"]["lr"] == pytest.approx(1e-3)


def test_resume_accepts_no_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from l2rl import progress

    shown: list[bool] = []
    original = progress.ProgressDisplay.__init__

    def spy(self: progress.ProgressDisplay, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        shown.append(self.enabled)

    monkeypatch.setattr(progress.ProgressDisplay, "__init__", spy)
    # An experiment interrupted before its seed started, whose config asks for progress.
    experiment = tmp_path / "interrupted"
    experiment.mkdir()
    config = {
        **TINY,
        "seeds": [0],
        "progress": True,
        "output_dir": str(tmp_path / "runs"),
        "scenario": {**TINY["scenario"], "steps_per_task": 100},  # type: ignore[dict-item]
        "metrics": {"reference_runs": False},
    }
    (experiment / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["resume", str(experiment), "--no-progress"]) == 0
    assert shown == [False]
    assert (experiment / "seed_0" / "metrics.json").is_file()
    assert "cw_forgetting" in capsys.readouterr().out


def _register_agent(monkeypatch: pytest.MonkeyPatch, name: str, target: str) -> None:
    """Add an ``l2rl.agents`` entry point ``name`` -> ``target`` for this test."""
    from importlib.metadata import EntryPoint

    from l2rl import registry

    real = registry.entry_points
    extra = EntryPoint(name, target, "l2rl.agents")

    def with_extra(*, group: str) -> list[EntryPoint]:
        found = list(real(group=group))
        return [*found, extra] if group == "l2rl.agents" else found

    monkeypatch.setattr(registry, "entry_points", with_extra)


def test_list_shows_plugins_that_fail_to_import_as_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _register_agent(monkeypatch, "half-written", "no_such_module_l2rl_test:Agent")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert (
        "l2rl.agents 'half-written' is broken: ModuleNotFoundError: No module named "
        "'no_such_module_l2rl_test'" in out
    )
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "broken" in rows["half-written"]
    assert "found" in rows["dqn"] and "broken" not in rows["dqn"]


def test_list_check_imports_each_plugin_and_flags_a_failing_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "l2rl_test_fails_on_import.py").write_text("raise ImportError('needs jax')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _register_agent(monkeypatch, "fails", "l2rl_test_fails_on_import:Agent")
    assert main(["list"]) == 0  # the module exists: found, not imported
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "│" in line}
    assert "found" in rows["fails"]
    assert main(["list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "l2rl.agents 'fails' is broken: ImportError: needs jax" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "ok" in rows["dqn"] and "broken" in rows["fails"]


@pytest.mark.parametrize("command", [["--help"], ["list"]])
def test_help_and_list_import_neither_torch_nor_gymnasium(command: list[str]) -> None:
    # what keeps both under 0.5 s (benchmarks/cli_startup.py; torch alone takes seconds)
    probe = (
        "import sys\n"
        "from l2rl.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'torch', 'gymnasium'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
