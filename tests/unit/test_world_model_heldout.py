"""world-model-heldout: the held-out batch's layout, and a probe that leaves the run alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from l2rl.builder import build_run, build_scenario
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models.dreamer_world_model import DreamerWorldModelComponent
from l2rl.components.world_models.heldout_probe import (
    _HELDOUT_STREAM,
    WorldModelHeldout,
    random_policy_sequences,
)
from l2rl.config import ConfigError, RunConfig, parse_config
from l2rl.core import AgentServices, Component
from l2rl.experiment import run_seed, seed_torch_stream
from l2rl.logging.recorder import Recorder
from l2rl.seeding import derive_seed
from l2rl.testing import check_component
from l2rl.types import EnvSpec, EvalRecord


def cartpole(variants: tuple[str, ...] = ("base", "swap-actions"), steps: int = 120) -> RunConfig:
    return parse_config(
        {
            "name": "t",
            "scenario": {
                "name": "cartpole-variants",
                "options": {"variants": list(variants), "max_episode_steps": 30},
                "steps_per_task": steps,
                "task_aware": False,
            },
            "agent": {
                "name": "dreamer",
                "options": {
                    "units": 16,
                    "batch_size": 2,
                    "sequence_length": 8,
                    "train_every": 10,
                    "learning_starts": 40,
                    "horizon": 3,
                },
            },
            "replay": {"name": "fifo", "options": {"capacity": 256, "chunk_steps": 16}},
            "components": [
                {
                    "name": "dreamer-world-model",
                    "options": {
                        "deter": 16,
                        "units": 16,
                        "latents": 4,
                        "classes": 4,
                        "batch_size": 2,
                        "sequence_length": 8,
                        "train_every": 10,
                        "learning_starts": 40,
                    },
                }
            ],
            "evaluation": {"every": 40, "episodes": 1},
            "metrics": {"reference_runs": False},
            "progress": False,
        }
    )


def test_heldout_batch_is_in_dreamers_layout_and_replays_the_env() -> None:
    config = cartpole()
    scenario = build_scenario(config)
    spec, task = scenario.env_spec(), scenario.tasks[0]
    batch = random_policy_sequences(task.make_env, spec, count=3, length=50, seed=7, task_id=0)
    assert batch.obs.shape == (3, 50, 4) and batch.obs.dtype == torch.float32
    assert batch.actions.shape == (3, 50) and batch.actions.dtype == torch.int64
    assert batch.rewards.dtype == torch.float32
    assert batch.terminated.dtype == batch.is_first.dtype == torch.bool
    assert (batch.task_ids == 0).all()
    assert batch.is_first[:, 0].all()  # every sequence starts an episode
    assert int(batch.is_first.sum()) > 3  # random CartPole episodes are short: several each
    first = batch.is_first
    assert (batch.actions[first] == 0).all() and (batch.rewards[first] == 0).all()
    assert not batch.terminated[first].any()
    # every terminal row is followed by a new episode's first row (when there is a next row)
    ends = batch.terminated[:, :-1]
    assert (batch.is_first[:, 1:][ends]).all()
    # the rows are the env's: replaying the actions from the same reset gives the same data
    env = task.make_env()
    obs, _ = env.reset(seed=derive_seed(7, _HELDOUT_STREAM, 1))
    np.testing.assert_array_equal(batch.obs[1, 0].numpy(), obs)
    for t in range(1, 50):
        if batch.is_first[1, t]:
            break
        obs, reward, terminated, _, _ = env.step(int(batch.actions[1, t]))
        np.testing.assert_array_equal(batch.obs[1, t].numpy(), obs)
        assert float(batch.rewards[1, t]) == reward and bool(batch.terminated[1, t]) == terminated
    # fixed by its seed
    again = random_policy_sequences(task.make_env, spec, count=3, length=50, seed=7, task_id=0)
    assert torch.equal(again.obs, batch.obs) and torch.equal(again.actions, batch.actions)
    other = random_policy_sequences(task.make_env, spec, count=3, length=50, seed=8, task_id=0)
    assert not torch.equal(other.obs, batch.obs)


def test_heldout_frames_keep_the_image_dtype() -> None:
    config = parse_config(
        {
            "name": "t",
            "scenario": {
                "name": "minatar-sequence",
                "options": {"games": ["breakout", "space_invaders"]},
                "steps_per_task": 10,
            },
            "agent": {"name": "dqn"},
            "evaluation": {"every": 10},
        }
    )
    scenario = build_scenario(config)
    batch = random_policy_sequences(
        scenario.tasks[1].make_env, scenario.env_spec(), count=2, length=12, seed=0
    )
    assert batch.obs.shape == (2, 12, 10, 10, 6) and batch.obs.dtype == torch.uint8
    assert (batch.task_ids == -1).all()


class Scalars(Recorder):
    """Keeps every scalar logged."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.rows.append((tag, value, step))


def _run(config: RunConfig, probe: bool) -> tuple[list[EvalRecord], Scalars, dict[str, Any]]:
    built = build_run(config, seed=3)
    if probe:
        component = WorldModelHeldout(
            WorldModelHeldout.Config(sequences=2, sequence_length=10), built.env_spec
        )
        component.name = "world-model-heldout"
        (model,) = [c for c in built.components if c.role == "world_model"]
        component.wire(AgentServices(world_model=model.service()))
        built.components.append(component)
    recorder = Scalars()
    seed_torch_stream(3)  # as every experiment run does
    result = built.runner(recorder=recorder).run()
    (model,) = [c for c in built.components if c.role == "world_model"]
    return result.records, recorder, model.state_dict()


def test_the_probe_leaves_the_run_unchanged_and_logs_every_task_at_every_evaluation() -> None:
    config = cartpole()
    plain, plain_scalars, plain_model = _run(config, probe=False)
    probed, scalars, probed_model = _run(config, probe=True)
    assert probed == plain  # every evaluation record, per-episode returns included
    for key, value in plain_model["model"]["networks"].items():
        assert torch.equal(value, probed_model["model"]["networks"][key]), key
    assert [r for r in scalars.rows if not r[0].startswith("eval/")] == plain_scalars.rows

    rounds = sorted({r.global_step for r in plain})
    logged = [(tag, step) for tag, _, step in scalars.rows if tag.endswith("/loss_total")]
    expected = [
        (f"eval/world_model/{task}/loss_total", step)
        for step in rounds
        for task in ("base", "swap-actions")
    ]
    assert logged == expected  # one row per task per evaluation, in task order
    terms = {tag.rsplit("/", 1)[1] for tag, _, _ in scalars.rows if tag.startswith("eval/")}
    assert terms == {"loss_decoder", "loss_reward", "loss_continue", "loss_kl", "loss_total"}
    values = {tag: v for tag, v, step in scalars.rows if step == rounds[-1]}
    total = values["eval/world_model/base/loss_total"]
    parts = sum(
        values[f"eval/world_model/base/{k}"]
        for k in ("loss_decoder", "loss_reward", "loss_continue", "loss_kl")
    )
    assert total == pytest.approx(parts) and np.isfinite(total)
    # the model trained: its held-out loss moved from the untrained model's
    first = {tag: v for tag, v, step in scalars.rows if step == rounds[0]}
    assert first["eval/world_model/base/loss_total"] != total


def test_heldout_losses_are_repeatable_and_keep_torchs_stream() -> None:
    config = cartpole()
    built = build_run(config, seed=0)
    (model,) = [c for c in built.components if c.role == "world_model"]
    probe = WorldModelHeldout(
        WorldModelHeldout.Config(sequences=2, sequence_length=10), built.env_spec
    )
    probe.wire(AgentServices(world_model=model.service()))
    probe.on_run_start(built.runner().ctx)
    state = torch.get_rng_state()
    first = probe.heldout_losses()
    assert torch.equal(torch.get_rng_state(), state)
    assert probe.heldout_losses() == first
    assert set(first) == {"base", "swap-actions"}


def test_the_probe_needs_a_world_model() -> None:
    spec = build_scenario(cartpole()).env_spec()
    probe = WorldModelHeldout(WorldModelHeldout.Config(), spec)
    with pytest.raises(ConfigError, match="world model"):
        probe.wire(AgentServices())


def test_a_dreamer_run_does_not_depend_on_what_ran_before_in_the_process(tmp_path: Path) -> None:
    # Dreamer samples latents and actions from torch's global stream; a sweep worker runs
    # many seeds in turn, so each run starts that stream from its own seed.
    config = cartpole(("base",), steps=80)
    run_seed(config, 0, tmp_path / "first")
    torch.rand(5)  # whatever else ran
    run_seed(config, 0, tmp_path / "second")
    first, second = ((tmp_path / d / "evals.jsonl").read_text() for d in ("first", "second"))
    assert first == second


def test_the_probe_passes_the_conformance_kit() -> None:

    def fifo(env_spec: EnvSpec) -> Component:
        return FIFOReplay(FIFOReplay.Config(capacity=64, chunk_steps=8), env_spec)

    def world_model(env_spec: EnvSpec) -> Component:
        options = DreamerWorldModelComponent.Config(
            deter=16,
            latents=2,
            classes=4,
            units=16,
            layers=1,
            batch_size=2,
            sequence_length=4,
            train_every=4,
            learning_starts=8,
        )
        return DreamerWorldModelComponent(options, env_spec)

    options = {"sequences": 2, "sequence_length": 6}
    report = check_component(WorldModelHeldout, options, companions=[fifo, world_model])
    assert "state_dict[task-agnostic]" in report.passed
