"""Experiments: reference runs (what they are built from, when two methods share one) and
how a seed that diverges stops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from l2rl.builder import build_scenario
from l2rl.config import PluginRef, RunConfig, parse_config
from l2rl.experiment import (
    FAILED_FILE,
    _reference_key,
    reference_config,
    run_experiment,
    run_seed,
)
from l2rl.runner import NonFiniteError


def config(**changes: Any) -> RunConfig:
    data: dict[str, Any] = {
        "name": "t",
        "scenario": {"name": "cartpole-variants", "steps_per_task": 100},
        "agent": {"name": "dqn"},
        "evaluation": {"every": 50},
    }
    return parse_config(data | changes)


def key(cfg: RunConfig, task: int = 0, seed: int = 0) -> str:
    return _reference_key(reference_config(cfg), build_scenario(cfg), task, seed)


def test_reference_drops_components_and_keeps_the_runs_replay_by_default() -> None:
    cfg = config(
        components=[{"name": "fifo", "label": "extra"}],
        replay={"name": "fifo", "options": {"capacity": 7}},
    )
    ref = reference_config(cfg)
    assert ref.components == []
    assert ref.replay == PluginRef(name="fifo", options={"capacity": 7})


def test_methods_share_a_reference_through_reference_replay() -> None:
    shared = {"reference_replay": {"name": "fifo", "options": {"capacity": 100}}}
    fine_tuning = config(metrics=shared)
    other_method = config(
        metrics=shared,
        replay={"name": "fifo", "options": {"capacity": 5}},
        components=[{"name": "fifo", "label": "another"}],
    )
    assert key(fine_tuning) == key(other_method)
    # without it, a different replay means a different reference
    assert key(config()) != key(config(replay={"name": "fifo", "options": {"capacity": 5}}))


def test_reference_key_changes_with_what_shapes_the_run() -> None:
    base = key(config())
    assert key(config(), seed=1) != base
    assert key(config(), task=1) != base
    assert key(config(agent={"name": "dqn", "options": {"lr": 0.01}})) != base
    assert key(config(evaluation={"every": 25})) != base
    assert key(config(name="renamed")) == base  # the experiment's name does not matter


def test_a_diverging_seed_stops_with_its_records_and_a_failure_marker(tmp_path: Path) -> None:
    cfg = config(
        agent={"name": "dqn", "options": {"lr": 1e30, "learning_starts": 32, "batch_size": 16}},
        scenario={
            "name": "cartpole-variants",
            "options": {"variants": ["base", "swap-actions"], "max_episode_steps": 30},
            "steps_per_task": 300,
        },
        evaluation={"every": 50, "episodes": 1},
        metrics={"reference_runs": False},
        output_dir=str(tmp_path),
    )
    run_dir = tmp_path / "seed_0"
    with pytest.raises(NonFiniteError) as err:
        run_seed(cfg, 0, run_dir)
    failure = json.loads((run_dir / FAILED_FILE).read_text())
    assert failure["learner"] == "agent" == err.value.learner
    assert failure["global_step"] == err.value.global_step
    assert failure["key"].startswith(("loss 'loss_", "gradient of "))
    assert (run_dir / "evals.jsonl").read_text()  # the evaluations made so far stay
    assert not (run_dir / "metrics.json").exists()  # and nothing claims the run finished


def test_reference_keeps_reference_components_and_they_shape_its_key() -> None:
    world_model = {"name": "fifo", "label": "stands-in-for-a-world-model"}
    kept = config(
        components=[world_model, {"name": "fifo", "label": "dropped"}],
        metrics={"reference_components": [world_model]},
    )
    assert reference_config(kept).components == [PluginRef(**world_model)]
    assert key(kept) != key(config())
    # without reference components, the key is what it always was (cached references stay)
    assert key(config(metrics={"reference_components": []})) == key(config())


def test_a_finished_run_shows_its_hyperparameters_and_metrics_in_tensorboard(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from l2rl.testing.runs import tiny_run_config

    result = run_experiment(parse_config(tiny_run_config(tmp_path / "runs")))
    events = EventAccumulator(str(result.directory / "seed_0" / "tb" / "hparams"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["agent.name"].string_value == "dqn"
    assert hparams["scenario.steps_per_task"].number_value == 200
    headline = result.per_seed[0].headline
    final = events.Scalars("hparams/cw_average_performance")[-1].value
    assert abs(final - headline["cw_average_performance"]) < 1e-6
    assert sorted(p.name for p in (result.directory / "seed_0" / "tb").iterdir() if p.is_dir()) == [
        "hparams"
    ]
