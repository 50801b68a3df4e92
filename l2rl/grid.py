"""A grid of methods x scenarios x seeds whose committed per-seed records rebuild its table.

An experiment folder (``experiments/<name>/``) holds one base setting per scenario
(``<scenario>.yaml``, a :class:`~l2rl.config.RunConfig` without ``name``) and
``methods.yaml``, which says what each method changes in it. A :class:`Grid` describes the
folder (its scenarios, the method every other is compared with, the title of its report,
the files of a seed's run directory that are committed) and does the rest, the same way
for every experiment:

* :meth:`Grid.experiment_configs`: the config of every ``(scenario, method)`` cell,
* :meth:`Grid.main`: run (or resume) the grid with :func:`l2rl.sweep.run_sweep`, copy each
  finished seed's record files to ``results/records/<scenario>/<method>/seed_<s>/``
  (:meth:`Grid.copy_records`), and write the report from those records alone,
* :meth:`Grid.write_report`: ``results/results.md`` and ``results.json`` with Continual
  World's metrics (mean and 90% percentile bootstrap over seeds), rliable's IQM and the
  probability of improvement over the baseline method, bar and performance-profile plots,
  and any further :data:`Section` (e.g. :class:`ScoreCurves`), all from the committed
  records, so that ``--report-only`` on a fresh clone regenerates them byte for byte.

How a method changes the base setting (:func:`l2rl.config.merge_method`): a mapping merges
into the base's mapping key by key (recursively), any other value replaces the base's, and a
key ``<name>+`` appends its list to the base's list ``<name>`` (``components+: [...]`` adds
components to those of the scenario's base setting). A method's ``only: [scenario, ...]``
runs it on those scenarios alone (e.g. a detector whose thresholds suit one scenario).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    probability_of_improvement,
)
from l2rl.config import RunConfig, load_config, load_yaml, merge_method, parse_config
from l2rl.experiment import metrics_of_run
from l2rl.figures import (
    LABELS,
    METRICS,
    mean_curves,
    plot_bars,
    plot_profiles,
    save_panels,
    task_names,
    window_ends,
)
from l2rl.logging.files import read_jsonl, read_records
from l2rl.logging.l2logger import REFERENCE_EVALS_FILE
from l2rl.logging.recorder import SLEEP_EVALS_FILE
from l2rl.report_document import Table
from l2rl.sweep import SweepEvent, run_sweep

RECORD_FILES = (
    "config.yaml",
    "scenario.json",
    "agent.json",
    "environment.json",
    "evals.jsonl",
    REFERENCE_EVALS_FILE,
)
"""What is committed of a seed's run directory by default: its metrics come from these."""

Cell = tuple[str, str]
"""``(scenario, method)``."""


@dataclass(frozen=True)
class SectionInput:
    """What a report section of one scenario is drawn from (committed records only).

    Attributes:
        scenario: the scenario.
        methods: the methods shown, in table order.
        metrics: per method, ``RunMetrics.to_dict()`` of each committed seed, seed order.
        seed_dirs: per method, the committed record folders of its seeds, seed order.
        results: where figures go.
    """

    scenario: str
    methods: list[str]
    metrics: dict[str, list[dict[str, Any]]]
    seed_dirs: dict[str, list[Path]]
    results: Path


Section = Callable[[SectionInput], list[str]]
"""A further part of a scenario's report: writes its figures, returns its markdown lines."""


def cell_metrics(records: Path) -> list[dict[str, Any]]:
    """``RunMetrics.to_dict()`` of every committed seed of one table cell, seed order."""
    return [metrics_of_run(d).to_dict() for d in seed_dirs(records)]


def seed_dirs(records: Path) -> list[Path]:
    """The ``seed_<s>`` folders under ``records``, in seed order."""
    return sorted(records.glob("seed_*"), key=lambda p: int(p.name.split("_")[1]))


def _interval(estimate: float | None, low: float | None, high: float | None) -> str:
    if estimate is None or low is None or high is None:
        return "n/a"
    return f"{estimate:+.2f} [{low:+.2f}, {high:+.2f}]"


def final_scores(per_seed: list[dict[str, Any]]) -> np.ndarray:
    """``(seeds, tasks)`` of Continual World's final scores."""
    return np.array([m["per_task"]["cw_final_score"] for m in per_seed], dtype=np.float64)


@dataclass(frozen=True)
class Grid:
    """One experiment folder's grid and report (module docstring).

    Attributes:
        folder: the experiment folder (``<scenario>.yaml``, ``methods.yaml``, ``results/``).
        title: the report's heading.
        scenarios: the scenarios of the committed table (the default of ``--scenarios``).
        available: every scenario with a base setting in the folder (``--scenarios``
            choices, and the order of the report's sections).
        baseline: the method every other is compared with (probability of improvement).
        reference: who the single-task reference runs are, in the report's words.
        regenerate: the report's lines saying how to regenerate it.
        output: the default folder of the runs.
        record_files: what is committed of a seed's run directory.
        optional_record_files: committed too where a run wrote them (e.g.
            ``task_changes.jsonl``, written at a run's first inferred task change).
        sections: further parts of each scenario's report, after the standard plots.
    """

    folder: Path
    title: str
    scenarios: tuple[str, ...]
    available: tuple[str, ...]
    baseline: str
    reference: str
    regenerate: tuple[str, ...]
    output: Path
    record_files: tuple[str, ...] = RECORD_FILES
    optional_record_files: tuple[str, ...] = ()
    sections: tuple[Section, ...] = field(default=())

    @property
    def records(self) -> Path:
        """Where the committed per-seed records live."""
        return self.folder / "results" / "records"

    @property
    def results(self) -> Path:
        """Where the report goes."""
        return self.folder / "results"

    def methods(self, configs: Path | None = None) -> list[str]:
        """The methods of ``methods.yaml`` (of ``configs``, default the folder), in order."""
        return list(load_yaml(((configs or self.folder) / "methods.yaml").read_text()))

    def experiment_configs(
        self,
        scenarios: list[str],
        methods: list[str],
        seeds: list[int] | None,
        output: Path,
        configs: Path | None = None,
    ) -> dict[Cell, tuple[Path, RunConfig]]:
        """``(scenario, method) -> (directory, RunConfig)`` for the chosen grid (without
        the cells a method's ``only`` leaves out).

        Args:
            scenarios: which base settings.
            methods: which entries of ``methods.yaml``.
            seeds: replace the configs' seeds.
            output: runs go to ``<output>/<scenario>/<method>/``.
            configs: read the yaml files from this folder instead of :attr:`folder`.
        """
        source = configs or self.folder
        method_changes: dict[str, dict[str, Any]] = load_yaml((source / "methods.yaml").read_text())
        unknown = sorted(set(methods) - set(method_changes))
        if unknown:
            raise SystemExit(
                f"unknown methods {unknown}; methods.yaml has {sorted(method_changes)}"
            )
        only: dict[str, list[str]] = {}  # a method's scenarios, where it names them
        for method in method_changes:
            changes = dict(method_changes[method] or {})
            if "only" in changes:
                named = changes.pop("only")
                if not isinstance(named, list) or not set(named) <= set(self.available):
                    raise SystemExit(
                        f"method {method!r}: `only` must list scenarios of "
                        f"{list(self.available)}, got {named!r}"
                    )
                only[method] = named
            method_changes[method] = changes
        grid = {}
        for scenario in scenarios:
            base = load_yaml((source / f"{scenario}.yaml").read_text())
            for method in methods:
                if scenario not in only.get(method, [scenario]):
                    continue
                data = merge_method(base, method_changes[method])
                data["name"] = method
                data["output_dir"] = str(output / scenario)
                if seeds is not None:
                    data["seeds"] = seeds
                directory = output / scenario / method
                grid[(scenario, method)] = (directory, parse_config(data))
        return grid

    def copy_records(self, run_dir: Path, destination: Path) -> None:
        """Copy a finished seed's :attr:`record_files` (and the optional ones it has) to
        ``destination`` (replacing it). A run configured without reference runs
        (``metrics.reference_runs: false``) has no ``reference_evals.jsonl`` to copy."""
        if destination.exists():
            shutil.rmtree(destination)
        destination.mkdir(parents=True)
        required = self.record_files
        if not load_config(run_dir / "config.yaml").metrics.reference_runs:
            required = tuple(n for n in required if n != REFERENCE_EVALS_FILE)
        for name in required:
            shutil.copy2(run_dir / name, destination / name)
        for name in self.optional_record_files:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, destination / name)

    def summarise(self, cells: dict[Cell, list[dict[str, Any]]]) -> dict[str, Any]:
        """Per cell: the headline summary, and its probability of improving on the
        baseline method."""
        result: dict[str, Any] = {}
        for (scenario, method), per_seed in cells.items():
            summary: dict[str, Any] = aggregate_seeds(per_seed)
            baseline = cells.get((scenario, self.baseline))
            if baseline is not None and method != self.baseline:
                p = probability_of_improvement(final_scores(per_seed), final_scores(baseline))
                summary["probability_of_improvement"] = {
                    "over": self.baseline,
                    "of": "cw_final_score per task",
                    "estimate": p.estimate,
                    "ci_low": p.low,
                    "ci_high": p.high,
                }
            result[f"{scenario}/{method}"] = summary
        return result

    def _header(self, seeds: list[int]) -> list[str]:
        base = self.baseline
        return [
            f"# {self.title}",
            "",
            "Every figure is Continual World's convention, computed as their `tables.py` does",
            "(see `l2rl/metrics.py`): average performance and forgetting use the mean of the last",
            "5 evaluations; forgetting averages over all tasks (the last contributes 0); forward",
            "transfer is the ratio of seed means of plain-mean AUCs against single-task reference",
            f"runs of {self.reference}. Scores are normalised to [0, 1]; higher forgetting is",
            f"worse. Seeds per method: {', '.join(map(str, seeds))}.",
            "",
            f"- mean [interval]: {CW_INTERVAL}.",
            f"- IQM [interval]: interquartile mean over seeds of average performance, "
            f"{IQM_INTERVAL}.",
            f"- P(> {base}): probability that a random seed of the method has a higher final",
            f"  score on a task than a random seed of {base}, averaged over tasks (rliable),",
            f"  with its {IQM_INTERVAL}.",
            "",
            *self.regenerate,
            "",
        ]

    def write_report(
        self,
        cells: dict[Cell, list[dict[str, Any]]],
        methods: list[str],
        results: Path,
        records: Path | None = None,
    ) -> str:
        """Markdown table + JSON + plots per scenario from the cells' records; returns the
        markdown. ``records`` (the committed records the cells came from) is needed when
        the grid has :attr:`sections`."""
        if self.sections and records is None:
            raise ValueError(f"{self.title}: its report sections read the records folder")
        results.mkdir(parents=True, exist_ok=True)
        summaries = self.summarise(cells)
        seeds = sorted({len(v) for v in cells.values()})
        lines = self._header(seeds)
        for scenario in sorted({s for s, _ in cells}, key=self.available.index):
            header = [LABELS[m] for m in METRICS] + [
                "IQM avg. performance",
                f"P(> {self.baseline})",
            ]
            rows = []
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
                    "-"
                    if poi is None
                    else _interval(poi["estimate"], poi["ci_low"], poi["ci_high"])
                )
                rows.append([method, *cells_md, str(summary[METRICS[0]]["n"])])
            table = Table(["method", *header, "seeds"], rows)
            lines += [f"## {scenario}", "", *table.markdown(), ""]
            by_method = {m: summaries[f"{scenario}/{m}"] for m in shown}
            plot_bars(scenario, by_method, results / f"{scenario}.png")
            scores = {m: final_scores(cells[(scenario, m)]) for m in shown}
            plot_profiles(scenario, scores, results / f"{scenario}-profiles.png")
            lines += [
                f"![{scenario}]({scenario}.png)",
                "",
                f"![{scenario} performance profiles]({scenario}-profiles.png)",
                "",
            ]
            if self.sections:
                assert records is not None
                section_input = SectionInput(
                    scenario=scenario,
                    methods=shown,
                    metrics={m: cells[(scenario, m)] for m in shown},
                    seed_dirs={m: seed_dirs(records / scenario / m) for m in shown},
                    results=results,
                )
                for section in self.sections:
                    lines += section(section_input)
        markdown = "\n".join(lines)
        (results / "results.md").write_text(markdown)
        (results / "results.json").write_text(json.dumps(summaries, indent=2) + "\n")
        return markdown

    def main(self, argv: Sequence[str] | None = None, description: str | None = None) -> int:
        """Parse arguments, run (or resume) the grid, commit records, write the report."""
        parser = argparse.ArgumentParser(
            description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument(
            "--scenarios", nargs="+", default=list(self.scenarios), choices=self.available
        )
        parser.add_argument("--methods", nargs="+", help="default: every one in methods.yaml")
        parser.add_argument("--seeds", nargs="+", type=int, help="override the configs' seeds")
        parser.add_argument("--workers", type=int, default=2, help="worker processes")
        parser.add_argument("--output", type=Path, default=self.output)
        parser.add_argument("--records", type=Path, default=self.records, help="per-seed records")
        parser.add_argument("--results", type=Path, default=self.results)
        parser.add_argument(
            "--configs",
            type=Path,
            help="read <scenario>.yaml and methods.yaml from this folder (tests: tiny budgets)",
        )
        parser.add_argument(
            "--report-only", action="store_true", help="only rebuild table and plots"
        )
        parser.add_argument(
            "--collect-only",
            action="store_true",
            help="copy the records of the seeds finished so far (a grid cut short), then "
            "report, without running anything",
        )
        args = parser.parse_args(argv)
        methods = args.methods or self.methods(args.configs)

        console = Console(stderr=True)
        grid = self.experiment_configs(
            args.scenarios, methods, args.seeds, args.output, args.configs
        )
        if not args.report_only:

            def show(event: SweepEvent) -> None:
                figures = ""
                if event.headline is not None:
                    figures = "  ".join(
                        f"{LABELS[k][:4]}={event.headline[k]:+.2f}" for k in METRICS
                    )
                console.print(
                    f"[{event.done}/{event.total}] {event.label} ({event.seconds:.0f} s) {figures}",
                    markup=False,
                )

            if not args.collect_only:
                run_sweep({d: c for d, c in grid.values()}, args.workers, show)
            for (scenario, method), (directory, config) in grid.items():
                for seed in config.seeds:
                    run_dir = directory / f"seed_{seed}"
                    if (run_dir / "metrics.json").is_file():  # finished (all are, after a sweep)
                        destination = args.records / scenario / method / f"seed_{seed}"
                        self.copy_records(run_dir, destination)
        # the report covers every committed cell, not only the ones this call ran
        everything = self.methods(args.configs)
        cells = {}
        for scenario in dict.fromkeys([*self.scenarios, *args.scenarios]):
            for method in everything:
                per_seed = cell_metrics(args.records / scenario / method)
                if per_seed:  # whatever seeds are committed: a partial grid reports honestly
                    cells[(scenario, method)] = per_seed
        print(self.write_report(cells, everything, args.results, args.records))
        return 0


@dataclass(frozen=True)
class ScoreCurves:
    """A section: each task's score over the run, one panel per method, mean over seeds,
    with the ends of the training windows marked (``<scenario>-curves.png``)."""

    def __call__(self, data: SectionInput) -> list[str]:
        """Draw the figure from the records' ``evals.jsonl``; its markdown lines."""
        panels = [m for m in data.methods if data.seed_dirs[m]]
        if not panels:
            return []
        figure, axes = plt.subplots(
            1, len(panels), figsize=(3.6 * len(panels), 3.2), sharey=True, squeeze=False
        )
        for axis, method in zip(axes[0], panels, strict=True):
            dirs = data.seed_dirs[method]
            runs = [
                {
                    (row["eval_task_name"], int(row["global_step"])): float(row["score"])
                    for row in read_jsonl(d / "evals.jsonl")
                }
                for d in dirs
            ]
            curves = mean_curves(runs)
            for name in task_names(dirs[0]):
                if name in curves:
                    axis.plot(*curves[name], label=name)
            for end in window_ends(dirs[0])[:-1]:
                axis.axvline(end, color="grey", linestyle="--", linewidth=0.7)
            axis.set_title(f"{method} ({len(dirs)} seeds)", fontsize=9)
            axis.set_xlabel("env steps")
        name = f"{data.scenario}-curves.png"
        title = f"{data.scenario}: score of each task over the run"
        save_panels(figure, axes, "score (mean over seeds)", title, data.results / name)
        return [f"![{data.scenario} score curves]({name})", ""]


@dataclass(frozen=True)
class EvalScalarCurves:
    """A section: an evaluation-time diagnostic per task over the run (from the records'
    ``eval_scalars.jsonl``), one panel per task, one line per method, mean over seeds.

    Attributes:
        tag: the scalar's tag with ``{task}`` where the task's name goes, e.g.
            ``eval/world_model/{task}/loss_total``.
        slug: names the figure ``<scenario>-<slug>.png``.
        label: the y axis.
        title: the figure's title after the scenario's name.
        log_y: a logarithmic y axis (losses falling by orders of magnitude).
        table: also tabulate, per method and task, the value at the end of the task's own
            window and at the run's end (how much of it the run kept).
    """

    tag: str
    slug: str
    label: str
    title: str
    log_y: bool = False
    table: bool = False

    def __call__(self, data: SectionInput) -> list[str]:
        """Draw the figure; its markdown lines (none when no run logged the tag)."""
        shown = [m for m in data.methods if data.seed_dirs[m]]
        if not shown:
            return []
        tasks = task_names(data.seed_dirs[shown[0]][0])
        tags = {self.tag.format(task=task): task for task in tasks}
        curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for method in shown:
            runs = [
                {
                    (tags[row["tag"]], int(row["step"])): float(row["value"])
                    for row in read_jsonl(d / "eval_scalars.jsonl")
                    if row["tag"] in tags
                }
                for d in data.seed_dirs[method]
                # a run without diagnostics (an agent the probe does not apply to) logs none
                if (d / "eval_scalars.jsonl").is_file()
            ]
            curves[method] = mean_curves(runs) if runs else {}
        if not any(curves.values()):
            return []
        figure, axes = plt.subplots(
            1, len(tasks), figsize=(4.0 * len(tasks), 3.2), sharey=True, squeeze=False
        )
        ends = window_ends(data.seed_dirs[shown[0]][0])[:-1]
        for axis, task in zip(axes[0], tasks, strict=True):
            for method in shown:
                if task in curves[method]:
                    axis.plot(*curves[method][task], label=method)
            for end in ends:
                axis.axvline(end, color="grey", linestyle="--", linewidth=0.7)
            axis.set_title(f"held-out data of {task}", fontsize=9)
            axis.set_xlabel("env steps")
            if self.log_y:
                axis.set_yscale("log")
        name = f"{data.scenario}-{self.slug}.png"
        title = f"{data.scenario}: {self.title}"
        save_panels(figure, axes, self.label, title, data.results / name)
        lines = [f"![{data.scenario} {self.title}]({name})", ""]
        if self.table:
            lines += self._kept(data.seed_dirs[shown[0]][0], tasks, shown, curves)
        return lines

    def _kept(
        self,
        seed_dir: Path,
        tasks: list[str],
        methods: list[str],
        curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    ) -> list[str]:
        """Per method and task: the mean value when the task's first window ended -> at the
        run's end (the ratio in brackets)."""
        schedule = json.loads((seed_dir / "scenario.json").read_text())["schedule"]
        ends = window_ends(seed_dir)
        own: dict[str, int] = {}
        for block, entry in enumerate(schedule):
            own.setdefault(tasks[entry["task_index"]], ends[block])
        lines = [
            f"{self.label}: at the end of the task's own window -> at the run's end "
            "(ratio), mean over seeds:",
            "",
        ]
        rows = []
        for method in methods:
            cells = []
            for task in tasks:
                steps, values = curves[method].get(task, (np.array([]), np.array([])))
                at = {int(step): float(value) for step, value in zip(steps, values, strict=True)}
                if own[task] in at and ends[-1] in at:
                    start, end = at[own[task]], at[ends[-1]]
                    cells.append(f"{start:.3g} -> {end:.3g} ({end / start:.2f}x)")
                else:
                    cells.append("n/a")
            rows.append([method, *cells])
        return [*lines, *Table(["method", *tasks], rows).markdown(), ""]


DETECTION_COLUMNS = (
    ("detections", "detections"),
    ("mean_delay", "mean delay (steps)"),
    ("false_alarms_per_1e5_steps", "false alarms / 1e5 steps"),
    ("missed", "missed changes"),
    ("task_id_accuracy", "task-id accuracy"),
)
"""The detection figures of a run's metrics (:mod:`l2rl.metrics_detection`) in the table."""


@dataclass(frozen=True)
class DetectionTable:
    """A section: each detecting method's detection figures against the true boundaries,
    mean over seeds (over the seeds where a figure is defined)."""

    def __call__(self, data: SectionInput) -> list[str]:
        """The table's markdown lines (none when no method detects)."""
        shown = [m for m in data.methods if any("detection" in r for r in data.metrics[m])]
        if not shown:
            return []
        rows = []
        for method in shown:
            runs = [r["detection"] for r in data.metrics[method] if "detection" in r]
            cells = []
            for key, _ in DETECTION_COLUMNS:
                values = [float(r[key]) for r in runs if r.get(key) is not None]
                cells.append(f"{np.mean(values):.2f}" if values else "n/a")
            rows.append([method, str(len(runs)), *cells])
        header = ["method", "seeds", *(label for _, label in DETECTION_COLUMNS)]
        table = Table(header, rows)
        return [f"### {data.scenario}: task-change detection", "", *table.markdown(), ""]


@dataclass(frozen=True)
class PerTaskScores:
    """A section: each method's final score per task and, in brackets, the score at the end
    of the task's own window (Continual World's last-5 means), mean over seeds."""

    def __call__(self, data: SectionInput) -> list[str]:
        """The table's markdown lines."""
        shown = [m for m in data.methods if data.seed_dirs[m]]
        if not shown:
            return []
        tasks = task_names(data.seed_dirs[shown[0]][0])
        rows = []
        for method in shown:
            final = final_scores(data.metrics[method])
            forgetting = np.array(
                [m["per_task"]["cw_forgetting"] for m in data.metrics[method]], dtype=np.float64
            )
            own = final + forgetting
            cells = [
                f"{f:.2f} ({o:.2f})"
                for f, o in zip(final.mean(axis=0), own.mean(axis=0), strict=True)
            ]
            rows.append([method, *cells])
        caption = "Final score per task (end of the task's own window), mean over seeds:"
        return [caption, "", *Table(["method", *tasks], rows).markdown(), ""]


@dataclass(frozen=True)
class SleepRounds:
    """A section: for each method whose seeds recorded them (``sleep_evals.jsonl``), each
    window's closing score per task before its sleep phase and after it, mean over seeds.

    The Continual World figures of the table come from the rounds before each sleep
    (``evals.jsonl``), so the last window's sleep shows only here.
    """

    def __call__(self, data: SectionInput) -> list[str]:
        """The table's markdown lines (none when no method recorded sleep rounds)."""
        shown = [
            m
            for m in data.methods
            if data.seed_dirs[m]
            and all((d / SLEEP_EVALS_FILE).is_file() for d in data.seed_dirs[m])
        ]
        if not shown:
            return []
        tasks = task_names(data.seed_dirs[shown[0]][0])
        lines = [
            f"### {data.scenario}: before and after each sleep",
            "",
            "Score per task at each window's end, before its sleep -> after it, mean over seeds:",
            "",
        ]
        rows = []
        for method in shown:
            before: dict[tuple[int, int], list[float]] = {}
            after: dict[tuple[int, int], list[float]] = {}
            for seed_dir in data.seed_dirs[method]:
                for r in read_records(seed_dir / "evals.jsonl"):
                    if r.block_end and r.block >= 0:
                        before.setdefault((r.block, r.eval_task), []).append(r.score)
                for r in read_records(seed_dir / SLEEP_EVALS_FILE):
                    after.setdefault((r.block, r.eval_task), []).append(r.score)
            for block in sorted({b for b, _ in after}):
                cells = [
                    f"{np.mean(before[(block, t)]):.2f} -> {np.mean(after[(block, t)]):.2f}"
                    for t in range(len(tasks))
                ]
                rows.append([method, str(block), *cells])
        return [*lines, *Table(["method", "window", *tasks], rows).markdown(), ""]
