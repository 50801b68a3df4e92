"""A run cut short resumes from its last window-end checkpoint to the very same result."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from l2rl.config import RunConfig, parse_config
from l2rl.experiment import metrics_of_run, resume_experiment, run_experiment
from l2rl.runner import Runner
from l2rl.testing.runs import Interrupted, interrupted_at


def tiny(tmp_path: Path) -> RunConfig:
    data: dict[str, Any] = {
        "name": "tiny",
        "seeds": [0],
        "scenario": {
            "name": "cartpole-variants",
            "options": {
                "variants": ["base", "swap-actions", "permute-obs"],
                "max_episode_steps": 40,
            },
            "steps_per_task": 300,
        },
        "agent": {"name": "dqn", "options": {"learning_starts": 50, "batch_size": 16}},
        "replay": {"name": "fifo", "options": {"capacity": 400}},
        "evaluation": {"every": 100, "episodes": 2},
        "metrics": {"reference_runs": False},
        "output_dir": str(tmp_path / "runs"),
        "progress": False,
    }
    return parse_config(data)


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]


Evaluate = Callable[[Runner, int, int, bool, bool], None]


def run_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evaluate: Evaluate) -> Path:
    """Run ``tiny`` with ``evaluate`` as the runner's evaluation, killed in the second
    window after its second evaluation (step 500, past the first window-end checkpoint);
    its dir."""
    before = set((tmp_path / "runs").glob("tiny-*"))
    monkeypatch.setattr(Runner, "_evaluate", evaluate)
    with interrupted_at(500), pytest.raises(Interrupted):
        run_experiment(tiny(tmp_path))
    monkeypatch.undo()
    (cut,) = set((tmp_path / "runs").glob("tiny-*")) - before
    return cut


def test_resumed_run_equals_the_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = run_experiment(tiny(tmp_path)).directory / "seed_0"

    # The same experiment, killed in the second window after one of its evaluations.
    cut = run_cut_short(tmp_path, monkeypatch, Runner._evaluate)
    assert not (cut / "seed_0" / "metrics.json").exists()
    assert max(r["global_step"] for r in rows(cut / "seed_0")) == 500  # past the checkpoint

    result = resume_experiment(cut)
    assert rows(cut / "seed_0") == rows(whole)  # partial-window rows replaced, not doubled
    assert result.per_seed[0].to_dict() == metrics_of_run(whole).to_dict()
    assert (cut / "summary.json").is_file()


def test_a_crash_before_any_checkpoint_starts_the_seed_over(tmp_path: Path) -> None:
    directory = run_experiment(tiny(tmp_path)).directory
    expected = rows(directory / "seed_0")
    (directory / "seed_0" / "checkpoint.pt").unlink()
    (directory / "seed_0" / "metrics.json").unlink()
    shutil.rmtree(directory / "seed_0" / "tb")
    resume_experiment(directory)
    assert rows(directory / "seed_0") == expected


def eval_scalar_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "eval_scalars.jsonl").read_text().splitlines()]


def test_eval_scalars_of_a_resumed_run_equal_the_uninterrupted_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a probe component: an ``eval/`` diagnostic logged at every evaluation,
    # derived from the run's state (the scores just made), and a ``train/`` one that must
    # stay out of the file.
    original = Runner._evaluate

    def probing(
        self: Runner, block: int, trained_task: int, block_end: bool, after_sleep: bool = False
    ) -> None:
        original(self, block, trained_task, block_end, after_sleep)
        step = self.ctx.global_step
        self.recorder.scalar("eval/probe/last_score", self.records[-1].score, step)
        self.recorder.scalar("train/not_kept", 1.0, step)

    monkeypatch.setattr(Runner, "_evaluate", probing)
    whole = run_experiment(tiny(tmp_path)).directory / "seed_0"
    expected = eval_scalar_rows(whole)
    assert {r["tag"] for r in expected} == {"eval/probe/last_score"}
    assert len(expected) == len(rows(whole)) // 3  # one per evaluation round of 3 tasks

    cut = run_cut_short(tmp_path, monkeypatch, probing)
    assert max(r["step"] for r in eval_scalar_rows(cut / "seed_0")) == 500  # past the checkpoint

    monkeypatch.setattr(Runner, "_evaluate", probing)
    resume_experiment(cut)
    assert eval_scalar_rows(cut / "seed_0") == expected  # cut rows dropped, not doubled


def test_a_run_killed_inside_a_window_resumes_from_its_last_checkpoint_there(
    tmp_path: Path,
) -> None:
    def config() -> RunConfig:
        return tiny(tmp_path).model_copy(update={"checkpoint_every": 50})

    whole = run_experiment(config()).directory / "seed_0"
    # killed at the second window's second evaluation (step 500), before the round-end
    # checkpoint of that step: the last checkpoint on disk is the one at step 450
    with interrupted_at(500), pytest.raises(Interrupted):
        run_experiment(config())
    (cut,) = [d for d in (tmp_path / "runs").glob("tiny-*") if d != whole.parent]
    resume_experiment(cut)
    assert rows(cut / "seed_0") == rows(whole)
    for name in ("metrics.json", "windows.jsonl", "episodes.jsonl"):
        assert (cut / "seed_0" / name).read_text() == (whole / name).read_text(), name
    (resumed,) = [json.loads(line) for line in (cut / "seed_0" / "resumes.jsonl").open()]
    assert resumed == {
        "from_step": 450,
        "inside_window": True,
        "bitwise_comparable": True,
        "reason": "",
    }


def test_an_agent_without_its_acting_state_resumes_inside_a_window_with_new_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2rl.agents.dqn import DQNAgent

    monkeypatch.setattr(DQNAgent, "resumes_mid_episode", False)
    config = tiny(tmp_path).model_copy(update={"checkpoint_every": 50})
    with interrupted_at(500), pytest.raises(Interrupted):
        run_experiment(config)
    (cut,) = (tmp_path / "runs").glob("tiny-*")
    resume_experiment(cut)
    (resumed,) = [json.loads(line) for line in (cut / "seed_0" / "resumes.jsonl").open()]
    assert resumed["from_step"] == 450 and not resumed["bitwise_comparable"]
    assert resumed["reason"] == "the agent's acting state is not saved"
    assert max(r["global_step"] for r in rows(cut / "seed_0")) == 900  # the run finished
