"""Run the continual-learning baselines, commit their per-seed records, regenerate the table.

    .venv/bin/python experiments/baselines/run.py                 # run or resume, then report
    .venv/bin/python experiments/baselines/run.py --report-only   # table + plots from records
    .venv/bin/python experiments/baselines/rerun_cell.py --method reservoir --seed 3

Each scenario's base setting is ``<scenario>.yaml`` beside this file; ``methods.yaml`` says
what each method changes in it (the replay, or components added). Runs go to
``runs/baselines/<scenario>/<method>/seed_<s>/`` and are resumed if interrupted. Each
finished seed's records (evaluation records with per-episode returns, reference records,
config, scenario, agent and environment manifest; a few hundred kB) are copied to
``results/records/<scenario>/<method>/seed_<s>/``, and the table (``results/results.md``,
``results/results.json``) and plots are computed from those committed records only, so
``--report-only`` on a fresh clone regenerates them exactly. The machinery is
:class:`l2rl.grid.Grid`, shared with the other experiment grids.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2rl.grid import LABELS, METRICS, Grid, cell_metrics, plot_bars, plot_profiles

HERE = Path(__file__).resolve().parent
BASELINE = "fine-tuning"
"""The method every other is compared with by probability of improvement."""
GRID = Grid(
    folder=HERE,
    title="Baselines",
    # minigrid-sequence.yaml runs with --scenarios; it is not in the committed table.
    scenarios=("cartpole-variants",),
    available=("cartpole-variants", "minigrid-sequence"),
    baseline=BASELINE,
    reference="the fine-tuning agent",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/baselines/run.py --report-only`; rerun any cell from",
        "scratch and compare it record by record with `experiments/baselines/rerun_cell.py`.",
    ),
    output=Path("runs/baselines"),
)
RECORDS = GRID.records
SCENARIOS = GRID.scenarios
AVAILABLE = GRID.available
RECORD_FILES = GRID.record_files
experiment_configs = GRID.experiment_configs
copy_records = GRID.copy_records
summarise = GRID.summarise
write_report = GRID.write_report
__all__ = [
    "AVAILABLE",
    "BASELINE",
    "GRID",
    "LABELS",
    "METRICS",
    "RECORDS",
    "RECORD_FILES",
    "SCENARIOS",
    "cell_metrics",
    "copy_records",
    "experiment_configs",
    "plot_bars",
    "plot_profiles",
    "summarise",
    "write_report",
]


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid, commit records, write the report."""
    return GRID.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
