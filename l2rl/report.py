"""Metric tables for the terminal: one run, or an experiment's seeds with intervals."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from l2rl.experiment import metrics_of_run
from l2rl.metrics import HEADLINE_METRICS, RunMetrics, aggregate_seeds


def _fmt(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:+.3f}" if isinstance(value, float) else str(value)


def run_table(metrics: RunMetrics, title: str) -> Table:
    """Headline metrics of one run."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    data = metrics.to_dict()
    for key in HEADLINE_METRICS:
        table.add_row(key, _fmt(data.get(key)))
    return table


def task_table(metrics: RunMetrics, task_names: Sequence[str]) -> Table:
    """Per task: final score, forgetting, forward transfer and its two AUCs."""
    table = Table(title="per task")
    for column in ("task", "final", "forgetting", "fwd transfer", "AUC", "AUC ref"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for j, name in enumerate(task_names):
        values = (
            metrics.final_scores[j],
            metrics.forgetting_per_task[j],
            metrics.forward_transfer_per_task[j],
            metrics.auc[j],
            metrics.auc_reference[j],
        )
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
    """Mean and 90% bootstrap interval of each headline metric over seeds."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("90% CI", justify="right")
    table.add_column("seeds", justify="right")
    for key in HEADLINE_METRICS:
        entry = summary.get(key, {})
        interval = f"[{_fmt(entry.get('ci_low'))}, {_fmt(entry.get('ci_high'))}]"
        table.add_row(key, _fmt(entry.get("mean")), interval, _fmt(entry.get("n")))
    return table


def print_metrics(path: Path, console: Console | None = None) -> None:
    """Print the metrics of a run directory or of an experiment directory (all its seeds).

    Metrics are recomputed from the stored evaluation records, so an interrupted run
    still reports what it measured.

    Raises:
        FileNotFoundError: ``path`` holds neither a run nor seed runs.
    """
    console = console or Console()
    seed_dirs = sorted(p for p in path.glob("seed_*") if (p / "evals.jsonl").is_file())
    runs = seed_dirs or ([path] if (path / "evals.jsonl").is_file() else [])
    if not runs:
        raise FileNotFoundError(f"{path} holds no run (no evals.jsonl) and no seed_*/ runs")
    per_seed = []
    for run_dir in runs:
        metrics = metrics_of_run(run_dir)
        names = [t["name"] for t in json.loads((run_dir / "scenario.json").read_text())["tasks"]]
        console.print(run_table(metrics, f"{run_dir.parent.name}/{run_dir.name}"))
        console.print(task_table(metrics, names))
        console.print(matrix_table(metrics, names))
        per_seed.append(metrics.to_dict())
    if len(runs) > 1:
        summary = aggregate_seeds(per_seed, HEADLINE_METRICS)
        console.print(seeds_table(summary, f"{path.name}: {len(runs)} seeds"))
