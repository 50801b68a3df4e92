"""Run the continual-learning baselines and regenerate their results table and plots.

    .venv/bin/python experiments/baselines/run.py                 # everything (resumable)
    .venv/bin/python experiments/baselines/run.py --report-only   # table + plots from runs
    .venv/bin/python experiments/baselines/run.py --scenarios cartpole-variants --seeds 0 1

Each scenario's base setting is ``<scenario>.yaml`` beside this file; ``methods.yaml`` says
what each method changes in it (the replay, or components added). Runs go to
``runs/baselines/<scenario>/<method>/seed_<s>/`` and are resumed if interrupted; the table
(``results/results.md``, ``results/results.json``) and plots (``results/<scenario>.png``)
are regenerated from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
from rich.console import Console

from l2rl.config import load_yaml, parse_config
from l2rl.metrics import HEADLINE_METRICS, aggregate_seeds
from l2rl.sweep import SweepEvent, run_sweep

HERE = Path(__file__).resolve().parent
SCENARIOS = ("cartpole-variants", "minigrid-sequence")
METRICS = ("average_performance", "forgetting", "forward_transfer")
LABELS = {
    "average_performance": "average performance",
    "forgetting": "forgetting",
    "forward_transfer": "forward transfer",
}


def experiment_configs(
    scenarios: list[str], methods: list[str], seeds: list[int] | None, output: Path
) -> dict[tuple[str, str], tuple[Path, Any]]:
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


def _fmt(entry: dict[str, Any]) -> str:
    if entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:+.2f} [{entry['ci_low']:+.2f}, {entry['ci_high']:+.2f}]"


def write_report(
    summaries: dict[tuple[str, str], dict[str, Any]], methods: list[str], results: Path
) -> str:
    """Markdown table + JSON + one bar plot per scenario; returns the markdown."""
    results.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Baselines",
        "",
        "Mean over seeds with the 90% bootstrap interval (4000 resamples) in brackets.",
        "Scores are normalised to [0, 1]; forgetting is Continual World's F (higher is worse);",
        "forward transfer is against single-task reference runs of the fine-tuning agent.",
        "Regenerate with `.venv/bin/python experiments/baselines/run.py`.",
        "",
    ]
    scenarios = sorted({s for s, _ in summaries}, key=SCENARIOS.index)
    for scenario in scenarios:
        lines += [
            f"## {scenario}",
            "",
            "| method | " + " | ".join(LABELS[m] for m in METRICS) + " | seeds |",
        ]
        lines.append("|---" * (len(METRICS) + 2) + "|")
        for method in methods:
            summary = summaries.get((scenario, method))
            if summary is None:
                continue
            cells = [_fmt(summary[m]) for m in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {summary[METRICS[0]]['n']} |")
        lines.append("")
        plot(
            scenario,
            {m: summaries[(scenario, m)] for m in methods if (scenario, m) in summaries},
            results / f"{scenario}.png",
        )
        lines += [f"![{scenario}]({scenario}.png)", ""]
    markdown = "\n".join(lines)
    (results / "results.md").write_text(markdown)
    serialisable = {f"{s}/{m}": summary for (s, m), summary in summaries.items()}
    (results / "results.json").write_text(json.dumps(serialisable, indent=2) + "\n")
    return markdown


def plot(scenario: str, by_method: dict[str, dict[str, Any]], path: Path) -> None:
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


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or resume) the grid, write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    all_methods = list(load_yaml((HERE / "methods.yaml").read_text()))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--methods", nargs="+", default=all_methods)
    parser.add_argument("--seeds", nargs="+", type=int, help="override the configs' seeds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--output", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--report-only", action="store_true", help="only rebuild table and plots")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    grid = experiment_configs(args.scenarios, args.methods, args.seeds, args.output)
    if args.report_only:
        summaries = {}
        for key, (directory, config) in grid.items():
            # whatever seeds have finished, so a partial sweep can be reported honestly
            done = [directory / f"seed_{s}" / "metrics.json" for s in config.seeds]
            per_seed = [json.loads(path.read_text()) for path in done if path.is_file()]
            if per_seed:
                summaries[key] = aggregate_seeds(per_seed, HEADLINE_METRICS)
    else:

        def show(event: SweepEvent) -> None:
            figures = ""
            if event.headline is not None:
                figures = "  ".join(f"{k[:4]}={event.headline[k]:+.2f}" for k in METRICS)
            console.print(
                f"[{event.done}/{event.total}] {event.label} ({event.seconds:.0f} s) {figures}",
                markup=False,
            )

        by_directory = run_sweep({d: c for d, c in grid.values()}, args.workers, show)
        summaries = {key: by_directory[directory] for key, (directory, _) in grid.items()}
    print(write_report(summaries, args.methods, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
