"""The l2logger-format export of a run directory (l2rl.logging.l2logger), on a hand-made run:
folders, columns and rows as l2logger 1.8.2 writes them, and a log that reads back as the
regimes the L2M metrics use. (l2logger's and l2metrics' own readers check these files in
tests/extras/test_l2metrics_crosscheck.py.)"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pytest

from l2rl.logging.files import record_to_row
from l2rl.logging.l2logger import export_run, l2m_of_run, read_run_logs
from l2rl.metrics_l2m import Regime, summarize_l2m
from l2rl.types import EpisodeRecord, EvalRecord

HEADER = [
    "block_num",
    "exp_num",
    "worker_id",
    "block_type",
    "block_subtype",
    "task_name",
    "task_params",
    "exp_status",
    "timestamp",
    "reward",
]
STAMP = 1_700_000_000.25  # the evaluation log's modification time


def evaluation(block: int, task: int, returns: tuple[float, ...]) -> EvalRecord:
    name = ["Base", "Long"][task]
    mean = sum(returns) / len(returns)
    return EvalRecord(100 * (block + 1), block, block, task, name, mean, 0.5, 2, True, returns)


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "seed_3"
    run.mkdir()
    scenario = {
        "name": "two tasks/v1",
        "task_aware": True,
        "tasks": [{"name": "Base", "params": {"pole": 0.5}}, {"name": "Long", "params": {}}],
        "schedule": [{"task_index": 0, "steps": 100}, {"task_index": 1, "steps": 100}],
    }
    (run / "scenario.json").write_text(json.dumps(scenario))
    records = [
        evaluation(-1, 0, (1.0, 2.0)),
        evaluation(-1, 1, (3.0, 4.0)),
        evaluation(0, 0, (8.0, 9.0)),
        evaluation(0, 1, (2.5, 3.5)),
        evaluation(1, 0, (6.0, 7.0)),
        evaluation(1, 1, (9.5, 10.5)),
    ]
    write_rows(run / "evals.jsonl", [record_to_row(r) for r in records])
    episodes = [
        EpisodeRecord(0, 0, "Base", 30, 5.0),
        EpisodeRecord(0, 0, "Base", 70, 7.5),
        EpisodeRecord(1, 1, "Long", 160, 12.0),
    ]
    write_rows(run / "episodes.jsonl", [asdict(e) for e in episodes])
    # the reference runs: each task alone (index 0 of its own scenario)
    references = [
        {"reference_for": task, **record_to_row(evaluation(block, 0, (1.0, 1.0)))}
        for task in (0, 1)
        for block in (-1, 0)
    ]
    write_rows(run / "reference_evals.jsonl", references)
    reference_episodes = [
        {"reference_for": 0, **asdict(EpisodeRecord(0, 0, "Base", 50, 4.0))},
        {"reference_for": 1, **asdict(EpisodeRecord(0, 0, "Long", 40, 6.0))},
        {"reference_for": 1, **asdict(EpisodeRecord(0, 0, "Long", 90, 8.0))},
    ]
    write_rows(run / "reference_episodes.jsonl", reference_episodes)
    for name in ("evals.jsonl", "reference_episodes.jsonl"):
        os.utime(run / name, (STAMP, STAMP))
    return run


def read_tsv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def test_the_lifelong_log_has_l2loggers_layout_and_rows(run_dir: Path) -> None:
    directory = export_run(run_dir)
    assert directory == run_dir / "l2logger" / "two-tasks-v1"
    assert json.loads((directory / "logger_info.json").read_text()) == {
        "metrics_columns": ["reward"],
        "log_format_version": "1.1",
    }
    info = json.loads((directory / "scenario_info.json").read_text())
    assert info["scenario_type"] == "custom" and info["seed"] == 3
    worker = directory / "worker-default"
    assert sorted(p.name for p in worker.iterdir()) == [
        "0-test",
        "1-train",
        "2-test",
        "3-train",
        "4-test",
    ]
    stamp = datetime.fromtimestamp(STAMP).strftime("%Y%m%dT%H%M%S.%f")  # local time
    assert stamp.endswith(".250000")
    rows = read_tsv(worker / "1-train" / "data-log.tsv")
    assert rows[0] == HEADER
    assert rows[1:] == [
        [
            "1",
            "4",
            "worker-default",
            "train",
            "wake",
            "base",
            '{"pole": 0.5}',
            "complete",
            stamp,
            "5.0",
        ],
        [
            "1",
            "5",
            "worker-default",
            "train",
            "wake",
            "base",
            '{"pole": 0.5}',
            "complete",
            stamp,
            "7.5",
        ],
    ]
    closing = read_tsv(worker / "2-test" / "data-log.tsv")[1:]
    assert [(r[1], r[3], r[5], r[6], r[9]) for r in closing] == [
        ("6", "test", "base", '{"pole": 0.5}', "8.0"),
        ("7", "test", "base", '{"pole": 0.5}', "9.0"),
        ("8", "test", "long", "{}", "2.5"),
        ("9", "test", "long", "{}", "3.5"),
    ]
    assert read_tsv(worker / "3-train" / "data-log.tsv")[1][:2] == ["3", "10"]


def test_reading_the_log_back_gives_the_regimes(run_dir: Path) -> None:
    directory = export_run(run_dir)
    rows = [row for path in sorted(directory.rglob("data-log.tsv")) for row in read_tsv(path)[1:]]
    rows.sort(key=lambda r: int(r[1]))
    regimes: list[Regime] = []
    for row in rows:
        key = (int(row[0]), row[3], row[4], row[5])
        if regimes and regimes[-1][:4] == key:
            last = regimes[-1]
            regimes[-1] = last._replace(
                exp_nums=(*last.exp_nums, int(row[1])), values=(*last.values, float(row[9]))
            )
        else:
            regimes.append(Regime(*key, (int(row[1]),), (float(row[9]),)))
    assert regimes == read_run_logs(run_dir).regimes


def test_experts_logs_and_metrics(run_dir: Path) -> None:
    export_run(run_dir)
    ste = run_dir / "l2logger_ste"
    assert sorted(p.name for p in ste.iterdir()) == ["base", "long"]
    assert json.loads((ste / "long" / "scenario_info.json").read_text())["scenario_type"] == "ste"
    rows = read_tsv(ste / "long" / "worker-default" / "1-train" / "data-log.tsv")[1:]
    assert [(r[5], r[9]) for r in rows] == [("long", "6.0"), ("long", "8.0")]
    logs = read_run_logs(run_dir)
    assert logs.expert_curves() == {"base": [[4.0]], "long": [[6.0, 8.0]]}
    metrics = l2m_of_run(run_dir)
    assert metrics == summarize_l2m(logs.regimes, logs.expert_curves())
    # base learned 5.0, 7.5 against its expert's 4.0 over the first experience: 5 / 4
    assert metrics.per_task["ste_rel_perf"] == {"base": 1.25, "long": 2.0}


def test_without_reference_episodes_there_are_no_expert_logs(run_dir: Path) -> None:
    (run_dir / "reference_episodes.jsonl").unlink()
    export_run(run_dir)
    assert not (run_dir / "l2logger_ste").exists()
    assert set(l2m_of_run(run_dir).not_applicable) == {"ste_rel_perf", "sample_efficiency"}


def test_export_is_deterministic_and_replaces_earlier_logs(run_dir: Path) -> None:
    directory = export_run(run_dir)
    first = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    (directory / "worker-default" / "99-test").mkdir()
    export_run(run_dir)
    again = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert again == first
    assert not (directory / "worker-default" / "99-test").exists()


def test_a_run_with_references_keeps_their_episodes_and_writes_expert_logs(
    tmp_path: Path,
) -> None:
    from l2rl.config import parse_config
    from l2rl.experiment import run_experiment
    from l2rl.testing.runs import tiny_run_config

    config = tiny_run_config(tmp_path / "runs", name="ste", metrics={"reference_runs": True})
    seed = run_experiment(parse_config(config)).directory / "seed_0"
    rows = [json.loads(line) for line in (seed / "reference_episodes.jsonl").open()]
    assert {row["reference_for"] for row in rows} == {0, 1}
    assert all(row["block"] == 0 and row["episode_return"] > 0 for row in rows)
    assert sorted(p.name for p in (seed / "l2logger_ste").iterdir()) == ["base", "swap-actions"]
    assert not l2m_of_run(seed).not_applicable.get("ste_rel_perf")
