"""Metric tables for the terminal: one run, or an experiment's seeds with intervals."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from l2rl.aggregate import CW_INTERVAL, IQM_INTERVAL, aggregate_seeds
from l2rl.experiment import FAILED_FILE, metrics_of_run
from l2rl.logging.files import read_records
from l2rl.logging.l2logger import l2m_of_run
from l2rl.metrics import HEADLINE_METRICS, RunMetrics
from l2rl.metrics_l2m import L2M_METRICS, L2MMetrics


def _fmt(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:+.3f}" if isinstance(value, float) else str(value)


def run_table(metrics: RunMetrics, title: str) -> Table:
    """Headline metrics of one run; a metric that does not apply says why."""
    table = Table(title=title, caption=_missing_caption(metrics))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    for key in HEADLINE_METRICS:
        note = metrics.not_applicable.get(key, "")
        table.add_row(key, _fmt(metrics[key]), f"n/a: {note}" if note else "")
    return table


L2M_CAPTION = (
    "l2metrics 3.1.0's definitions, preprocessing off; performance = episode return; "
    "lifetime = mean over tasks"
)


def l2m_table(metrics: L2MMetrics, title: str) -> Table:
    """The L2M lifetime metrics of one run (:mod:`l2rl.metrics_l2m`); a metric that does
    not apply says why, one without a value in this run says so."""
    table = Table(title=title, caption=L2M_CAPTION)
    table.add_column("L2M metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    for key in L2M_METRICS:
        note = metrics.not_applicable.get(key, "")
        if note:
            note = f"n/a: {note}"
        elif not np.isfinite(metrics.lifetime[key]):
            note = "undefined in this run: no task meets its conditions (l2rl.metrics_l2m)"
        table.add_row(key, _fmt(metrics.lifetime[key]), note)
    return table


def _missing_caption(metrics: RunMetrics) -> str:
    lines = [window.describe() for window in metrics.windows_without_updates]
    if metrics.missing:
        tasks = sorted({m.task for m in metrics.missing})
        lines.append(
            f"{len(metrics.missing)} missing evaluation(s), of task(s) {tasks}: see metrics.json"
        )
    return "\n".join(lines)


_TASK_COLUMNS = {
    "final": "cw_final_score",
    "forgetting": "cw_forgetting",
    "fwd transfer": "cw_forward_transfer",
    "AUC": "cw_auc",
    "AUC ref": "cw_auc_reference",
}


def task_table(metrics: RunMetrics, task_names: Sequence[str]) -> Table:
    """Per task, in Continual World's convention: final score, forgetting, forward transfer
    and its two AUCs (plain means over the task's training windows)."""
    table = Table(title="per task (Continual World's convention)")
    table.add_column("task")
    for column in _TASK_COLUMNS:
        table.add_column(column, justify="right")
    for j, name in enumerate(task_names):
        values = (metrics.per_task[key][j] for key in _TASK_COLUMNS.values())
        table.add_row(name, *(_fmt(float(v)) for v in values))
    return table


def matrix_table(metrics: RunMetrics, task_names: Sequence[str]) -> Table:
    """The performance matrix R: rows = after window k (0 = before training)."""
    table = Table(title="R\\[k, j]: score on task j after window k")
    table.add_column("after")
    for name in task_names:
        table.add_column(name, justify="right")
    for k, row in enumerate(metrics.performance_matrix):
        label = "start" if k == 0 else f"window {k}"
        table.add_row(label, *(("n/a" if not np.isfinite(v) else f"{v:.3f}") for v in row))
    return table


def seeds_table(summary: Mapping[str, Mapping[str, float | int | None]], title: str) -> Table:
    """Each headline metric over seeds: mean and interval, IQM and interval, seed count."""
    caption = f"mean: {CW_INTERVAL}; IQM: {IQM_INTERVAL}"
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    for column in ("mean", "90% CI", "IQM", "90% CI", "seeds"):
        table.add_column(column, justify="right")
    for key in HEADLINE_METRICS:
        entry = summary.get(key, {})
        interval = f"[{_fmt(entry.get('ci_low'))}, {_fmt(entry.get('ci_high'))}]"
        iqm_interval = f"[{_fmt(entry.get('iqm_low'))}, {_fmt(entry.get('iqm_high'))}]"
        table.add_row(
            key,
            _fmt(entry.get("mean")),
            interval,
            _fmt(entry.get("iqm")),
            iqm_interval,
            _fmt(entry.get("n")),
        )
    return table


def print_metrics(path: Path, console: Console | None = None) -> None:
    """Print the metrics of a run directory or of an experiment directory (all its seeds).

    Metrics are recomputed from the stored evaluation records, so an interrupted run
    still reports what it measured; a run that is not finished (cut short, or stopped on a
    NaN/inf) is named as such and left out of the seeds' aggregate.

    Raises:
        FileNotFoundError: ``path`` holds neither a run nor seed runs.
    """
    console = console or Console()
    seed_dirs = sorted(p for p in path.glob("seed_*") if (p / "evals.jsonl").is_file())
    runs = seed_dirs or ([path] if (path / "evals.jsonl").is_file() else [])
    if not runs:
        raise FileNotFoundError(f"{path} holds no run (no evals.jsonl) and no seed_*/ runs")
    per_seed = []
    unfinished = []
    for run_dir in runs:
        metrics = metrics_of_run(run_dir)
        names = [t["name"] for t in json.loads((run_dir / "scenario.json").read_text())["tasks"]]
        status = run_status(run_dir)
        title = f"{run_dir.parent.name}/{run_dir.name}"
        if status:
            console.print(f"{title}: {status}", style="yellow", markup=False, soft_wrap=True)
            unfinished.append(run_dir.name)
        else:
            per_seed.append(metrics.to_dict())
        console.print(run_table(metrics, title + (" (unfinished)" if status else "")))
        console.print(l2m_table(l2m_of_run(run_dir), f"{title}: L2M"))
        console.print(task_table(metrics, names))
        console.print(matrix_table(metrics, names))
    if len(runs) > 1 and per_seed:
        summary = aggregate_seeds(per_seed, HEADLINE_METRICS)
        title = f"{path.name}: {len(per_seed)} finished seeds"
        if unfinished:
            title += f" (left out, unfinished: {', '.join(unfinished)})"
        console.print(seeds_table(summary, title))


def run_status(run_dir: Path) -> str:
    """Why a run directory's records are not a finished run's ("" if they are): it stopped
    on a NaN/inf (``failed.json``), or it was cut short and not yet resumed (no
    ``metrics.json``), with the last step it recorded."""
    if (run_dir / "metrics.json").is_file():
        return ""
    failed = run_dir / FAILED_FILE
    if failed.is_file():
        return f"failed: {json.loads(failed.read_text())['error']}"
    total = sum(b["steps"] for b in json.loads((run_dir / "scenario.json").read_text())["schedule"])
    steps = [r.global_step for r in read_records(run_dir / "evals.jsonl")]
    last = max(steps, default=0)
    return (
        f"incomplete: recorded up to step {last} of {total} (cut short; "
        f"l2rl resume {run_dir.parent} finishes it)"
    )
