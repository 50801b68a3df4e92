"""EWC with oracle boundaries, detected boundaries (Page-Hinkley, CUSUM) or none, and
fine-tuning, on a task-agnostic cartpole-variants; and one detector on minatar-sequence.

    .venv/bin/python experiments/task_agnostic/run.py                 # run or resume, report
    .venv/bin/python experiments/task_agnostic/run.py --report-only   # table + plots from records

The base setting is ``cartpole-variants.yaml`` beside this file; ``methods.yaml`` says what
each method changes. Runs go to ``runs/task_agnostic/<scenario>/<method>/seed_<s>/``; each
finished seed's records (its inferred task changes included) are copied to
``results/records/``, and the table, the detection figures and the plots are computed from
those records only (:class:`l2rl.grid.Grid`). See README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2rl.grid import DetectionTable, Grid, PerTaskScores, ScoreCurves

HERE = Path(__file__).resolve().parent
GRID = Grid(
    folder=HERE,
    title="Task-agnostic EWC: oracle, detected or no task boundaries",
    scenarios=("cartpole-variants", "minatar-sequence"),
    available=("cartpole-variants", "minatar-sequence"),
    baseline="fine-tuning",
    reference="fine-tuning's DQN",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/task_agnostic/run.py --report-only`.",
    ),
    output=Path("runs/task_agnostic"),
    optional_record_files=("task_changes.jsonl",),
    sections=(DetectionTable(), PerTaskScores(), ScoreCurves()),
)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid, commit records, write the report."""
    return GRID.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
