"""The default experiment does what the README says: learn the tasks, then forget them.

Marked slow (about a minute on 2 cores); run with ``pytest -m slow`` (CI's second job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2rl.config import load_config
from l2rl.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_default_scenario_learns_the_tasks_then_forgets(tmp_path: Path) -> None:
    config = load_config(
        ROOT / "experiments" / "default.yaml", [f"output_dir={tmp_path}", "progress=false"]
    )
    result = run_experiment(config)
    metrics = result.per_seed[config.seeds[0]]
    matrix = metrics.performance_matrix
    learned = [matrix[k + 1, k] for k in range(matrix.shape[1])]
    # base and swap-actions are learned in their windows; permute-obs, whose inputs change
    # meaning, only partly after two earlier tasks (loss of plasticity; README), but far
    # above its score before training.
    assert min(learned[:2]) > 0.8, f"a task was not learned in its window: {learned}"
    assert learned[2] > matrix[0, 2] + 0.25, learned
    # the first two are forgotten: base fails under swap-actions and permute-obs
    assert matrix[3, 0] < 0.2 and matrix[3, 1] < 0.5, matrix
    assert metrics["cw_forgetting"] > 0.3, matrix
    assert np.isfinite(metrics["cw_forward_transfer"])
    assert (result.directory / "summary.json").is_file()
