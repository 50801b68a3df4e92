"""l2rl.metrics_l2m against JHU APL's l2metrics 3.1.0 on the same logs, to 1e-9.

A tiny real run (DQN on two CartPole variants, three cycles, so that every metric has
values) with its single-task reference runs is exported by l2rl.logging.l2logger; l2metrics
(preprocessing off: ``smoothing_method="none"``, ``normalization_method="none"``, no
clamping; ``maintenance_method="both"``, ``transfer_method="both"``) scores the exported
files after l2logger's ``validate_log`` accepts them and ``store_ste_data`` stores each
expert's log, and its lifetime, per-task and per-pair figures must equal ours.

l2metrics needs numpy < 2, so it runs in ``.venv-l2metrics``, which this module creates
with ``scripts/install-l2metrics.sh`` and calls as a subprocess; the module skips when the
environment cannot be made, unless ``L2RL_REQUIRE_EXTRAS`` names ``l2metrics`` (CI).

The reference runs keep no training episodes yet, and an expert's log needs them: the test
reruns each reference with a recorder that keeps them (the same seed and config, so the same
run: its evaluation records must equal the run's ``reference_evals.jsonl``) and writes them
to ``reference_episodes.jsonl``, the file the exporter reads.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from l2rl.builder import build_run, build_scenario
from l2rl.config import parse_config
from l2rl.experiment import reference_config, run_seed, seed_torch_stream
from l2rl.logging.files import read_jsonl
from l2rl.logging.l2logger import REFERENCE_EPISODES_FILE, export_run, read_run_logs
from l2rl.logging.recorder import Recorder
from l2rl.metrics_l2m import L2MMetrics, summarize_l2m
from l2rl.types import EpisodeRecord, EvalRecord

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-l2metrics"
TOLERANCE = 1e-9
REQUIRED = "l2metrics" in os.environ.get("L2RL_REQUIRE_EXTRAS", "").split(",")

DRIVER = """
import json, math, sys
from pathlib import Path
import l2logger.util as l2l
from l2metrics.report import MetricsReport
from l2metrics.util import store_ste_data

ll, *experts = sys.argv[1:]
for directory in [ll, *experts]:
    l2l.validate_log(l2l.read_log_data(Path(directory)),
                     l2l.read_logger_info(Path(directory))["metrics_columns"])
for expert in experts:
    store_ste_data(Path(expert), mode="a")
report = MetricsReport(log_dir=Path(ll), perf_measure="reward", smoothing_method="none",
                       normalization_method="none", clamp_outliers=False,
                       maintenance_method="both", transfer_method="both")
report.calculate()

def num(value):
    value = float(value)
    return None if math.isnan(value) else value

life = report.lifetime_metrics_df
transfer = ["forward_transfer_ratio", "backward_transfer_ratio",
            "forward_transfer_contrast", "backward_transfer_contrast"]
print(json.dumps({
    "lifetime": {key: num(life[key].iloc[0]) for key in life.columns} if len(life) else {},
    "per_task": {key: {task: num(v) for task, v in report.task_metrics_df[key].items()}
                 for key in ["perf_maintenance_mrlep", "perf_maintenance_mrtlp",
                             "perf_recovery", "ste_rel_perf", "sample_efficiency"]},
    "transfer": {key: [[a, b, [float(x) for x in values]]
                       for a, pairs in getattr(report, key).items()
                       for b, values in pairs.items()] for key in transfer},
}))
"""


@pytest.fixture(scope="module")
def l2metrics_python() -> Path:
    install = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-l2metrics.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        message = f"cannot make {VENV.name}: {install.stderr.strip()[-2000:]}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return VENV / "bin" / "python"


class _Episodes(Recorder):
    def __init__(self) -> None:
        self.records: list[EpisodeRecord] = []

    def episode(self, record: EpisodeRecord) -> None:
        self.records.append(record)


SLEEP = [{"name": "policy-distillation", "options": {"sleep_updates": 20, "batch_size": 16}}]


@pytest.fixture(scope="module", params=["wake", "sleep"])
def run_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The run; ``sleep``: with a sleep phase after every window, so that its log has
    ``sleep`` evaluation regimes, which replace the ``wake`` ones in l2metrics' rule."""
    out = tmp_path_factory.mktemp(f"l2m-{request.param}")
    config = parse_config(
        {
            "components": SLEEP if request.param == "sleep" else [],
            "name": "l2m",
            "output_dir": str(out),
            "progress": False,
            "torch_threads": 1,
            "scenario": {
                "name": "cartpole-variants",
                "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 40},
                "steps_per_task": 500,
                "cycles": 3,
            },
            "agent": {"name": "dqn", "options": {"learning_starts": 64, "batch_size": 32}},
            "evaluation": {"every": 250, "episodes": 3},
        }
    )
    run = out / "seed_0"
    run_seed(config, 0, run)
    scenario = build_scenario(config)
    kept = list(read_jsonl(run / "reference_evals.jsonl"))
    rows = []
    for index in range(len(scenario.tasks)):
        recorder = _Episodes()
        built = build_run(reference_config(config), 0, scenario=scenario.single_task(index))
        seed_torch_stream(0)
        result = built.runner(recorder=recorder).run()
        assert result.records == [
            EvalRecord.from_row({k: v for k, v in row.items() if k != "reference_for"})
            for row in kept
            if row["reference_for"] == index
        ]
        rows += [json.dumps({"reference_for": index, **asdict(e)}) + "\n" for e in recorder.records]
    (run / REFERENCE_EPISODES_FILE).write_text("".join(rows))
    export_run(run)
    subtypes = {r.block_subtype for r in read_run_logs(run).regimes if r.block_type == "test"}
    assert subtypes == ({"wake", "sleep"} if request.param == "sleep" else {"wake"})
    return run


def _close(ours: float, theirs: float | None) -> None:
    if theirs is None:
        assert math.isnan(ours)
    else:
        assert abs(ours - theirs) <= TOLERANCE, (ours, theirs)


def test_l2m_metrics_equal_l2metrics(l2metrics_python: Path, run_dir: Path, tmp_path: Path) -> None:
    experts = sorted(str(p) for p in (run_dir / "l2logger_ste").iterdir())
    (ll,) = (run_dir / "l2logger").iterdir()
    done = subprocess.run(
        [str(l2metrics_python), "-c", DRIVER, str(ll), *experts],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "L2DATA": str(tmp_path / "l2data")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    logs = read_run_logs(run_dir)
    ours: L2MMetrics = summarize_l2m(logs.regimes, logs.expert_curves())
    print(json.dumps(ours.lifetime), file=sys.stderr)
    for key, value in ours.lifetime.items():
        _close(value, theirs["lifetime"].get(key))
    for key, tasks in theirs["per_task"].items():
        assert set(ours.per_task[key]) <= set(tasks)
        for task, value in tasks.items():
            _close(ours.per_task[key].get(task, math.nan), value)
    for key, pairs in theirs["transfer"].items():
        expected = {(a, b): tuple(values) for a, b, values in pairs}
        assert set(ours.transfer[key]) == set(expected)
        for pair, values in expected.items():
            assert len(ours.transfer[key][pair]) == len(values)
            for mine, official in zip(ours.transfer[key][pair], values, strict=True):
                _close(mine, official)
    # the run exercises every metric, so the comparison is not one of NaNs; with sleep
    # regimes the wake evaluations go, the round before training with them, and forward
    # transfer (which needs a task's evaluation before any training) has none, in both
    undefined = {"forward_transfer_ratio", "forward_transfer_contrast"}
    slept = run_dir.parent.name.startswith("l2m-sleep")
    for key, value in ours.lifetime.items():
        assert math.isfinite(value) != (slept and key in undefined), (key, ours.lifetime)
