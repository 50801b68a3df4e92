"""Where a run's scalars and evaluation records go while it runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from l2rl.logging.files import JsonlWriter, record_to_row
from l2rl.types import (
    EpisodeRecord,
    EvalRecord,
    SkillEvent,
    SleepRecord,
    TaskChange,
    WindowSummary,
)

EVAL_SCALARS_FILE = "eval_scalars.jsonl"
"""Evaluation-time diagnostics of a run directory: every scalar tagged ``eval/...``."""

EPISODES_FILE = "episodes.jsonl"
"""One row per finished training episode: window, task, step, return."""

SLEEPS_FILE = "sleeps.jsonl"
"""One row per sleep phase: after which task, which consolidator and learner, how many updates."""

SLEEP_EVALS_FILE = "sleep_evals.jsonl"
"""The evaluation round after each window's sleep phase (task-aware runs with a
consolidator): :class:`~l2rl.types.EvalRecord` rows, kept apart from ``evals.jsonl`` so that
the Continual World metrics see the same rounds with or without a sleep."""

SKILL_EVENTS_FILE = "skill_events.jsonl"
"""One row per lifecycle event of a skill manager (:class:`~l2rl.types.SkillEvent`)."""

TASK_CHANGES_FILE = "task_changes.jsonl"
"""One row per inferred task change a detector asked for (task-agnostic runs)."""

WINDOWS_FILE = "windows.jsonl"
"""One row per closed training window: its optimiser steps per learner."""

EVAL_SCALAR_PREFIX = "eval/"
"""Scalars whose tag starts with this are evaluation-time diagnostics, kept in the records."""


class Recorder:
    """Discards everything; the base of recorders and the choice for in-memory runs.

    The runner keeps the evaluation records itself, so a run without a directory (tests,
    the conformance kit, benchmarks) loses nothing it returns.
    """

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record a scalar diagnostic at env step ``step``."""

    def evals(self, records: Sequence[EvalRecord]) -> None:
        """Record one round of evaluation."""

    def window(self, summary: WindowSummary) -> None:
        """Record what a training window did, when it closes."""

    def episode(self, record: EpisodeRecord) -> None:
        """Record a training episode that ended."""

    def task_change(self, change: TaskChange) -> None:
        """Record an inferred task change."""

    def sleep(self, record: SleepRecord) -> None:
        """Record a sleep phase that ran."""

    def sleep_evals(self, records: Sequence[EvalRecord]) -> None:
        """Record the evaluation round after a window's sleep phase."""

    def skill_event(self, event: SkillEvent) -> None:
        """Record a skill manager's lifecycle event."""

    def close(self) -> None:
        """Flush and release files."""


class EpisodeCollector(Recorder):
    """Keeps the training episodes in memory (a reference run's, for its STE log);
    discards everything else."""

    def __init__(self) -> None:
        self.episodes: list[EpisodeRecord] = []

    def episode(self, record: EpisodeRecord) -> None:
        """Keep the episode."""
        self.episodes.append(record)


class DiskRecorder(Recorder):
    """Writes ``evals.jsonl`` (flushed per record), ``eval_scalars.jsonl`` and TensorBoard
    events under ``run_dir``.

    TensorBoard tags: ``train/*`` (episode returns, losses), ``eval/<task>/score`` and
    ``eval/<task>/return``. Every scalar a component or agent logs under a tag starting
    with ``eval/`` (an evaluation-time diagnostic, e.g. a world model's loss on held-out
    data of each task) also goes to ``eval_scalars.jsonl``, one ``{"step", "tag",
    "value"}`` row each, flushed per row, so that it can be committed with the evaluation
    records and plotted from them (TensorBoard event files are not meant for that). The
    file is created with its first row. Each closed window's summary goes to
    ``windows.jsonl``, each finished training episode to ``episodes.jsonl``.

    Args:
        run_dir: the run's directory.
        resumed_from: the env step of the checkpoint a resumed run continues from: the
            TensorBoard events the interrupted run wrote after it are purged (TensorBoard's
            ``purge_step``), so no step is shown twice.
    """

    def __init__(self, run_dir: Path, resumed_from: int | None = None) -> None:
        # Imported here: tensorboard's import costs about a second, which runs without a
        # directory (tests, benchmarks) should not pay.
        from torch.utils.tensorboard import SummaryWriter

        self._run_dir = run_dir
        self._evals = JsonlWriter(run_dir / "evals.jsonl")
        self._windows = JsonlWriter(run_dir / WINDOWS_FILE)
        self._episodes = JsonlWriter(run_dir / EPISODES_FILE)
        self._task_changes: JsonlWriter | None = None
        self._sleeps: JsonlWriter | None = None
        self._sleep_evals: JsonlWriter | None = None
        self._skill_events: JsonlWriter | None = None
        self._eval_scalars: JsonlWriter | None = None
        purge = None if resumed_from is None else resumed_from + 1
        self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Write a TensorBoard scalar; ``eval/*`` ones to ``eval_scalars.jsonl`` too."""
        self._tb.add_scalar(tag, value, step)
        if tag.startswith(EVAL_SCALAR_PREFIX):
            if self._eval_scalars is None:
                self._eval_scalars = JsonlWriter(self._run_dir / EVAL_SCALARS_FILE)
            self._eval_scalars.write({"step": step, "tag": tag, "value": float(value)})

    def evals(self, records: Sequence[EvalRecord]) -> None:
        """Append the records to ``evals.jsonl`` and their scores to TensorBoard."""
        for record in records:
            self._evals.write(record_to_row(record))
            self._tb.add_scalar(
                f"eval/{record.eval_task_name}/score", record.score, record.global_step
            )
            self._tb.add_scalar(
                f"eval/{record.eval_task_name}/return", record.mean_return, record.global_step
            )
        self._tb.flush()

    def window(self, summary: WindowSummary) -> None:
        """Append the window's summary to ``windows.jsonl``."""
        self._windows.write(asdict(summary))

    def episode(self, record: EpisodeRecord) -> None:
        """Append the episode to ``episodes.jsonl``."""
        self._episodes.write(asdict(record))

    def task_change(self, change: TaskChange) -> None:
        """Append the change to ``task_changes.jsonl`` (created with its first row)."""
        if self._task_changes is None:
            self._task_changes = JsonlWriter(self._run_dir / TASK_CHANGES_FILE)
        self._task_changes.write(asdict(change))

    def sleep(self, record: SleepRecord) -> None:
        """Append the sleep phase to ``sleeps.jsonl`` (created with its first row)."""
        if self._sleeps is None:
            self._sleeps = JsonlWriter(self._run_dir / SLEEPS_FILE)
        self._sleeps.write(asdict(record))

    def sleep_evals(self, records: Sequence[EvalRecord]) -> None:
        """Append the round to ``sleep_evals.jsonl`` (created with its first row)."""
        if self._sleep_evals is None:
            self._sleep_evals = JsonlWriter(self._run_dir / SLEEP_EVALS_FILE)
        for record in records:
            self._sleep_evals.write(record_to_row(record))

    def skill_event(self, event: SkillEvent) -> None:
        """Append the event to ``skill_events.jsonl`` (created with its first row, flushed
        per row) and its ``delta`` to TensorBoard."""
        if self._skill_events is None:
            self._skill_events = JsonlWriter(self._run_dir / SKILL_EVENTS_FILE)
        self._skill_events.write(asdict(event))
        if math.isfinite(event.delta):
            self._tb.add_scalar(f"skills/{event.event}/delta", event.delta, event.global_step)
        self._tb.add_scalar("skills/bank_size", event.bank_size, event.global_step)

    def close(self) -> None:
        """Close the JSONL files and the TensorBoard writer."""
        self._evals.close()
        self._windows.close()
        self._episodes.close()
        for writer in (self._task_changes, self._sleeps, self._sleep_evals, self._skill_events):
            if writer is not None:
                writer.close()
        if self._eval_scalars is not None:
            self._eval_scalars.close()
        self._tb.close()


HPARAMS_RUN = "hparams"
"""The TensorBoard run (``tb/hparams/``) holding a finished run's hyperparameters."""


def write_hparams(
    run_dir: Path, hparams: Mapping[str, bool | int | float | str], metrics: Mapping[str, float]
) -> None:
    """Add a finished run's hyperparameters and final metrics to TensorBoard's HPARAMS view
    (under ``tb/hparams/``, as ``SummaryWriter.add_hparams`` writes them); metrics that are
    not finite are left out, as the view cannot show them."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    finite = {f"hparams/{k}": float(v) for k, v in metrics.items() if math.isfinite(v)}
    with SummaryWriter(log_dir=str(run_dir / "tb" / HPARAMS_RUN)) as writer:
        for summary in hparams_summaries(dict(hparams), finite):  # type: ignore[no-untyped-call]
            writer.file_writer.add_summary(summary)
        for tag, value in finite.items():
            writer.add_scalar(tag, value)
