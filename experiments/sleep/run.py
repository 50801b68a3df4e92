"""The generative-replay sleep phase vs reservoir replay vs fine-tuning, at equal memory,
on cartpole-variants and minatar-sequence.

    .venv/bin/python experiments/sleep/run.py                 # run or resume, report
    .venv/bin/python experiments/sleep/run.py --report-only   # table + plots from records

The base settings are ``<scenario>.yaml`` beside this file; ``methods.yaml`` says what
each method changes. Runs go to ``runs/sleep/<scenario>/<method>/seed_<s>/``; each
finished seed's records (its sleeps and the rounds after them included) are copied to
``results/records/``, and the table and plots are computed from those records only
(:class:`l2rl.grid.Grid`). See README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2rl.grid import Grid, PerTaskScores, ScoreCurves, SleepRounds

HERE = Path(__file__).resolve().parent
GRID = Grid(
    folder=HERE,
    title="Generative-replay sleep vs reservoir replay vs fine-tuning at equal memory",
    scenarios=("cartpole-variants", "minatar-sequence"),
    available=("cartpole-variants", "minatar-sequence"),
    baseline="fine-tuning",
    reference="fine-tuning's DQN",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/sleep/run.py --report-only`.",
    ),
    output=Path("runs/sleep"),
    optional_record_files=("sleeps.jsonl", "sleep_evals.jsonl"),
    sections=(PerTaskScores(), SleepRounds(), ScoreCurves()),
)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid, commit records, write the report."""
    return GRID.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
