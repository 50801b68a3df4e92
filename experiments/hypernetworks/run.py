"""HyperCRL against fine-tuning, coreset replay, EWC and SI on a learned dynamics model.

    .venv/bin/python experiments/hypernetworks/run.py --workers 2      # run or resume, report
    .venv/bin/python experiments/hypernetworks/run.py --report-only    # table + plots from records

Each scenario's base setting is ``<scenario>.yaml`` beside this file (the MPC agent, its
model and schedule, the current-task replay, the held-out dynamics probe); ``methods.yaml``
says what each method changes. Runs go to ``runs/hypernetworks/<scenario>/<method>/seed_<s>/``
and are resumed if interrupted; each finished seed's records (the model's held-out errors in
``eval_scalars.jsonl`` included) are copied to ``results/records/<scenario>/<method>/seed_<s>/``,
and the table and plots are computed from those committed records only
(:class:`l2rl.grid.Grid`). See README.md for what is compared and the budgets.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2rl.grid import EvalScalarCurves, Grid, PerTaskScores, ScoreCurves

HERE = Path(__file__).resolve().parent
GRID = Grid(
    folder=HERE,
    title="Hypernetworks: HyperCRL against fixed-capacity baselines and a coreset",
    scenarios=("pendulum-gravity", "cartpole-continuous", "cartpole-variants"),
    available=("pendulum-gravity", "cartpole-continuous", "cartpole-variants"),
    baseline="fine-tuning",
    reference="MPC with the method's own model trained on one task alone",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/hypernetworks/run.py --report-only`.",
    ),
    output=Path("runs/hypernetworks"),
    # the model's held-out errors; DQN's runs (cartpole-variants) log none
    optional_record_files=("eval_scalars.jsonl",),
    sections=(
        PerTaskScores(),
        ScoreCurves(),
        EvalScalarCurves(
            tag="eval/dynamics/{task}/mse",
            slug="dynamics-error",
            label="model error (MSE of s' - s)",
            title="dynamics model error on each task's held-out random-policy transitions",
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
