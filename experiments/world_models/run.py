"""Dreamer with FIFO, reservoir, WMAR and Continual-Dreamer replay at equal replay memory.

    .venv/bin/python experiments/world_models/run.py                 # run or resume, report
    .venv/bin/python experiments/world_models/run.py --report-only   # table + plots from records

Each scenario's base setting is ``<scenario>.yaml`` beside this file (the Dreamer agent, its
world model, the held-out probe and the replay's capacity); ``methods.yaml`` says what each
method changes (the replay's rule; Plan2Explore added for Continual-Dreamer). Runs go to
``runs/world_models/<scenario>/<method>/seed_<s>/`` and are resumed if interrupted; each
finished seed's records, the world model's held-out losses (``eval_scalars.jsonl``)
included, are copied to ``results/records/<scenario>/<method>/seed_<s>/``, and the table and
plots are computed from those committed records only (:class:`l2rl.grid.Grid`, shared with
``experiments/baselines``). See README.md for what is compared and the budgets.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2rl.grid import RECORD_FILES, EvalScalarCurves, Grid, PerTaskScores, ScoreCurves

HERE = Path(__file__).resolve().parent
GRID = Grid(
    folder=HERE,
    title="World models: Dreamer with four replays at equal memory",
    scenarios=("cartpole-variants", "minatar-sequence"),
    available=("cartpole-variants", "minatar-sequence"),
    baseline="fifo",
    reference="Dreamer with FIFO replay",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/world_models/run.py --report-only`.",
    ),
    output=Path("runs/world_models"),
    record_files=(*RECORD_FILES, "eval_scalars.jsonl"),
    sections=(
        PerTaskScores(),
        ScoreCurves(),
        EvalScalarCurves(
            tag="eval/world_model/{task}/loss_total",
            slug="heldout-loss",
            label="world-model loss (sum of its terms)",
            title="world-model loss on each task's held-out random-policy data",
            log_y=True,
            table=True,
        ),
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid, commit records, write the report."""
    return GRID.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
