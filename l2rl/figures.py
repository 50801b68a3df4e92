"""The figures of reports and experiment grids: bars with intervals, performance profiles,
score curves with the training windows, the performance-matrix heatmap (PNG files).

Both :mod:`l2rl.report_document` (``l2rl report``) and :mod:`l2rl.grid` (the experiment
folders' committed reports) draw with these, so a figure means the same in both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.pyplot as plt
import numpy as np

from l2rl.aggregate import performance_profiles
from l2rl.logging.files import read_records

METRICS = ("cw_average_performance", "cw_forgetting", "cw_forward_transfer")
"""The headline metrics of every table, in column order."""
LABELS = {
    "cw_average_performance": "average performance",
    "cw_forgetting": "forgetting",
    "cw_forward_transfer": "forward transfer",
}


def plot_bars(scenario: str, by_method: dict[str, dict[str, Any]], path: Path) -> None:
    """Bars of each headline metric per method with 90% interval whiskers."""
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    names = list(by_method)
    for axis, metric in zip(axes, METRICS, strict=True):
        means, low, high = [], [], []
        for name in names:
            entry = by_method[name][metric]
            mean = entry["mean"] if entry["mean"] is not None else float("nan")
            means.append(mean)
            low.append(mean - entry["ci_low"] if entry["ci_low"] is not None else 0.0)
            high.append(entry["ci_high"] - mean if entry["ci_high"] is not None else 0.0)
        axis.bar(range(len(names)), means, yerr=[low, high], capsize=3, color="tab:blue")
        axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        axis.set_title(LABELS[metric])
        axis.axhline(0.0, color="black", linewidth=0.6)
    figure.suptitle(f"{scenario}: mean and 90% bootstrap interval over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_profiles(scenario: str, scores: dict[str, np.ndarray], path: Path) -> None:
    """rliable performance profiles of the final per-task scores (fraction of runs > tau)."""
    thresholds = np.linspace(0.0, 1.0, 51)
    profiles = performance_profiles(scores, thresholds)
    figure, axis = plt.subplots(figsize=(6.0, 4.0))
    for name, profile in profiles.items():
        axis.plot(thresholds, profile, label=name)
    axis.set_xlabel("final score tau")
    axis.set_ylabel("fraction of (seed, task) runs with score > tau")
    axis.set_title(f"{scenario}: performance profiles")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def window_ends(seed_dir: Path) -> list[int]:
    """Global steps at which each training window of a committed run ended."""
    schedule = json.loads((seed_dir / "scenario.json").read_text())["schedule"]
    return [int(x) for x in np.cumsum([block["steps"] for block in schedule])]


def task_names(seed_dir: Path) -> list[str]:
    """The names of a committed run's tasks, in scenario order."""
    return [t["name"] for t in json.loads((seed_dir / "scenario.json").read_text())["tasks"]]


def mean_curves(
    runs: Sequence[Mapping[tuple[str, int], float]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``series -> (steps, mean over runs)`` of ``(series, step) -> value`` mappings; only
    the steps every run has (runs of one cell share their evaluation steps)."""
    if not runs:
        return {}
    common = set(runs[0]).intersection(*runs[1:])
    out = {}
    for name in sorted({series for series, _ in common}):
        steps = np.array(sorted(step for series, step in common if series == name))
        values = np.array([[run[(name, int(s))] for s in steps] for run in runs])
        out[name] = (steps, values.mean(axis=0))
    return out


def plot_curves(runs: Sequence[Path], title: str, path: Path) -> None:
    """Every task's score over the run (mean over ``runs``), training windows shaded."""
    curves = mean_curves(
        [
            {(r.eval_task_name, r.global_step): r.score for r in read_records(d / "evals.jsonl")}
            for d in runs
        ]
    )
    figure, axis = plt.subplots(figsize=(7.5, 3.6))
    schedule = json.loads((runs[0] / "scenario.json").read_text())["schedule"]
    names = task_names(runs[0])
    starts = [0, *window_ends(runs[0])[:-1]]
    for block, (start, end) in enumerate(zip(starts, window_ends(runs[0]), strict=True)):
        if block % 2 == 0:
            axis.axvspan(start, end, color="grey", alpha=0.12, linewidth=0)
        label = names[schedule[block]["task_index"]]
        axis.text((start + end) / 2, 1.02, label, ha="center", va="bottom", fontsize=7)
    for name in names:
        if name in curves:
            axis.plot(*curves[name], label=name)
    axis.set_ylim(-0.02, 1.1)
    axis.set_xlabel("env steps")
    axis.set_ylabel(f"score (mean of {len(runs)} seeds)")
    axis.legend(fontsize=7, loc="lower right")
    axis.set_title(title, fontsize=9, pad=14)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_matrix(matrix: np.ndarray, names: Sequence[str], title: str, path: Path) -> None:
    """The performance matrix ``R[k, j]`` (rows: after window k; columns: task j)."""
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2.5, 0.45 * len(matrix) + 1.6))
    image = axis.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (k, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            colour = "white" if value < 0.6 else "black"
            axis.text(j, k, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(len(names)), names, fontsize=7)
    rows = ["start", *(f"window {k}" for k in range(1, len(matrix)))]
    axis.set_yticks(range(len(matrix)), rows, fontsize=7)
    figure.colorbar(image, ax=axis, fraction=0.05)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_panels(figure: Any, axes: Any, ylabel: str, title: str, path: Path) -> None:
    """Label a row of curve panels (y axis and legend on the first), title and save it."""
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
