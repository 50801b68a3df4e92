"""Progress display for long runs: task i/N, steps, recent return, speed and ETA."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_HIDDEN: ContextVar[bool] = ContextVar("l2rl_progress_hidden", default=False)


@contextmanager
def hidden() -> Iterator[None]:
    """Disable every :class:`ProgressDisplay` created inside, whatever a config says.

    ``l2rl resume --no-progress`` uses it: a resumed run reads ``progress`` from the
    ``config.yaml`` files it wrote at the start.
    """
    token = _HIDDEN.set(True)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


class ProgressDisplay:
    """A one-line rich progress bar on stderr over the run's total env steps.

    Disabled (a no-op) when ``enabled`` is false or inside :func:`hidden`; rich itself
    falls back to plain occasional lines when stderr is not a terminal.
    """

    def __init__(self, total_steps: int, label: str, enabled: bool = True) -> None:
        enabled = enabled and not _HIDDEN.get()
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("return {task.fields[recent_return]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            disable=not enabled,
            transient=False,
        )
        self._label = label
        self._bar = self._progress.add_task(label, total=total_steps, recent_return="-", speed="")

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def start_block(self, block: int, num_blocks: int, task_name: str) -> None:
        """Show which training window is running."""
        self._progress.update(
            self._bar, description=f"{self._label} task {block + 1}/{num_blocks} {task_name}"
        )

    def update(self, completed: int, recent_return: float | None, steps_per_second: float) -> None:
        """Move the bar to ``completed`` steps and refresh the recent return and speed."""
        shown = "-" if recent_return is None else f"{recent_return:.1f}"
        self._progress.update(
            self._bar,
            completed=completed,
            recent_return=shown,
            speed=f"{steps_per_second:,.0f} steps/s",
        )
