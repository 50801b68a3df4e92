"""Run a configured experiment over its seeds and write one directory per run.

Layout::

    <output_dir>/<name>-<YYYYmmdd-HHMMSS>/
        config.yaml                 the resolved config
        environment.json            packages, torch build and threads, BLAS, CPU, git commit
        summary.json                headline metrics over seeds (l2rl.aggregate.aggregate_seeds)
        seed_<s>/
            config.yaml             the resolved config with this seed
            environment.json        the environment this seed ran (or resumed) in
            scenario.json           tasks, their parameters, and the schedule
            agent.json              what the metrics need to know of the agent
            evals.jsonl             every evaluation record, flushed as it happens
            eval_scalars.jsonl      evaluation-time diagnostics (``eval/*`` scalars), if any
            windows.jsonl           each closed window's optimiser steps per learner
            episodes.jsonl          each finished training episode: window, task, step, return
            resumes.jsonl           each resume: from which step, bitwise comparable or not
            task_changes.jsonl      inferred task changes a detector asked for, if any
            sleeps.jsonl            sleep phases (consolidation updates), if any
            sleep_evals.jsonl       the evaluation round after each window's sleep, if any
            timings.jsonl           wall-clock time of each stretch of work (training from
                                    a step, or resumed; reference runs), as it ends
            reference_evals.jsonl   single-task reference records (forward transfer)
            reference_episodes.jsonl  their training episodes (the STE logs), if kept
            l2logger/, l2logger_ste/  the run and its references in l2logger's format
            metrics.json            this seed's metrics
            failed.json             only if the run stopped on a NaN/inf (learner, loss, step)
            checkpoint.pt           the run's whole state at the last window's end (or
                                    inside a window, with ``checkpoint_every``)
            tb/                     TensorBoard events

Single-task reference runs (each task alone, from scratch, same agent and replay, without
the other components but ``metrics.reference_components``, same budget, seed and
evaluation) are cached under ``<output_dir>/_reference/<key>/`` so that every method
compared on a scenario shares them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import l2rl
from l2rl import registry
from l2rl.aggregate import aggregate_seeds
from l2rl.builder import build_run, check_config, reference_config
from l2rl.config import ConfigError, RunConfig, dump_config, load_config
from l2rl.dirlock import experiment_lock
from l2rl.logging.files import (
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    read_records,
    record_to_row,
    remove_leftover_temporaries,
)
from l2rl.logging.l2logger import REFERENCE_EPISODES_FILE, export_run
from l2rl.logging.recorder import (
    EPISODES_FILE,
    EVAL_SCALARS_FILE,
    SLEEP_EVALS_FILE,
    SLEEPS_FILE,
    TASK_CHANGES_FILE,
    WINDOWS_FILE,
    DiskRecorder,
    EpisodeCollector,
    Recorder,
    write_hparams,
)
from l2rl.manifest import environment_manifest
from l2rl.metrics import HEADLINE_METRICS, IdleWindow, RunMetrics, summarize_run
from l2rl.metrics_detection import detection_figures
from l2rl.progress import ProgressDisplay
from l2rl.runner import NonFiniteError
from l2rl.scenario import Scenario
from l2rl.seeding import derive_seed
from l2rl.types import EvalRecord


@dataclass(frozen=True)
class ExperimentResult:
    """Where an experiment wrote its results, and its metrics."""

    directory: Path
    per_seed: dict[int, RunMetrics]
    summary: dict[str, dict[str, float | int | None]]


def scenario_description(scenario: Scenario) -> dict[str, Any]:
    """JSON-ready tasks, parameters and schedule (what ``l2rl metrics`` reads back)."""
    return {
        "name": scenario.name,
        "task_aware": scenario.task_aware,
        "tasks": [{"name": t.name, "params": dict(t.params)} for t in scenario.tasks],
        "schedule": [{"task_index": b.task_index, "steps": b.steps} for b in scenario.schedule],
    }


def _reference_key(config: RunConfig, scenario: Scenario, task_index: int, seed: int) -> str:
    """Cache key of a reference run (``config`` is the reference config): all that shapes it."""
    reference = scenario.single_task(task_index)
    payload: dict[str, Any] = {
        "version": l2rl.__version__,
        "agent": config.agent.model_dump(mode="json"),
        "replay": None if config.replay is None else config.replay.model_dump(mode="json"),
        "scenario": config.scenario.model_dump(mode="json"),
        "task": reference.tasks[0].name,
        "steps": reference.total_steps,
        "evaluation": config.evaluation.model_dump(mode="json"),
        "seed": seed,
        "num_envs": config.num_envs,
    }
    if config.components:  # only then: the keys of references without components stay
        payload["components"] = [c.model_dump(mode="json") for c in config.components]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


_TORCH_STREAM = 0x7041_C4E5
"""Mixed with a run's seed to seed torch's global stream when the run starts."""


def seed_torch_stream(seed: int) -> None:
    """Start torch's global random stream from the run's ``seed``.

    Agents and components that sample from it (Dreamer's latents and actions) then give
    the same run whatever ran before in the process (a sweep worker runs many jobs in
    turn); a resumed run restores the stream from its checkpoint instead.
    """
    torch.manual_seed(derive_seed(seed, _TORCH_STREAM))


FAILED_FILE = "failed.json"
"""Written in a seed's directory when its run stopped on a non-finite loss or gradient."""


def reference_path(config: RunConfig, scenario: Scenario, task_index: int, seed: int) -> Path:
    """Where the cached reference records of one task and seed live."""
    key = _reference_key(reference_config(config), scenario, task_index, seed)
    return Path(config.output_dir) / "_reference" / key / "records.jsonl"


def reference_for_task(
    config: RunConfig, scenario: Scenario, task_index: int, seed: int, progress: bool
) -> list[EvalRecord]:
    """One task's single-task reference records, from the cache or run now."""
    done = reference_path(config, scenario, task_index, seed)
    if done.is_file():
        return read_records(done)
    single = scenario.single_task(task_index)
    built = build_run(reference_config(config), seed, scenario=single)
    seed_torch_stream(seed)
    collector = EpisodeCollector()
    with ProgressDisplay(single.total_steps, f"reference {single.tasks[0].name}", progress) as bar:
        run = built.runner(progress=bar, recorder=collector).run()
    # Its training episodes first (the STE log of l2metrics needs them), then the records,
    # written whole and renamed: the records mark the reference done, so an interrupted
    # reference run is never taken as done.
    episodes = "".join(json.dumps(asdict(e)) + "\n" for e in collector.episodes)
    atomic_write_text(done.parent / EPISODES_FILE, episodes)
    atomic_write_text(done, "".join(json.dumps(record_to_row(r)) + "\n" for r in run.records))
    return run.records


def reference_episode_rows(
    config: RunConfig, scenario: Scenario, seed: int
) -> list[dict[str, Any]]:
    """The reference runs' training episodes, each row with ``reference_for`` (its task);
    none for a reference cached before they were kept."""
    rows = []
    for index in range(len(scenario.tasks)):
        path = reference_path(config, scenario, index, seed).parent / EPISODES_FILE
        if path.is_file():
            rows += [{"reference_for": index, **row} for row in read_jsonl(path)]
    return rows


def reference_records(
    config: RunConfig, scenario: Scenario, seed: int, progress: bool
) -> dict[int, list[EvalRecord]]:
    """Single-task reference records for every task, from the cache or run now."""
    return {
        index: reference_for_task(config, scenario, index, seed, progress)
        for index in range(len(scenario.tasks))
    }


def run_seed(config: RunConfig, seed: int, run_dir: Path) -> RunMetrics:
    """Train and evaluate one seed, write its directory, return its metrics."""
    run_dir.mkdir(parents=True, exist_ok=False)
    seeded = config.model_copy(update={"seeds": [seed]})
    atomic_write_text(run_dir / "config.yaml", dump_config(seeded))
    return _train_and_measure(seeded, seed, run_dir, checkpoint=None)


def resume_seed(run_dir: Path) -> RunMetrics:
    """Finish an interrupted seed from its last checkpoint (a window's end, or inside a
    window with ``checkpoint_every``).

    Evaluations the interrupted run made after that checkpoint are dropped from
    ``evals.jsonl``, and its evaluation-time diagnostics after it from
    ``eval_scalars.jsonl`` (the resumed run makes them again, identically for a
    deterministic agent). Without a checkpoint (a crash in the first window) the seed starts over.
    """
    config = load_config(run_dir / "config.yaml")
    seed = config.seeds[0]
    checkpoint_file = run_dir / "checkpoint.pt"
    if not checkpoint_file.is_file():
        for path in run_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "config.yaml":
                path.unlink()
        return _train_and_measure(config, seed, run_dir, checkpoint=None)
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    return _train_and_measure(config, seed, run_dir, checkpoint=checkpoint)


def _train_and_measure(
    config: RunConfig, seed: int, run_dir: Path, checkpoint: Mapping[str, Any] | None
) -> RunMetrics:
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    built = build_run(config, seed)
    scenario = built.scenario
    atomic_write_json(run_dir / "environment.json", environment_manifest())
    atomic_write_json(run_dir / "scenario.json", scenario_description(scenario))
    atomic_write_json(
        run_dir / "agent.json",
        {"name": config.agent.name, "untrained_task_heads": built.agent.untrained_task_heads},
    )
    previous: list[EvalRecord] = []
    if checkpoint is not None:
        kept = int(checkpoint["global_step"])
        previous = [r for r in read_records(run_dir / "evals.jsonl") if r.global_step <= kept]
        atomic_write_text(
            run_dir / "evals.jsonl",
            "".join(json.dumps(record_to_row(r)) + "\n" for r in previous),
        )
        _truncate_rows(run_dir / EVAL_SCALARS_FILE, "step", kept)
        _truncate_rows(run_dir / WINDOWS_FILE, "end_step", kept)
        _truncate_rows(run_dir / EPISODES_FILE, "global_step", kept)
        _truncate_rows(run_dir / TASK_CHANGES_FILE, "global_step", kept)
        _truncate_rows(run_dir / SLEEPS_FILE, "global_step", kept)
        _truncate_rows(run_dir / SLEEP_EVALS_FILE, "global_step", kept)
    resumed_from = None if checkpoint is None else int(checkpoint["global_step"])
    if checkpoint is not None:
        _note_resume(run_dir, checkpoint)
    recorder: Recorder = DiskRecorder(run_dir, resumed_from=resumed_from)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    seed_torch_stream(seed)  # a resumed run then restores it from the checkpoint
    started = time.time()
    with ProgressDisplay(scenario.total_steps, f"seed {seed}", config.progress) as bar:
        runner = built.runner(
            recorder=recorder,
            progress=bar,
            checkpoint_path=run_dir / "checkpoint.pt",
            checkpoint_every=config.checkpoint_every,
        )
        try:
            runner.run(resume=checkpoint, previous_records=previous)
        except NonFiniteError as error:
            # The records so far and the last window's checkpoint stay; the marker says
            # why the seed stopped (``l2rl resume`` removes it and goes on).
            failure = {
                "error": str(error),
                "learner": error.learner,
                "key": error.key,
                "global_step": error.global_step,
            }
            atomic_write_json(run_dir / FAILED_FILE, failure)
            raise
        finally:
            # also when the run stops: the stretch up to the stop took this long
            steps = (resumed_from or 0, runner.ctx.global_step)
            _record_timing(run_dir, "training", started, steps)
    if config.metrics.reference_runs:
        started = time.time()
        reference = reference_records(config, scenario, seed, config.progress)
        rows = [
            json.dumps({"reference_for": task_index, **record_to_row(record)}) + "\n"
            for task_index, records in reference.items()
            for record in records
        ]
        atomic_write_text(run_dir / "reference_evals.jsonl", "".join(rows))
        episodes = reference_episode_rows(config, scenario, seed)
        if episodes:
            text = "".join(json.dumps(row) + "\n" for row in episodes)
            atomic_write_text(run_dir / REFERENCE_EPISODES_FILE, text)
        _record_timing(run_dir, "reference runs", started)
    metrics = metrics_of_run(run_dir)
    atomic_write_json(run_dir / "metrics.json", metrics.to_dict())
    export_run(run_dir)  # the l2logger-format logs, for l2metrics
    write_hparams(run_dir, flat_hparams(config), dict(metrics.headline))
    warn = Console(stderr=True)
    for window in metrics.windows_without_updates:
        warn.print(f"warning: seed {seed}: {window.describe()}", markup=False, soft_wrap=True)
    return metrics


TIMINGS_FILE = "timings.jsonl"
"""One row per stretch of a seed's work: what, when (UTC), how long, from and to which step."""


def _record_timing(
    run_dir: Path, work: str, started: float, steps: tuple[int, int] | None = None
) -> None:
    """Append one row to the seed's ``timings.jsonl``: ``work`` took from ``started`` (a
    ``time.time()``) to now; training also says its env steps (from, to)."""
    finished = time.time()
    row: dict[str, Any] = {
        "work": work,
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - started, 3),
    }
    if steps is not None:
        from_step, to_step = steps
        row.update(from_step=from_step, to_step=to_step)
        row["steps_per_second"] = round((to_step - from_step) / max(finished - started, 1e-9), 1)
    with (run_dir / TIMINGS_FILE).open("a") as handle:
        handle.write(json.dumps(row) + "\n")


RESUMES_FILE = "resumes.jsonl"
"""One row per resume of a seed: the step it resumed from and whether it is exact."""


def flat_hparams(config: RunConfig) -> dict[str, bool | int | float | str]:
    """The config as TensorBoard hyperparameters: dotted keys, lists and nulls as text."""
    flat: dict[str, bool | int | float | str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, bool | int | float | str):
            flat[prefix] = value
        else:  # lists (components, seeds) and None
            flat[prefix] = json.dumps(value)

    visit("", config.model_dump(mode="json", exclude={"output_dir", "progress"}))
    return flat


def _note_resume(run_dir: Path, checkpoint: Mapping[str, Any]) -> None:
    """Append the resume to ``resumes.jsonl``: from which step, inside a window or at its
    end, and whether the resumed run is bitwise comparable to an uninterrupted one (not
    when the envs' episodes could not be continued)."""
    window = checkpoint.get("window")
    reason = "" if window is None else str(window["inexact"])
    row = {
        "from_step": int(checkpoint["global_step"]),
        "inside_window": window is not None,
        "bitwise_comparable": not reason,
        "reason": reason,
    }
    with (run_dir / RESUMES_FILE).open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def _truncate_rows(path: Path, step_key: str, kept: int) -> None:
    """Keep the rows of ``path`` (if it exists) whose ``step_key`` is at most ``kept``:
    those the run made before its checkpoint (the window's closing ones included)."""
    if not path.is_file():
        return
    rows = [row for row in read_jsonl(path) if int(row[step_key]) <= kept]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def finish_seed(config: RunConfig, seed: int, run_dir: Path) -> RunMetrics:
    """The seed's metrics: read if done, resumed if interrupted, run if never started."""
    if (run_dir / "metrics.json").is_file():
        return metrics_of_run(run_dir)
    if (run_dir / "config.yaml").is_file():
        return resume_seed(run_dir)
    if run_dir.exists():  # created but not even configured: nothing to keep
        shutil.rmtree(run_dir)
    return run_seed(config, seed, run_dir)


def metrics_of_run(run_dir: Path) -> RunMetrics:
    """Recompute a run's metrics from its files (works on an interrupted run too)."""
    description = json.loads((run_dir / "scenario.json").read_text())
    config = load_config(run_dir / "config.yaml")
    records = read_records(run_dir / "evals.jsonl")
    reference: dict[int, list[EvalRecord]] | None = None
    reference_file = run_dir / "reference_evals.jsonl"
    if reference_file.is_file():
        reference = {}
        for row in read_jsonl(reference_file):
            task_index = row.pop("reference_for")
            reference.setdefault(task_index, []).append(EvalRecord.from_row(row))
    schedule = [block["task_index"] for block in description["schedule"]]
    agent = json.loads((run_dir / "agent.json").read_text())
    metrics = summarize_run(
        records,
        schedule,
        num_tasks=len(description["tasks"]),
        reference=reference,
        end_window=config.metrics.end_window,
        untrained_task_heads=agent["untrained_task_heads"],
    )
    detection = None
    if _detects(config):
        path = run_dir / TASK_CHANGES_FILE
        changes = (
            [(c["global_step"], c["task_id"]) for c in read_jsonl(path)] if path.is_file() else []
        )
        blocks = [(b["task_index"], b["steps"]) for b in description["schedule"]]
        detection = detection_figures(blocks, changes)
    return replace(
        metrics, windows_without_updates=windows_without_updates(run_dir), detection=detection
    )


def _detects(config: RunConfig) -> bool:
    """Whether the run infers its tasks: task-agnostic with a task-change detector (it may
    have found no change, which the detection figures must say too)."""
    if config.scenario.task_aware:
        return False
    roles = (
        getattr(registry.load("l2rl.components", r.name), "role", "") for r in config.components
    )
    return "detector" in roles


def windows_without_updates(run_dir: Path) -> tuple[IdleWindow, ...]:
    """The run's training windows in which some learner made no optimiser step, from its
    ``windows.jsonl`` (none for runs recorded before that file existed)."""
    path = run_dir / WINDOWS_FILE
    if not path.is_file():
        return ()
    idle = []
    for row in read_jsonl(path):
        learners = tuple(name for name, count in row["updates"].items() if count == 0)
        if learners:
            idle.append(IdleWindow(int(row["block"]), str(row["task"]), learners))
    return tuple(idle)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped an experiment; every record so far is on disk and
    ``l2rl resume <directory>`` finishes it as if it had not been interrupted.

    Attributes:
        directory: the experiment directory to resume.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(f"interrupted: l2rl resume {directory} finishes the run")
        self.directory = directory


def ensure_output_dir(root: Path) -> None:
    """Create ``root`` (``output_dir``) if needed and check that it can take run folders.

    Raises:
        ConfigError: naming ``output_dir`` when it cannot be created or written to.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output_dir {str(root)!r} cannot be created: {err.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {str(root)!r} is not writable")


def new_experiment_dir(root: Path, name: str) -> Path:
    """A fresh ``<root>/<name>-<timestamp>[-k]`` folder; earlier results are never overwritten.

    Raises:
        ConfigError: ``root`` cannot be created or written to (see :func:`ensure_output_dir`).
    """
    ensure_output_dir(root)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1000):
        directory = root / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            directory.mkdir(exist_ok=False)
            return directory
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {root}")


def run_experiment(config: RunConfig) -> ExperimentResult:
    """Run every seed of ``config``; write run directories and the seed summary.

    The output directory is checked and the whole configuration (scenario, plugins and
    their options) is built once before any training, so bad input fails in seconds, not
    after the first seed.

    Raises:
        RunInterrupted: on Ctrl-C, naming the directory to resume.
    """
    ensure_output_dir(Path(config.output_dir))
    check_config(config)
    directory = new_experiment_dir(Path(config.output_dir), config.name)
    with experiment_lock(directory), resumable_on_interrupt(directory):
        atomic_write_text(directory / "config.yaml", dump_config(config))
        atomic_write_json(directory / "environment.json", environment_manifest())
        per_seed = {
            seed: run_seed(config, seed, directory / f"seed_{seed}") for seed in config.seeds
        }
        return _summarise(directory, per_seed)


def resume_experiment(directory: Path) -> ExperimentResult:
    """Finish an interrupted experiment: finished seeds are kept, the others resumed or run.

    Temporary files an interrupted atomic write left behind are removed first.

    Raises:
        RunInterrupted: on Ctrl-C, naming the directory to resume.
        DirectoryLockedError: another process is running or resuming it.
    """
    config = load_config(directory / "config.yaml")
    with experiment_lock(directory), resumable_on_interrupt(directory):
        for folder in (directory, *(directory / f"seed_{seed}" for seed in config.seeds)):
            remove_leftover_temporaries(folder)
        per_seed = {
            seed: finish_seed(config, seed, directory / f"seed_{seed}") for seed in config.seeds
        }
        return _summarise(directory, per_seed)


@contextmanager
def resumable_on_interrupt(directory: Path) -> Iterator[None]:
    """Turn Ctrl-C into :class:`RunInterrupted` naming ``directory`` (the runner has
    closed its files by then: records are flushed per row)."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(directory) from None


def _summarise(directory: Path, per_seed: dict[int, RunMetrics]) -> ExperimentResult:
    summary = aggregate_seeds([m.to_dict() for m in per_seed.values()], HEADLINE_METRICS)
    atomic_write_json(directory / "summary.json", summary)
    return ExperimentResult(directory=directory, per_seed=per_seed, summary=summary)
