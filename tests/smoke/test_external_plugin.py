"""A third-party component package installs, is discovered by entry point, and conforms.

``examples/l2rl-example-plugin`` is installed offline into a temporary folder (never into
the test environment). Everything that imports it runs in a subprocess that puts that
folder on ``sys.path``, so this process's imports and entry points stay untouched.
The docs page must show that package's files exactly as they are.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "l2rl-example-plugin"
DOC = ROOT / "docs" / "writing-a-component.md"

PROBE = """
import importlib, sys
sys.path.insert(0, {target!r})
importlib.invalidate_caches()

from l2rl import registry
from l2rl.testing import check_component

assert "episode-stats" in registry.available("l2rl.components"), registry.available(
    "l2rl.components"
)
cls = registry.load("l2rl.components", "episode-stats")
import l2rl_example_plugin
assert cls is l2rl_example_plugin.EpisodeStats
assert l2rl_example_plugin.__file__.startswith({target!r}), l2rl_example_plugin.__file__
report = check_component(cls, {{"window": 3}}, name="episode-stats")
print(" ".join(report.passed))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip into a temporary folder; returns that folder."""
    work = tmp_path_factory.mktemp("plugin")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in examples/.
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _run(args: list[str], cwd: Path, pythonpath: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env["COLUMNS"] = "200"  # rich tables: no wrapped names
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_installed_plugin_is_discovered_loaded_and_conforms(installed: Path) -> None:
    assert importlib.util.find_spec("l2rl_example_plugin") is None  # not in this process
    passed = _run([sys.executable, "-c", PROBE.format(target=str(installed))], cwd=ROOT).split()
    assert {"run[task-aware]", "run[task-agnostic]", "state_dict[task-aware]"} <= set(passed)


def test_l2rl_list_shows_the_plugin(installed: Path) -> None:
    listing = _run([sys.executable, "-m", "l2rl.cli", "list"], cwd=ROOT, pythonpath=installed)
    assert "episode-stats" in listing
    assert "l2rl_example_plugin.episode_stats:EpisodeStats" in listing


def test_the_plugins_own_tests_pass_against_the_installed_package(
    installed: Path, tmp_path: Path
) -> None:
    tests = tmp_path / "example"
    shutil.copytree(EXAMPLE, tests, ignore=shutil.ignore_patterns("src", "build", "__pycache__"))
    output = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tests,
        pythonpath=installed,
    )
    assert re.search(r"\b[1-9]\d* passed", output), output
    assert "failed" not in output


def test_the_docs_page_shows_the_example_files_verbatim() -> None:
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", DOC.read_text(), re.S)
    shown = {path: text for path, text in blocks}
    files = {
        str(path.relative_to(EXAMPLE)): path.read_text()
        for path in sorted(EXAMPLE.rglob("*"))
        if path.is_file()
        and path.suffix in {".py", ".toml"}
        and not {"build", "__pycache__"} & set(path.parts)
    }
    assert shown == files


def test_the_docs_run_config_checks_and_runs_with_the_plugin(
    installed: Path, tmp_path: Path
) -> None:
    text = DOC.read_text()
    (config,) = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
        if block.startswith("name: cartpole-with-stats")
    ]
    (tmp_path / "cartpole-with-stats.yaml").write_text(config)
    commands = [
        line.removeprefix("$ ").split("  #")[0].split()
        for block in re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL)
        for line in block.splitlines()
        if line.startswith("$ l2rl ") and "cartpole-with-stats.yaml" in line
    ]
    assert [c[1] for c in commands] == ["check", "run"]
    # the documented budget shrunk (15000 steps per task), everything else as shown
    tiny = ["scenario.steps_per_task=300", "evaluation.every=150", "progress=false"]
    for command in commands:
        argv = [sys.executable, "-m", "l2rl.cli", *command[1:]]
        _run(argv + (tiny if command[1] == "run" else []), cwd=tmp_path, pythonpath=installed)
    (experiment,) = (tmp_path / "runs").glob("cartpole-with-stats-*")
    assert (experiment / "summary.json").is_file()
