"""The ``cw_*`` and ``gem_*`` metrics against the papers' own code on the same records.

Each test lays l2rl's evaluation records out as that code's logs and recomputes the metric
the way the code does, step for step (re-expressed here, not imported: neither project is a
package):

* Continual World, ``continualworld/results_processing/tables.py``: a pandas frame with one
  row per evaluation logged while a task trains (``x``, ``train/active_env`` and one
  ``test/stochastic/<j>/<name>/success`` column per task), then ``calculate_data_at_the_end``,
  ``calculate_forgetting_individual``, ``compute_mean_and_ci`` and
  ``calculate_forward_transfer`` with its ``BootstrapCI`` (4000 resamples, seed 0, 90%).
* GEM, ``metrics/metrics.py``: ``result_t`` / ``result_a`` tensors as ``main.py`` logs them
  (a row before training, rows while each task trains, the row closing each task last),
  then ``task_changes`` and ``confusion_matrix``.

The Continual World computation also runs on the committed baseline records of every cell and
must give the committed table's figures (``experiments/baselines/results/results.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from l2rl.aggregate import aggregate_seeds
from l2rl.logging.files import read_jsonl
from l2rl.metrics import RunMetrics, summarize_run
from l2rl.types import EvalRecord

NUM_TASKS = 3
SCHEDULE = [0, 1, 2]
BLOCK = 100
EVERY = 10
SEEDS = 7
NAMES = ["base", "swap", "permute"]
METHOD = "method"


def random_run(
    rng: np.random.Generator, schedule: Sequence[int], num_tasks: int
) -> list[EvalRecord]:
    """Scores at random for every task at every round: before training, then every ``EVERY``."""
    records = []
    steps = range(0, len(schedule) * BLOCK + 1, EVERY)
    for step in steps:
        block = -1 if step == 0 else (step - 1) // BLOCK
        for task in range(num_tasks):
            score = float(rng.uniform())
            records.append(
                EvalRecord(
                    global_step=step,
                    block=block,
                    trained_task=schedule[block] if block >= 0 else -1,
                    eval_task=task,
                    eval_task_name=NAMES[task],
                    mean_return=200.0 * score,
                    score=score,
                    episodes=5,
                    block_end=step % BLOCK == 0,
                )
            )
    return records


@pytest.fixture(scope="module")
def seeds() -> tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]]:
    """Per seed: the run's records and one single-task reference run per task."""
    rng = np.random.default_rng(2024)
    runs = [random_run(rng, SCHEDULE, NUM_TASKS) for _ in range(SEEDS)]
    references = [{t: random_run(rng, [0], 1) for t in range(NUM_TASKS)} for _ in range(SEEDS)]
    return runs, references


def l2rl_metrics(
    seeds: tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]],
) -> list[RunMetrics]:
    """l2rl's metrics of every seed, each against its own seed's reference runs."""
    return [
        summarize_run(records, SCHEDULE, NUM_TASKS, reference=reference)
        for records, reference in zip(*seeds, strict=True)
    ]


# --- Continual World's logs and tables.py, re-expressed ---------------------------------
def success_column(task: int, name: str) -> str:
    return f"test/stochastic/{task}/{name}/success"


def cw_frame(
    runs: Sequence[Sequence[EvalRecord]], schedule: Sequence[int], names: Sequence[str]
) -> pd.DataFrame:
    """One row per evaluation round logged while training (their logs have no step-0 row)."""
    rows = []
    for experiment, records in enumerate(runs):
        by_step: dict[int, dict[str, object]] = {}
        for r in records:
            if r.block < 0:
                continue
            row = by_step.setdefault(
                r.global_step,
                {
                    "x": r.global_step,
                    "train/active_env": schedule[r.block],
                    "experiment_id": f"exp{experiment}",
                    "cl_method": METHOD,
                    "task": names[schedule[r.block]],
                },
            )
            row[success_column(r.eval_task, names[r.eval_task])] = r.score
        rows.extend(by_step.values())
    return pd.DataFrame(rows)


def task_columns(data: pd.DataFrame) -> list[str]:
    return [c for c in data.columns if c.startswith("test/stochastic/")]


def cw_data_at_the_end(data: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """``calculate_data_at_the_end``: the mean of each run's last 5 rows."""
    tail = data.sort_values(by=["x"]).groupby(index).tail(5)
    return tail.groupby(index)[task_columns(data)].mean()


def cw_individual_forgetting(data: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """``calculate_forgetting_individual``: last-5 mean while active minus at the end."""
    at_end = cw_data_at_the_end(data, index)
    partial = []
    for env in sorted(data["train/active_env"].unique()):
        column = data.columns[data.columns.str.contains(f"test/stochastic/{int(env)}/.*/success")][
            0
        ]
        rows = data.loc[data["train/active_env"] == env, [column, "x", *index]]
        partial.append(rows.sort_values(by=["x"]).groupby(index).tail(5).groupby(index).mean())
    while_active = pd.concat(partial).groupby(index).max().drop(["x"], axis=1)
    return while_active - at_end


def cw_quantiles(statistic: np.ndarray) -> tuple[float, float]:
    low = np.quantile(statistic, 0.05, method="midpoint")
    high = np.quantile(statistic, 0.95, method="midpoint")
    return float(low), float(high)


def cw_mean_and_ci(frame: pd.DataFrame, columns: list[str]) -> tuple[float, float, float]:
    """``compute_mean_and_ci`` for one method: row means, then ``BootstrapCI`` over runs."""
    x = frame[columns].mean(axis=1).to_numpy()[:, None]
    np.random.seed(0)
    resampled = x[np.random.choice(len(x), (4000, len(x)))]
    return float(x.mean()), *cw_quantiles(np.mean(resampled[..., 0], axis=1))


def cw_forward_transfer(
    data: pd.DataFrame, baseline: pd.DataFrame, names: Sequence[str]
) -> tuple[float, float, float]:
    """``calculate_forward_transfer``'s ``total_normalized_ft`` and its interval."""
    data = data.copy()
    long_baseline = []
    for env in sorted(data["train/active_env"].unique()):
        current = baseline[baseline["task"] == names[env]].copy()
        current["current_success"] = current[success_column(0, names[env])]
        current["train/active_env"] = env
        long_baseline.append(current)
        active = data["train/active_env"] == env
        data.loc[active, "current_success"] = data.loc[active, success_column(env, names[env])]
    by_env = ["train/active_env", "experiment_id"]
    x_frame = data.groupby(by_env)["current_success"].mean().reset_index()
    y_frame = pd.concat(long_baseline).groupby(by_env)["current_success"].mean().reset_index()
    x = x_frame.pivot(index="experiment_id", columns="train/active_env", values="current_success")
    y_wide = y_frame.pivot(
        index="experiment_id", columns="train/active_env", values="current_success"
    )
    y = pd.DataFrame({c: y_wide[c].dropna().values for c in y_wide.columns}).to_numpy()
    x_array = x.to_numpy()

    def normalized_ft(xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
        per_task = [
            (np.mean(xv[..., i], axis=-1) - np.mean(yv[..., i], axis=-1))
            / (1 - np.mean(yv[..., i], axis=-1))
            for i in range(xv.shape[-1])
        ]
        return np.mean(per_task, axis=0)

    np.random.seed(0)
    ii = np.random.choice(len(x_array), (4000, len(x_array)))
    jj = np.random.choice(len(y), (4000, len(y)))
    estimate = float(normalized_ft(x_array[None], y[None])[0])
    return estimate, *cw_quantiles(normalized_ft(x_array[ii], y[jj]))


def reference_frame(references: Sequence[dict[int, list[EvalRecord]]]) -> pd.DataFrame:
    """Their ``baseline_data``: each single-task run logs its task as task 0."""
    frames = []
    for seed, per_task in enumerate(references):
        for task, records in per_task.items():
            frame = cw_frame([records], [0], [NAMES[task]])
            frame["experiment_id"] = f"ref{task}_{seed}"
            frame["task"] = NAMES[task]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# --- tests -------------------------------------------------------------------------------
def test_cw_per_run_values_match_tables_py(
    seeds: tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]],
) -> None:
    runs, _ = seeds
    ours = l2rl_metrics(seeds)
    data = cw_frame(runs, SCHEDULE, NAMES)
    index = ["cl_method", "experiment_id"]
    columns = [success_column(t, NAMES[t]) for t in range(NUM_TASKS)]
    at_end = cw_data_at_the_end(data, index)[columns].to_numpy()
    forgetting = cw_individual_forgetting(data, index)[columns].to_numpy()
    for seed, m in enumerate(ours):
        np.testing.assert_allclose(m.per_task["cw_final_score"], at_end[seed], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            m.per_task["cw_forgetting"], forgetting[seed], rtol=0, atol=1e-12
        )
        assert m["cw_average_performance"] == pytest.approx(at_end[seed].mean(), abs=1e-12)
        assert m["cw_forgetting"] == pytest.approx(forgetting[seed].mean(), abs=1e-12)
    # The final task's forgetting is 0 when its window holds the run's last 5 rows.
    np.testing.assert_allclose(forgetting[:, -1], 0.0, atol=1e-12)


def test_cw_table_means_and_intervals_match_tables_py(
    seeds: tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]],
) -> None:
    runs, references = seeds
    summary = aggregate_seeds([m.to_dict() for m in l2rl_metrics(seeds)])
    data = cw_frame(runs, SCHEDULE, NAMES)
    index = ["cl_method", "experiment_id"]
    columns = [success_column(t, NAMES[t]) for t in range(NUM_TASKS)]
    expected = {
        "cw_average_performance": cw_mean_and_ci(cw_data_at_the_end(data, index), columns),
        "cw_forgetting": cw_mean_and_ci(cw_individual_forgetting(data, index), columns),
        "cw_forward_transfer": cw_forward_transfer(data, reference_frame(references), NAMES),
    }
    for key, (mean, low, high) in expected.items():
        got = summary[key]
        assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx(
            (mean, low, high), abs=1e-12
        ), key
        assert got["n"] == SEEDS
        assert low < mean < high  # a real interval, not a degenerate one


def test_cw_forward_transfer_is_a_ratio_of_seed_means(
    seeds: tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]],
) -> None:
    ours = l2rl_metrics(seeds)
    mean_of_ratios = float(np.mean([m["cw_forward_transfer"] for m in ours]))
    ratio_of_means = aggregate_seeds([m.to_dict() for m in ours])["cw_forward_transfer"]["mean"]
    assert abs(mean_of_ratios - ratio_of_means) > 1e-3  # they differ on these records


# --- GEM's main.py logs and metrics.py, re-expressed -------------------------------------
def gem_logs(records: Sequence[EvalRecord], num_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``result_t`` and ``result_a`` as GEM's ``life_experience`` appends them."""
    rounds = sorted({(r.global_step, r.block) for r in records})
    score = {(r.global_step, r.block, r.eval_task): r.score for r in records}
    result_t = [max(block, 0) for _, block in rounds]  # the row before training is task 0's
    result_a = [[score[(step, block, t)] for t in range(num_tasks)] for step, block in rounds]
    return torch.tensor(result_t, dtype=torch.float64), torch.tensor(result_a, dtype=torch.float64)


def gem_confusion_matrix(result_t: torch.Tensor, result_a: torch.Tensor) -> tuple[float, float]:
    """``confusion_matrix``'s ``bwt.mean()`` and ``fwt.mean()``."""
    n_tasks = int(result_t.max() + 1)
    changes = [i for i in range(1, len(result_t)) if result_t[i] != result_t[i - 1]]
    result = result_a[torch.tensor([*changes, result_a.size(0)]) - 1]
    baseline = result_a[0]
    bwt = result[n_tasks - 1] - result.diag()
    fwt = torch.zeros(n_tasks, dtype=torch.float64)
    for t in range(1, n_tasks):
        fwt[t] = result[t - 1, t] - baseline[t]
    return float(bwt.mean()), float(fwt.mean())


def test_gem_transfer_matches_confusion_matrix(
    seeds: tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]],
) -> None:
    runs, _ = seeds
    for records, m in zip(runs, l2rl_metrics(seeds), strict=True):
        bwt, fwt = gem_confusion_matrix(*gem_logs(records, NUM_TASKS))
        assert m["gem_backward_transfer"] == pytest.approx(bwt, abs=1e-12)
        assert m["gem_forward_transfer"] == pytest.approx(fwt, abs=1e-12)


# --- the committed baseline table --------------------------------------------------------
BASELINES = Path(__file__).resolve().parents[2] / "experiments" / "baselines" / "results"


def committed_cell(cell: Path) -> tuple[list[list[EvalRecord]], list[dict[int, list[EvalRecord]]]]:
    """Per seed of a committed table cell: its records and its reference runs by task."""
    runs, references = [], []
    for seed_dir in sorted(cell.glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
        runs.append([EvalRecord.from_row(r) for r in read_jsonl(seed_dir / "evals.jsonl")])
        by_task: dict[int, list[EvalRecord]] = {}
        for row in read_jsonl(seed_dir / "reference_evals.jsonl"):
            task = row.pop("reference_for")
            by_task.setdefault(task, []).append(EvalRecord.from_row(row))
        references.append(by_task)
    return runs, references


@pytest.mark.parametrize(
    "cell",
    sorted((BASELINES / "records" / "cartpole-variants").iterdir()),
    ids=lambda p: p.name,
)
def test_committed_baseline_table_matches_tables_py(cell: Path) -> None:
    runs, references = committed_cell(cell)
    names = [r.eval_task_name for r in runs[0][:NUM_TASKS]]
    data = cw_frame(runs, SCHEDULE, names)
    index = ["cl_method", "experiment_id"]
    columns = [success_column(t, names[t]) for t in range(NUM_TASKS)]
    baseline = []
    for seed, per_task in enumerate(references):
        for task, records in per_task.items():
            frame = cw_frame([records], [0], [names[task]])
            frame["experiment_id"], frame["task"] = f"ref{task}_{seed}", names[task]
            baseline.append(frame)
    expected = {
        "cw_average_performance": cw_mean_and_ci(cw_data_at_the_end(data, index), columns),
        "cw_forgetting": cw_mean_and_ci(cw_individual_forgetting(data, index), columns),
        "cw_forward_transfer": cw_forward_transfer(data, pd.concat(baseline), names),
    }
    table = json.loads((BASELINES / "results.json").read_text())[f"cartpole-variants/{cell.name}"]
    for key, (mean, low, high) in expected.items():
        got = table[key]
        assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx(
            (mean, low, high), abs=1e-12
        ), key
