"""Many experiments over many seeds, on local worker processes, resumable after a crash.

A sweep is a mapping ``experiment directory -> RunConfig``. It runs in three phases:

1. every distinct single-task reference run the experiments need (so that two workers never
   compute the same reference at once),
2. every ``(experiment, seed)`` run, writing ``<directory>/seed_<s>/`` exactly as
   :func:`l2rl.experiment.run_seed` does,
3. each experiment's ``summary.json`` (mean and 90% bootstrap interval over seeds).

A seed whose ``metrics.json`` exists is skipped, and a seed cut short resumes from its last
window-end checkpoint (:func:`l2rl.experiment.finish_seed`), so re-running an interrupted
sweep finishes it.
Workers are separate processes (``spawn``), each with one torch thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from l2rl.aggregate import aggregate_seeds
from l2rl.builder import build_scenario, check_config
from l2rl.config import RunConfig, dump_config
from l2rl.dirlock import experiment_lock
from l2rl.experiment import (
    finish_seed,
    metrics_of_run,
    reference_for_task,
    reference_path,
)
from l2rl.logging.files import atomic_write_json, atomic_write_text
from l2rl.manifest import environment_manifest
from l2rl.metrics import HEADLINE_METRICS

Job = tuple[str, Callable[..., Any], tuple[Any, ...]]
"""A labelled function call run in a worker."""


@dataclass(frozen=True)
class SweepEvent:
    """One finished job, for progress reporting."""

    done: int
    total: int
    label: str
    seconds: float
    headline: Mapping[str, float] | None


def _reference_job(config: RunConfig, task_index: int, seed: int) -> None:
    torch.set_num_threads(1)
    reference_for_task(config, build_scenario(config), task_index, seed, progress=False)


def _seed_job(config: RunConfig, seed: int, run_dir: Path) -> dict[str, float]:
    torch.set_num_threads(1)
    return dict(finish_seed(config, seed, run_dir).headline)


def run_sweep(
    experiments: Mapping[Path, RunConfig],
    workers: int = 1,
    on_event: Callable[[SweepEvent], None] | None = None,
) -> dict[Path, dict[str, dict[str, float | int | None]]]:
    """Run (or finish) every experiment; returns each directory's summary.

    Args:
        experiments: where each experiment's results go, and its config (``progress`` is
            forced off inside workers).
        workers: worker processes; 1 runs in this process.
        on_event: called after every finished job.

    Raises:
        DirectoryLockedError: another process writes to one of the directories.
    """
    configs = {
        directory: config.model_copy(update={"progress": False})
        for directory, config in experiments.items()
    }
    for config in configs.values():  # bad input fails now, not in a worker
        check_config(config)

    references: dict[Path, tuple[RunConfig, int, int]] = {}
    for config in configs.values():
        if not config.metrics.reference_runs:
            continue
        scenario = build_scenario(config)
        for seed in config.seeds:
            for task_index in range(len(scenario.tasks)):
                path = reference_path(config, scenario, task_index, seed)
                if not path.is_file():
                    references.setdefault(path, (config, task_index, seed))
    runs = [
        (directory, config, seed)
        for directory, config in configs.items()
        for seed in config.seeds
        if not (directory / f"seed_{seed}" / "metrics.json").is_file()
    ]
    total = len(references) + len(runs)
    done = 0

    def report(label: str, seconds: float, headline: Mapping[str, float] | None) -> None:
        nonlocal done
        done += 1
        if on_event is not None:
            on_event(SweepEvent(done, total, label, seconds, headline))

    locks = ExitStack()
    pool = None
    try:
        for directory in configs:  # one writer per experiment directory: this sweep
            directory.mkdir(parents=True, exist_ok=True)
            locks.enter_context(experiment_lock(directory))
        if workers > 1:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        reference_jobs: list[Job] = [
            (
                f"reference {c.scenario.name} task {task} seed {seed}",
                _reference_job,
                (c, task, seed),
            )
            for path, (c, task, seed) in references.items()
        ]
        _run_jobs(pool, reference_jobs, report)
        for directory, config in configs.items():
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / "config.yaml", dump_config(config))
            atomic_write_json(directory / "environment.json", environment_manifest())
        seed_jobs: list[Job] = [
            (f"{directory} seed {seed}", _seed_job, (config, seed, directory / f"seed_{seed}"))
            for directory, config, seed in runs
        ]
        _run_jobs(pool, seed_jobs, report)
        summaries = {}
        for directory, config in configs.items():
            per_seed = [metrics_of_run(directory / f"seed_{s}").to_dict() for s in config.seeds]
            summaries[directory] = aggregate_seeds(per_seed, HEADLINE_METRICS)
            atomic_write_json(directory / "summary.json", summaries[directory])
        return summaries
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        locks.close()


def _timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def _run_jobs(
    pool: ProcessPoolExecutor | None,
    jobs: list[Job],
    report: Callable[[str, float, Any], None],
) -> None:
    """Run jobs in the pool (or here), reporting each as it finishes; the first error wins."""
    if pool is None:
        for label, function, args in jobs:
            report(label, *_timed(function, args))
        return
    futures: dict[Future[tuple[float, Any]], str] = {
        pool.submit(_timed, function, args): label for label, function, args in jobs
    }
    for future in as_completed(futures):
        report(futures[future], *future.result())
