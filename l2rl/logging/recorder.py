"""Where a run's scalars and evaluation records go while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from l2rl.logging.files import JsonlWriter, record_to_row
from l2rl.types import EvalRecord


class Recorder:
    """Discards everything; the base of recorders and the choice for in-memory runs.

    The runner keeps the evaluation records itself, so a run without a directory (tests,
    the conformance kit, benchmarks) loses nothing it returns.
    """

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record a scalar diagnostic at env step ``step``."""

    def evals(self, records: Sequence[EvalRecord]) -> None:
        """Record one round of evaluation."""

    def close(self) -> None:
        """Flush and release files."""


class DiskRecorder(Recorder):
    """Writes ``evals.jsonl`` (flushed per record) and TensorBoard events under ``run_dir``.

    TensorBoard tags: ``train/*`` (episode returns, losses), ``eval/<task>/score`` and
    ``eval/<task>/return``.
    """

    def __init__(self, run_dir: Path) -> None:
        # Imported here: tensorboard's import costs about a second, which runs without a
        # directory (tests, benchmarks) should not pay.
        from torch.utils.tensorboard import SummaryWriter

        self._evals = JsonlWriter(run_dir / "evals.jsonl")
        self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Write a TensorBoard scalar."""
        self._tb.add_scalar(tag, value, step)

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

    def close(self) -> None:
        """Close the JSONL file and the TensorBoard writer."""
        self._evals.close()
        self._tb.close()
