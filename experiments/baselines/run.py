"""Run the continual-learning baselines, commit their per-seed records, regenerate the table.

    .venv/bin/python experiments/baselines/run.py                 # run or resume, then report
    .venv/bin/python experiments/baselines/run.py --report-only   # table + plots from records
    .venv/bin/python experiments/baselines/rerun_cell.py --method reservoir --seed 3

Each scenario's base setting is ``<scenario>.yaml`` beside this file; ``methods.yaml`` says
what each method changes in it (the replay, or components added). Runs go to
``runs/baselines/<scenario>/<method>/seed_<s>/`` and are resumed if interrupted. Each
finished seed's records (evaluation records with per-episode returns, reference records,
config, scenario, agent and environment manifest; a few hundred kB) are copied to
``results/records/<scenario>/<method>/seed_<s>/``, and the table (``results/results.md``,
``results/results.json``) and plots are computed from those committed records only, so
``--report-only`` on a fresh clone regenerates them exactly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console

from l2rl.aggregate import (
    CW_INTERVAL,
    IQM_INTERVAL,
    aggregate_seeds,
    performance_profiles,
    probability_of_improvement,
)
from l2rl.config import RunConfig, load_yaml, parse_config
from l2rl.experiment import metrics_of_run
from l2rl.sweep import SweepEvent, run_sweep

HERE = Path(__file__).resolve().parent
RECORDS = HERE / "results" / "records"
SCENARIOS = ("cartpole-variants",)
"""Scenarios of the committed table (``minigrid-sequence.yaml`` runs with ``--scenarios``)."""
AVAILABLE = ("cartpole-variants", "minigrid-sequence")
METRICS = ("cw_average_performance", "cw_forgetting", "cw_forward_transfer")
LABELS = {
    "cw_average_performance": "average performance",
    "cw_forgetting": "forgetting",
    "cw_forward_transfer": "forward transfer",
}
BASELINE = "fine-tuning"
"""The method every other is compared with by probability of improvement."""
RECORD_FILES = (
    "config.yaml",
    "scenario.json",
    "agent.json",
    "environment.json",
    "evals.jsonl",
    "reference_evals.jsonl",
)
"""What is committed of a seed's run directory: all its metrics are computed from these."""


def experiment_configs(
    scenarios: list[str], methods: list[str], seeds: list[int] | None, output: Path
) -> dict[tuple[str, str], tuple[Path, RunConfig]]:
    """``(scenario, method) -> (directory, RunConfig)`` for the chosen grid."""
    method_changes: dict[str, dict[str, Any]] = load_yaml((HERE / "methods.yaml").read_text())
    unknown = sorted(set(methods) - set(method_changes))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; methods.yaml has {sorted(method_changes)}")
    grid = {}
    for scenario in scenarios:
        base = load_yaml((HERE / f"{scenario}.yaml").read_text())
        for method in methods:
            data = {**base, **(method_changes[method] or {})}
            data["name"] = method
            data["output_dir"] = str(output / scenario)
            if seeds is not None:
                data["seeds"] = seeds
            directory = output / scenario / method
            grid[(scenario, method)] = (directory, parse_config(data))
    return grid


def copy_records(run_dir: Path, destination: Path) -> None:
    """Copy a finished seed's :data:`RECORD_FILES` to ``destination`` (replacing it)."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for name in RECORD_FILES:
        shutil.copy2(run_dir / name, destination / name)


def cell_metrics(records: Path) -> list[dict[str, Any]]:
    """``RunMetrics.to_dict()`` of every committed seed of one table cell, seed order."""
    seed_dirs = sorted(records.glob("seed_*"), key=lambda p: int(p.name.split("_")[1]))
    return [metrics_of_run(d).to_dict() for d in seed_dirs]


def _interval(estimate: float | None, low: float | None, high: float | None) -> str:
    if estimate is None or low is None or high is None:
        return "n/a"
    return f"{estimate:+.2f} [{low:+.2f}, {high:+.2f}]"


def _final_scores(per_seed: list[dict[str, Any]]) -> np.ndarray:
    """``(seeds, tasks)`` of Continual World's final scores."""
    return np.array([m["per_task"]["cw_final_score"] for m in per_seed], dtype=np.float64)


def summarise(cells: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Per cell: the headline summary, and its probability of improving on fine-tuning."""
    result: dict[str, Any] = {}
    for (scenario, method), per_seed in cells.items():
        summary: dict[str, Any] = aggregate_seeds(per_seed)
        baseline = cells.get((scenario, BASELINE))
        if baseline is not None and method != BASELINE:
            p = probability_of_improvement(_final_scores(per_seed), _final_scores(baseline))
            summary["probability_of_improvement"] = {
                "over": BASELINE,
                "of": "cw_final_score per task",
                "estimate": p.estimate,
                "ci_low": p.low,
                "ci_high": p.high,
            }
        result[f"{scenario}/{method}"] = summary
    return result


def write_report(
    cells: dict[tuple[str, str], list[dict[str, Any]]], methods: list[str], results: Path
) -> str:
    """Markdown table + JSON + plots per scenario from the cells' records; returns markdown."""
    results.mkdir(parents=True, exist_ok=True)
    summaries = summarise(cells)
    seeds = sorted({len(v) for v in cells.values()})
    lines = [
        "# Baselines",
        "",
        "Every figure is Continual World's convention, computed as their `tables.py` does",
        "(see `l2rl/metrics.py`): average performance and forgetting use the mean of the last",
        "5 evaluations; forgetting averages over all tasks (the last contributes 0); forward",
        "transfer is the ratio of seed means of plain-mean AUCs against single-task reference",
        "runs of the fine-tuning agent. Scores are normalised to [0, 1]; higher forgetting is",
        f"worse. Seeds per method: {', '.join(map(str, seeds))}.",
        "",
        f"- mean [interval]: {CW_INTERVAL}.",
        f"- IQM [interval]: interquartile mean over seeds of average performance, {IQM_INTERVAL}.",
        f"- P(> {BASELINE}): probability that a random seed of the method has a higher final",
        "  score on a task than a random seed of fine-tuning, averaged over tasks (rliable),",
        f"  with its {IQM_INTERVAL}.",
        "",
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/baselines/run.py --report-only`; rerun any cell from",
        "scratch and compare it record by record with `experiments/baselines/rerun_cell.py`.",
        "",
    ]
    for scenario in sorted({s for s, _ in cells}, key=AVAILABLE.index):
        header = [LABELS[m] for m in METRICS] + ["IQM avg. performance", f"P(> {BASELINE})"]
        lines += [f"## {scenario}", "", "| method | " + " | ".join(header) + " | seeds |"]
        lines.append("|---" * (len(header) + 2) + "|")
        shown = [m for m in methods if (scenario, m) in cells]
        for method in shown:
            summary = summaries[f"{scenario}/{method}"]
            cells_md = [
                _interval(summary[m]["mean"], summary[m]["ci_low"], summary[m]["ci_high"])
                for m in METRICS
            ]
            ap = summary["cw_average_performance"]
            cells_md.append(_interval(ap["iqm"], ap["iqm_low"], ap["iqm_high"]))
            poi = summary.get("probability_of_improvement")
            cells_md.append(
                "-" if poi is None else _interval(poi["estimate"], poi["ci_low"], poi["ci_high"])
            )
            n = summary[METRICS[0]]["n"]
            lines.append(f"| {method} | " + " | ".join(cells_md) + f" | {n} |")
        lines.append("")
        by_method = {m: summaries[f"{scenario}/{m}"] for m in shown}
        plot_bars(scenario, by_method, results / f"{scenario}.png")
        scores = {m: _final_scores(cells[(scenario, m)]) for m in shown}
        plot_profiles(scenario, scores, results / f"{scenario}-profiles.png")
        lines += [
            f"![{scenario}]({scenario}.png)",
            "",
            f"![{scenario} performance profiles]({scenario}-profiles.png)",
            "",
        ]
    markdown = "\n".join(lines)
    (results / "results.md").write_text(markdown)
    (results / "results.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return markdown


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


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or resume) the grid, commit records, write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    all_methods = list(load_yaml((HERE / "methods.yaml").read_text()))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=AVAILABLE)
    parser.add_argument("--methods", nargs="+", default=all_methods)
    parser.add_argument("--seeds", nargs="+", type=int, help="override the configs' seeds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--output", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--records", type=Path, default=RECORDS, help="per-seed records")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--report-only", action="store_true", help="only rebuild table and plots")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    grid = experiment_configs(args.scenarios, args.methods, args.seeds, args.output)
    if not args.report_only:

        def show(event: SweepEvent) -> None:
            figures = ""
            if event.headline is not None:
                figures = "  ".join(f"{LABELS[k][:4]}={event.headline[k]:+.2f}" for k in METRICS)
            console.print(
                f"[{event.done}/{event.total}] {event.label} ({event.seconds:.0f} s) {figures}",
                markup=False,
            )

        run_sweep({d: c for d, c in grid.values()}, args.workers, show)
        for (scenario, method), (directory, config) in grid.items():
            for seed in config.seeds:
                destination = args.records / scenario / method / f"seed_{seed}"
                copy_records(directory / f"seed_{seed}", destination)
    cells = {}
    for scenario, method in grid:
        per_seed = cell_metrics(args.records / scenario / method)
        if per_seed:  # whatever seeds are committed, so a partial grid reports honestly
            cells[(scenario, method)] = per_seed
    print(write_report(cells, args.methods, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
