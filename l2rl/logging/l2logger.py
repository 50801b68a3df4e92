"""A run's log in the l2logger format (log format 1.1), the input of JHU APL's l2metrics.

Written from a run directory's files when the run ends (and again by :func:`export_run` at
any time); :mod:`l2rl.metrics_l2m` describes the log's blocks. Layout under the run's
directory::

    l2logger/<scenario>/                  the lifelong-learning log
        logger_info.json                  metrics_columns ["reward"], log_format_version "1.1"
        scenario_info.json                {"scenario_type": "custom", tasks, schedule, seed}
        worker-default/<block_num>-<block_type>/data-log.tsv
    l2logger_ste/<task>/                  each task's single-task expert (STE) log, the
                                          task's reference run (``scenario_type: "ste"``)

Each ``data-log.tsv`` has l2logger's columns in its order: ``block_num``, ``exp_num``,
``worker_id``, ``block_type`` (``train``/``test``), ``block_subtype`` (``wake``; ``sleep``
for the round after a sleep phase, ``sleep_evals.jsonl``),
``task_name``, ``task_params`` (JSON), ``exp_status`` (``complete``), ``timestamp`` and the
metric column ``reward`` (the experience's return), tab-separated, one experience a row,
as ``l2logger.DataLogger`` names its folders and writes its rows. It is written here
rather than through ``DataLogger``, which stamps every row with the time it is logged and
its folder with the time it is created: the records carry no wall-clock time, so every
row carries the time the run's records were last written (the evaluation log's
modification time), and the same run gives the same files.

STE logs need the reference runs' training episodes (``reference_episodes.jsonl``: an
:class:`~l2rl.types.EpisodeRecord` row plus ``reference_for``, the task index); a run
without that file has no STE logs, and its STE-based metrics are not applicable.

To score the logs with l2metrics (``bash scripts/install-l2metrics.sh``)::

    L2DATA=/tmp/l2data .venv-l2metrics/bin/python -m l2metrics -s w -l RUN/l2logger_ste/<task>
    L2DATA=/tmp/l2data .venv-l2metrics/bin/python -m l2metrics -l RUN/l2logger/<scenario> \\
        -g none -n none -m both -t both
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from l2rl.logging.files import atomic_write_json, atomic_write_text, read_jsonl, read_records
from l2rl.logging.recorder import EPISODES_FILE, SLEEP_EVALS_FILE
from l2rl.metrics_l2m import L2MMetrics, Regime, run_regimes, summarize_l2m
from l2rl.types import EpisodeRecord, EvalRecord

LOG_FORMAT_VERSION = "1.1"
METRICS_COLUMNS = ("reward",)
"""The log's metric columns: ``reward``, each experience's undiscounted return."""

STANDARD_COLUMNS = (
    "block_num",
    "exp_num",
    "worker_id",
    "block_type",
    "block_subtype",
    "task_name",
    "task_params",
    "exp_status",
    "timestamp",
)
"""l2logger's standard columns, in the order ``DataLogger`` writes them."""

WORKER_ID = "worker-default"
"""``DataLogger``'s default worker id: one worker per run."""

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%f"
LL_DIR = "l2logger"
STE_DIR = "l2logger_ste"
REFERENCE_EVALS_FILE = "reference_evals.jsonl"
REFERENCE_EPISODES_FILE = "reference_episodes.jsonl"

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class RunLogs:
    """A run's L2M log and, per task (lower-case name), its experts' logs."""

    scenario: Mapping[str, Any]
    seed: int | None
    regimes: list[Regime]
    experts: dict[str, list[list[Regime]]]

    def expert_curves(self) -> dict[str, list[list[float]]]:
        """Each task's expert learning curves: the values of its experts' learning regimes."""
        return {
            task: [[v for r in log if r.block_type == "train" for v in r.values] for log in logs]
            for task, logs in self.experts.items()
        }


def read_run_logs(run_dir: Path) -> RunLogs:
    """The L2M logs of a run directory: its own from ``evals.jsonl`` and ``episodes.jsonl``,
    its experts' from the reference files (none without ``reference_episodes.jsonl``)."""
    scenario = json.loads((run_dir / "scenario.json").read_text())
    episodes_file = run_dir / EPISODES_FILE
    episodes = _episodes(episodes_file) if episodes_file.is_file() else []
    slept = run_dir / SLEEP_EVALS_FILE
    sleep_records = read_records(slept) if slept.is_file() else []
    regimes = run_regimes(read_records(run_dir / "evals.jsonl"), episodes, sleep_records)
    experts: dict[str, list[list[Regime]]] = {}
    if (run_dir / REFERENCE_EPISODES_FILE).is_file():
        references = _by_task(run_dir / REFERENCE_EVALS_FILE, EvalRecord.from_row)
        trained = _by_task(run_dir / REFERENCE_EPISODES_FILE, lambda row: EpisodeRecord(**row))
        for index, task in enumerate(scenario["tasks"]):
            log = run_regimes(references.get(index, []), trained.get(index, []))
            experts[task["name"].lower()] = [log]
    return RunLogs(scenario, _seed(run_dir), regimes, experts)


def l2m_of_run(run_dir: Path) -> L2MMetrics:
    """The L2M metrics of a run directory (:func:`l2rl.metrics_l2m.summarize_l2m`)."""
    logs = read_run_logs(run_dir)
    return summarize_l2m(logs.regimes, logs.expert_curves())


def export_run(run_dir: Path) -> Path:
    """Write the run's l2logger logs (module docstring), replacing earlier ones; the
    lifelong-learning log's directory."""
    logs = read_run_logs(run_dir)
    params = {t["name"].lower(): t["params"] for t in logs.scenario["tasks"]}
    for name in (LL_DIR, STE_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    info = {
        "scenario_type": "custom",
        "name": logs.scenario["name"],
        "seed": logs.seed,
        "tasks": logs.scenario["tasks"],
        "schedule": logs.scenario["schedule"],
    }
    directory = run_dir / LL_DIR / _folder_name(logs.scenario["name"])
    write_log(directory, logs.regimes, params, info, _modified(run_dir / "evals.jsonl"))
    for task, expert_logs in logs.experts.items():
        expert_info = {"scenario_type": "ste", "name": task, "seed": logs.seed}
        stamp = _modified(run_dir / REFERENCE_EPISODES_FILE)
        for log in expert_logs:
            write_log(run_dir / STE_DIR / _folder_name(task), log, params, expert_info, stamp)
    return directory


def write_log(
    directory: Path,
    regimes: Sequence[Regime],
    task_params: Mapping[str, Mapping[str, Any]],
    scenario_info: Mapping[str, Any],
    timestamp: str,
) -> None:
    """Write one l2logger log of ``regimes`` in ``directory``.

    Args:
        directory: the log's directory (it holds ``logger_info.json``).
        regimes: the log, in order (:func:`l2rl.metrics_l2m.run_regimes`).
        task_params: each task's parameters, by the task's name in ``regimes``.
        scenario_info: the contents of ``scenario_info.json``.
        timestamp: every row's ``timestamp`` (format ``%Y%m%dT%H%M%S.%f``).
    """
    logger_info = {
        "metrics_columns": list(METRICS_COLUMNS),
        "log_format_version": LOG_FORMAT_VERSION,
    }
    atomic_write_json(directory / "logger_info.json", logger_info)
    atomic_write_json(directory / "scenario_info.json", dict(scenario_info))
    blocks: dict[tuple[int, str], list[Regime]] = {}
    for regime in regimes:
        blocks.setdefault((regime.block_num, regime.block_type), []).append(regime)
    for (block_num, block_type), members in blocks.items():
        text = io.StringIO()
        writer = csv.writer(text, delimiter="\t", quotechar='"', lineterminator="\n")
        writer.writerow((*STANDARD_COLUMNS, *METRICS_COLUMNS))
        for regime in members:
            params = json.dumps(dict(task_params.get(regime.task, {})))
            for exp_num, value in zip(regime.exp_nums, regime.values, strict=True):
                writer.writerow(
                    (
                        regime.block_num,
                        exp_num,
                        WORKER_ID,
                        regime.block_type,
                        regime.block_subtype,
                        regime.task,
                        params,
                        "complete",
                        timestamp,
                        repr(float(value)),
                    )
                )
        path = directory / WORKER_ID / f"{block_num}-{block_type}" / "data-log.tsv"
        atomic_write_text(path, text.getvalue())


def _episodes(path: Path) -> list[EpisodeRecord]:
    return [EpisodeRecord(**row) for row in read_jsonl(path)]


def _by_task(path: Path, parse: Callable[[dict[str, Any]], _Row]) -> dict[int, list[_Row]]:
    """Rows of a reference file, parsed, by their ``reference_for`` task index."""
    result: dict[int, list[_Row]] = {}
    for row in read_jsonl(path):
        result.setdefault(int(row.pop("reference_for")), []).append(parse(row))
    return result


def _seed(run_dir: Path) -> int | None:
    match = re.fullmatch(r"seed_(\d+)", run_dir.name)
    return int(match.group(1)) if match else None


def _folder_name(name: str) -> str:
    """``name`` with every run of characters outside ``[0-9A-Za-z_.-]`` made one ``-``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", name)


def _modified(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).strftime(TIMESTAMP_FORMAT)
