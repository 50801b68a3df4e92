"""The default experiment does what the README says: learn each task, then forget it.

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
def test_default_scenario_learns_each_task_then_forgets(tmp_path: Path) -> None:
    config = load_config(
        ROOT / "experiments" / "default.yaml", [f"output_dir={tmp_path}", "progress=false"]
    )
    result = run_experiment(config)
    metrics = result.per_seed[config.seeds[0]]
    matrix = metrics.performance_matrix
    learned = [matrix[k + 1, k] for k in range(matrix.shape[1])]
    assert min(learned) > 0.8, f"a task was not learned in its window: {learned}"
    assert metrics.forgetting > 0.3, matrix
    assert np.isfinite(metrics.forward_transfer)
    assert (result.directory / "summary.json").is_file()
