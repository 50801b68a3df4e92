"""The ``l2rl`` command line: run experiments, list plugins, print metrics."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from l2rl import registry
from l2rl.dirlock import DirectoryLockedError
from l2rl.hooks import ComponentError, HookRegistrationError

_EPILOG = """examples:
  l2rl run experiments/default.yaml
  l2rl run experiments/default.yaml --seeds 0 1 2 scenario.steps_per_task=5000 agent.options.lr=1e-3
  l2rl check experiments/default.yaml
  l2rl list
  l2rl metrics runs/default-20261125-101500
  l2rl report runs/default-20261125-101500
  l2rl sweep experiments/sweep.yaml --workers 2
  l2rl resume runs/default-20261125-101500

exit status: 0 done, 1 the run failed (a component's error, a NaN/inf), 2 bad input,
130 interrupted (every record so far is kept; l2rl resume finishes the run).
Errors are one line; --debug shows the full traceback.
"""


class _SeedsAction(argparse.Action):
    """``--seeds 0 1 2`` or ``--seeds 0,1,2``; the list ends at the first ``key=value``.

    argparse's ``nargs='+'`` takes every following token that does not look like an option,
    overrides included; those from the first token holding ``=`` on are handed back as
    overrides (``namespace.overrides_after_seeds``).
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        tokens = [str(v) for v in (values or [])]
        split = next((i for i, t in enumerate(tokens) if "=" in t), len(tokens))
        seeds: list[int] = []
        for token in tokens[:split]:
            for part in token.split(","):
                try:
                    seeds.append(int(part))
                except ValueError:
                    parser.error(
                        f"--seeds: {part!r} is not an integer "
                        "(write --seeds 0 1 2 or --seeds 0,1,2)"
                    )
        if not seeds:
            parser.error("--seeds: give at least one seed before the key=value overrides")
        setattr(namespace, self.dest, seeds)
        namespace.overrides_after_seeds = tokens[split:]


def _bad_input() -> tuple[type[Exception], ...]:
    """Errors in what the user gave (exit status 2).

    Looked up when an error is caught, like :func:`_run_failed`: ``l2rl --help`` and
    ``l2rl list`` do not pay for importing pydantic and numpy.
    """
    from l2rl.config import ConfigError

    return (
        ConfigError,
        registry.UnknownPluginError,
        registry.PluginLoadError,
        HookRegistrationError,
        FileNotFoundError,
        DirectoryLockedError,
    )


def _run_failed() -> tuple[type[Exception], ...]:
    """Errors of a run that started (exit status 1): records so far are on disk.

    Looked up when an error is caught, by when the runner (and torch) is imported anyway:
    ``l2rl --help`` and ``l2rl metrics`` do not pay torch's import.
    """
    from l2rl.logging.files import CorruptRecordsError
    from l2rl.runner import NonFiniteError

    return (ComponentError, NonFiniteError, CorruptRecordsError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2rl",
        description="Continual RL: run scenarios, measure forgetting and transfer.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --debug is accepted before and after the command (`l2rl --debug run` or `l2rl run
    # ... --debug`); SUPPRESS keeps a subcommand's default from overwriting the top level's.
    parser.add_argument("--debug", action="store_true", help="show full tracebacks of errors")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        parents=[debug],
        help="run an experiment config over its seeds and print its metrics",
        description="Run CONFIG (YAML) for each seed, write results, print metrics.",
    )
    run.add_argument("config", type=Path, help="experiment config (YAML)")
    run.add_argument(
        "--seeds",
        nargs="+",
        action=_SeedsAction,
        metavar="SEED",
        help="seeds to run, e.g. 0 1 2 or 0,1,2 (overrides the config's)",
    )
    run.add_argument("--output-dir", help="where run directories go (overrides output_dir)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress display")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run seeds in this many worker processes (no per-step progress display)",
    )
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides with dotted keys, e.g. scenario.steps_per_task=5000",
    )

    check = sub.add_parser(
        "check", parents=[debug], help="validate a config and build everything, without training"
    )
    check.add_argument("config", type=Path)
    check.add_argument("overrides", nargs="*", metavar="key=value")

    resume = sub.add_parser(
        "resume",
        parents=[debug],
        help="finish an interrupted experiment from its checkpoints",
        description="Keep finished seeds, resume the others from their last window-end "
        "checkpoint (or rerun them), then print the metrics.",
    )
    resume.add_argument("experiment_dir", type=Path)
    resume.add_argument("--no-progress", action="store_true", help="hide the progress display")

    listing = sub.add_parser(
        "list",
        parents=[debug],
        help="list registered agents, components and scenarios",
        description="List every registered plugin; one whose module is missing is flagged "
        "broken. --check imports each plugin, so it also flags one whose import fails.",
    )
    listing.add_argument(
        "--check", action="store_true", help="import every plugin (slower: loads torch)"
    )

    metrics = sub.add_parser(
        "metrics",
        parents=[debug],
        help="print the metrics table of a run or experiment directory",
    )
    metrics.add_argument("run_dir", type=Path)

    sweep = sub.add_parser(
        "sweep",
        parents=[debug],
        help="run (or finish) a grid of scenarios x methods x seeds from a sweep file",
        description="Run every cell of SWEEP_FILE (see l2rl.sweep_file), skipping finished "
        "seeds and resuming cut-short ones; write <output>/summary.json; print the table.",
    )
    sweep.add_argument("sweep_file", type=Path)
    sweep.add_argument("--workers", type=int, default=1, help="worker processes")

    report = sub.add_parser(
        "report",
        parents=[debug],
        help="write a Markdown + HTML report with figures of a run, experiment or sweep",
    )
    report.add_argument("path", type=Path, help="a run, experiment or sweep directory")
    report.add_argument("--out", type=Path, help="where the report goes (default PATH/report)")
    return parser


def _list(console: Console, check: bool) -> None:
    """One table per plugin group; a plugin whose module is missing (``check``: whose
    import fails) is shown as broken, with the error. Without ``check`` nothing is
    imported, so the status of a found module is "found", not "ok"."""
    for group in registry.GROUPS:
        errors = registry.import_errors(group) if check else registry.missing_modules(group)
        fine = "ok" if check else "found"
        table = Table(title=group)
        table.add_column("name")
        table.add_column("provided by")
        table.add_column("status")
        for name, target in registry.describe(group).items():
            table.add_row(name, target, "[red]broken[/red]" if name in errors else fine)
        console.print(table)
        for name, error in errors.items():  # in full, never cut to the terminal's width
            console.print(f"{group} {name!r} is broken: {error}", markup=False, soft_wrap=True)


def _run(args: argparse.Namespace, console: Console) -> None:
    from l2rl.config import ConfigError, load_config
    from l2rl.experiment import new_experiment_dir, resumable_on_interrupt, run_experiment
    from l2rl.report import print_metrics
    from l2rl.sweep import run_sweep

    overrides = list(args.overrides)
    if args.seeds:
        overrides.append(f"seeds=[{','.join(str(s) for s in args.seeds)}]")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.no_progress:
        overrides.append("progress=false")
    config = load_config(args.config, overrides)
    if args.workers < 1:
        raise ConfigError(f"--workers must be positive, got {args.workers}")
    if args.workers == 1:
        directory = run_experiment(config).directory
    else:
        directory = new_experiment_dir(Path(config.output_dir), config.name)
        with resumable_on_interrupt(directory):
            run_sweep(
                {directory: config},
                args.workers,
                lambda e: console.print(
                    f"[{e.done}/{e.total}] {e.label} ({e.seconds:.0f} s)", markup=False
                ),
            )
    print_metrics(directory, console)
    console.print(f"results: {directory}")


def _sweep(args: argparse.Namespace, console: Console) -> None:
    from l2rl.config import ConfigError
    from l2rl.experiment import resumable_on_interrupt
    from l2rl.logging.files import atomic_write_json
    from l2rl.sweep import run_sweep
    from l2rl.sweep_file import cell_configs, load_sweep

    if args.workers < 1:
        raise ConfigError(f"--workers must be positive, got {args.workers}")
    sweep = load_sweep(args.sweep_file)
    cells = cell_configs(sweep)
    with resumable_on_interrupt(sweep.output):
        summaries = run_sweep(
            dict(cells.values()),
            args.workers,
            lambda e: console.print(
                f"[{e.done}/{e.total}] {e.label} ({e.seconds:.0f} s)", markup=False
            ),
        )
    by_cell = {f"{s}/{m}": summaries[directory] for (s, m), (directory, _) in cells.items()}
    atomic_write_json(sweep.output / "summary.json", by_cell)
    table = Table(title=f"{sweep.name}: average performance, mean [90% interval]")
    table.add_column("method")
    for scenario in sweep.scenarios:
        table.add_column(scenario, justify="right")
    for method in sweep.methods:
        row = [method]
        for scenario in sweep.scenarios:
            entry = by_cell[f"{scenario}/{method}"]["cw_average_performance"]
            low, high = entry["ci_low"], entry["ci_high"]
            interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
            row.append("n/a" if entry["mean"] is None else f"{entry['mean']:.3f}{interval}")
        table.add_row(*row)
    console.print(table)
    console.print(f"summary: {sweep.output / 'summary.json'}; figures: l2rl report {sweep.output}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``l2rl`` command; returns the exit status."""
    parser = _parser()
    # Overrides may come before or after options (`run c.yaml --no-progress a=1`);
    # argparse stops collecting a positional list at the first option, so gather the rest.
    args, extra = parser.parse_known_args(argv)
    extra = [*getattr(args, "overrides_after_seeds", []), *extra]
    if extra:
        if args.command not in ("run", "check") or any(
            e.startswith("-") or "=" not in e for e in extra
        ):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    console = Console()
    if args.debug:  # the error as Python raised it, traceback and all
        return _command(args, console)
    try:
        return _command(args, console)
    except KeyboardInterrupt as err:
        directory = getattr(err, "directory", None)
        resume = f"; l2rl resume {directory} finishes the run" if directory else ""
        print(f"l2rl: interrupted, every record so far is kept{resume}", file=sys.stderr)
        return 130
    except _bad_input() as err:
        print(f"l2rl: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not isinstance(err, _run_failed()):
            raise
        print(f"l2rl: error: {err} (--debug shows the traceback)", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, console: Console) -> int:
    """Carry out the parsed command; its exit status."""
    if args.command == "run":
        _run(args, console)
    elif args.command == "check":
        from l2rl.builder import check_config
        from l2rl.config import load_config

        check_config(load_config(args.config, args.overrides))
        console.print(f"{args.config}: ok")
    elif args.command == "resume":
        from l2rl.experiment import resume_experiment
        from l2rl.progress import hidden
        from l2rl.report import print_metrics

        if not (args.experiment_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{args.experiment_dir} holds no experiment config.yaml")
        with hidden() if args.no_progress else nullcontext():
            result = resume_experiment(args.experiment_dir)
        print_metrics(result.directory, console)
    elif args.command == "list":
        _list(console, args.check)
    elif args.command == "sweep":
        _sweep(args, console)
    elif args.command == "report":
        from l2rl.report_document import write_report

        out = write_report(args.path, args.out)
        console.print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    elif args.command == "metrics":
        from l2rl.report import print_metrics

        print_metrics(args.run_dir, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
