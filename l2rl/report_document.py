"""``l2rl report``: a Markdown and a self-contained HTML report, with PNG figures, of a run,
an experiment (its seeds) or a sweep (every experiment below a folder).

For each experiment: its headline metrics over the finished seeds (mean and Continual
World's 90% interval), the continual-evaluation curve of every task (mean over seeds) with
the training windows shaded, and the performance matrix ``R[k, j]`` as a heatmap. For a
sweep, also per scenario (an experiment's first folder below the sweep) the bars of average
performance, forgetting and forward transfer with their intervals, and one table over
methods x scenarios. Unfinished seeds are named and left out, as ``l2rl metrics`` does.

>>> Table(["a", "b"], [["1", "2"]]).markdown()
['| a | b |', '|---|---|', '| 1 | 2 |']
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2rl.aggregate import aggregate_seeds
from l2rl.experiment import metrics_of_run
from l2rl.figures import plot_bars, plot_curves, plot_matrix, task_names
from l2rl.report import run_status

REPORTED = ("cw_average_performance", "cw_forgetting", "cw_forward_transfer")
"""The headline metrics the report's tables show."""


@dataclass(frozen=True)
class Heading:
    """A section heading."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Table:
    """A table of text cells."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def markdown(self) -> list[str]:
        """The table as Markdown lines."""
        lines = ["| " + " | ".join(self.header) + " |", "|---" * len(self.header) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in self.rows]


@dataclass(frozen=True)
class Figure:
    """A PNG written next to the report."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Text:
    """A paragraph."""

    text: str


Block = Heading | Table | Figure | Text


@dataclass(frozen=True)
class Experiment:
    """An experiment found under the report's path: its label and its run folders."""

    label: str
    runs: list[Path]


def find_experiments(path: Path) -> list[Experiment]:
    """A run folder, an experiment (``seed_*`` runs) or every experiment below ``path``
    (reference-run caches skipped), labelled by their path below it."""
    if (path / "evals.jsonl").is_file():
        return [Experiment(path.name, [path])]
    found, seen = [], set()
    for evals in sorted(path.rglob("seed_*/evals.jsonl")):
        folder = evals.parent.parent
        if "_reference" in folder.parts or folder in seen:
            continue
        seen.add(folder)
        runs = sorted(folder.glob("seed_*"), key=lambda p: int(p.name.split("_")[1]))
        label = path.name if folder == path else str(folder.relative_to(path))
        found.append(Experiment(label, [r for r in runs if (r / "evals.jsonl").is_file()]))
    if not found:
        raise FileNotFoundError(f"{path} holds no run (no evals.jsonl) and no seed_*/ runs")
    return found


def _interval(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    if entry["ci_low"] is None:
        return f"{entry['mean']:+.3f}"
    return f"{entry['mean']:+.3f} [{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}]"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-") or "run"


def build_report(path: Path, out: Path) -> list[Block]:
    """Write the figures of ``path``'s report into ``out``; the report's blocks."""
    out.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [Heading(f"l2rl report: {path}", 1)]
    summaries: dict[str, dict[str, Any]] = {}
    for experiment in find_experiments(path):
        finished = [r for r in experiment.runs if not run_status(r)]
        blocks.append(Heading(experiment.label))
        for run in experiment.runs:
            if status := run_status(run):
                blocks.append(Text(f"{run.name}: {status} (left out)"))
        if not finished:
            continue
        per_seed = [metrics_of_run(r) for r in finished]
        summary = aggregate_seeds([m.to_dict() for m in per_seed])
        summaries[experiment.label] = summary
        rows = [[key, _interval(summary[key])] for key in REPORTED]
        blocks.append(Table([f"metric ({len(finished)} seeds, 90% interval)", "value"], rows))
        slug = _slug(experiment.label)
        plot_curves(finished, experiment.label, out / f"{slug}-curves.png")
        blocks.append(Figure(out / f"{slug}-curves.png", "score of each task over the run"))
        matrix = np.nanmean(np.stack([m.performance_matrix for m in per_seed]), axis=0)
        title = f"{experiment.label}: R[k, j], mean of {len(finished)} seeds"
        plot_matrix(matrix, task_names(finished[0]), title, out / f"{slug}-matrix.png")
        blocks.append(Figure(out / f"{slug}-matrix.png", "performance matrix"))
    if len(summaries) > 1:
        blocks += _comparison(summaries, out)
    return blocks


def _comparison(summaries: dict[str, dict[str, Any]], out: Path) -> list[Block]:
    """Bars per scenario (the label's first part) and one methods x scenarios table."""
    by_scenario: dict[str, dict[str, dict[str, Any]]] = {}
    for label, summary in summaries.items():
        scenario, _, method = label.partition("/")
        by_scenario.setdefault(scenario if method else "all", {})[method or label] = summary
    blocks: list[Block] = [Heading("Comparison")]
    for scenario, cells in by_scenario.items():
        figure = out / f"{_slug(scenario)}-bars.png"
        plot_bars(scenario, cells, figure)
        blocks.append(Figure(figure, f"{scenario}: headline metrics, 90% intervals"))
    scenarios = list(by_scenario)
    methods = sorted({m for cells in by_scenario.values() for m in cells})
    rows = [
        [method]
        + [
            _interval(by_scenario[s][method]["cw_average_performance"])
            if method in by_scenario[s]
            else "-"
            for s in scenarios
        ]
        for method in methods
    ]
    blocks.append(Text("Average performance (mean and 90% interval over seeds):"))
    blocks.append(Table(["method", *scenarios], rows))
    return blocks


def render_markdown(blocks: Sequence[Block], out: Path) -> str:
    """The report as Markdown, figures linked relative to ``out``."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Table):
            lines += [*block.markdown(), ""]
        elif isinstance(block, Figure):
            lines += [f"![{block.caption}]({block.path.relative_to(out)})", ""]
        else:
            lines += [block.text, ""]
    return "\n".join(lines)


def render_html(blocks: Sequence[Block]) -> str:
    """The report as one HTML page, figures embedded (base64 PNG)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode()
            alt = html.escape(block.caption)
            body.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">')
            body.append(f"<figcaption>{alt}</figcaption></figure>")
        else:
            body.append(f"<p>{html.escape(block.text)}</p>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #aaa;padding:2px 6px}"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>l2rl report</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(path: Path, out: Path | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and the figures for ``path`` into ``out``
    (default ``<path>/report``); returns ``out``.

    Raises:
        FileNotFoundError: ``path`` holds no run.
    """
    out = out or path / "report"
    blocks = build_report(path, out)
    (out / "report.md").write_text(render_markdown(blocks, out))
    (out / "report.html").write_text(render_html(blocks))
    return out
