"""The sleep phase: a consolidator's batches run as updates of its learner after a task
closes (true or inferred), counted, logged, checkpointed and resumed exactly; and
``policy-distillation`` pulls a drifted policy back to its recorded outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from l2rl.config import EvalConfig, PluginConfig, parse_config
from l2rl.core import AgentServices, Component, RunContext
from l2rl.experiment import resume_experiment, run_experiment
from l2rl.logging.recorder import Recorder
from l2rl.runner import Runner
from l2rl.testing.fakes import FakeAgent, fake_scenario
from l2rl.testing.runs import Interrupted, interrupted_at, tiny_run_config
from l2rl.types import Losses, SleepRecord, Step, TaskInfo, UpdateStats


class Consolidator(Component):
    """Three sleep updates pulling the agent's weights to zero; records what it sees."""

    role = "consolidator"

    def __init__(self, config: PluginConfig, env_spec: Any) -> None:
        super().__init__(config, env_spec)
        self.seen: list[tuple[str, int, bool]] = []

    def sleep_batches(self, ctx: RunContext, task: TaskInfo) -> Any:
        self.seen.append(("sleep", ctx.global_step, task.inferred))
        return [0, 1, 2]

    def sleep_losses(self, ctx: RunContext, batch: Any) -> Losses:
        self.seen.append(("batch", batch, ctx.sleeping))
        weights = torch.cat([p.reshape(-1) for p in ctx.agent.networks().parameters()])
        return {"loss_to_zero": weights.pow(2).sum()}

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        if ctx.sleeping:
            self.seen.append(
                ("after_update", stats.update_index, sorted(stats.losses) == ["loss_to_zero"])
            )


class WakeOnly(Component):
    """A regularizer whose losses must not enter sleep updates."""

    role = "regularizer"

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        assert not ctx.sleeping, "a wake loss was asked for during the sleep"
        return {}


class Detector(Component):
    role = "detector"

    def on_step(self, ctx: RunContext, step: Step) -> None:
        if ctx.global_step == 25:
            ctx.request_task_change("scripted")


class Sleeps(Recorder):
    def __init__(self) -> None:
        self.rows: list[SleepRecord] = []

    def sleep(self, record: SleepRecord) -> None:
        self.rows.append(record)


def run(task_aware: bool, *extra: type[Component]) -> tuple[Consolidator, Sleeps, Runner]:
    scenario = fake_scenario(num_tasks=2, steps_per_task=40, task_aware=task_aware)
    env_spec = scenario.env_spec()
    components = [cls(PluginConfig(), env_spec) for cls in (Consolidator, WakeOnly, *extra)]
    components[0].name = "sleeper"
    agent = FakeAgent(FakeAgent.Config(), env_spec, AgentServices(), seed=0)
    recorder = Sleeps()
    evaluation = EvalConfig(every=20, episodes=1)
    runner = Runner(scenario, agent, components, evaluation, 0, recorder=recorder)
    runner.run()
    consolidator = components[0]
    assert isinstance(consolidator, Consolidator)
    return consolidator, recorder, runner


def test_each_task_end_sleeps_with_the_consolidators_losses_only() -> None:
    consolidator, recorder, runner = run(True)
    sleeps = [s for s in consolidator.seen if s[0] == "sleep"]
    assert sleeps == [("sleep", 40, False), ("sleep", 80, False)]
    first_sleep = consolidator.seen[1:7]
    assert first_sleep == [
        ("batch", 0, True),
        ("after_update", first_sleep[1][1], True),
        ("batch", 1, True),
        ("after_update", first_sleep[1][1] + 1, True),
        ("batch", 2, True),
        ("after_update", first_sleep[1][1] + 2, True),
    ]
    assert [(r.block, r.updates, r.consolidator, r.learner) for r in recorder.rows] == [
        (0, 3, "sleeper", "agent"),
        (1, 3, "sleeper", "agent"),
    ]
    assert not runner.ctx.sleeping


def test_an_inferred_task_change_sleeps_too() -> None:
    consolidator, recorder, _ = run(False, Detector)
    sleeps = [s for s in consolidator.seen if s[0] == "sleep"]
    assert sleeps == [("sleep", 25, True), ("sleep", 80, True)]  # the change, the run's end
    assert [r.task for r in recorder.rows] == ["inferred-0", "inferred-1"]


def test_without_task_ends_nothing_sleeps() -> None:
    consolidator, recorder, _ = run(False)
    assert consolidator.seen == [] and recorder.rows == []


DISTILL = {"name": "policy-distillation", "options": {"sleep_updates": 20, "batch_size": 16}}


def tiny(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    config = {"name": "slept", "components": [DISTILL], **changes}
    return tiny_run_config(tmp_path / "runs", steps_per_task=300, **config)


def test_sleep_updates_are_counted_checkpointed_and_resumed_exactly(tmp_path: Path) -> None:
    whole = run_experiment(parse_config(tiny(tmp_path))).directory / "seed_0"
    sleeps = [json.loads(line) for line in (whole / "sleeps.jsonl").open()]
    assert [(s["block"], s["updates"]) for s in sleeps] == [(0, 20), (1, 20)]
    windows = [json.loads(line) for line in (whole / "windows.jsonl").open()]
    plain = run_experiment(parse_config(tiny(tmp_path, components=[]))).directory / "seed_0"
    plain_windows = [json.loads(line) for line in (plain / "windows.jsonl").open()]
    for slept, awake in zip(windows, plain_windows, strict=True):  # sleep updates counted
        assert slept["updates"]["agent"] == awake["updates"]["agent"] + 20
    # after each window's sleep, one evaluation round of every task, kept apart from the
    # run's own rounds (which equal the plain run's up to the first sleep)
    rounds = [json.loads(line) for line in (whole / "sleep_evals.jsonl").open()]
    assert [(r["block"], r["eval_task"], r["global_step"]) for r in rounds] == [
        (0, 0, 300),
        (0, 1, 300),
        (1, 0, 600),
        (1, 1, 600),
    ]
    first_window = [line for line in (plain / "evals.jsonl").open() if '"block": 0' in line]
    assert [line for line in (whole / "evals.jsonl").open() if '"block": 0' in line] == (
        first_window
    )
    assert not (plain / "sleep_evals.jsonl").exists()

    with interrupted_at(500), pytest.raises(Interrupted):
        run_experiment(parse_config(tiny(tmp_path)))
    (cut,) = [
        d for d in (tmp_path / "runs").glob("slept-*") if d not in (whole.parent, plain.parent)
    ]
    resume_experiment(cut)
    for name in ("evals.jsonl", "sleeps.jsonl", "sleep_evals.jsonl", "windows.jsonl"):
        assert (cut / "seed_0" / name).read_text() == (whole / name).read_text(), name
    # every stretch of work keeps its timing: the cut one up to its stop, the resumed one
    timings = [json.loads(line) for line in (cut / "seed_0" / "timings.jsonl").open()]
    trained = [(t["from_step"], t["to_step"]) for t in timings if t["work"] == "training"]
    assert trained == [(0, 500), (300, 600)]
    assert all(t["seconds"] > 0 and t["started"].endswith("+00:00") for t in timings)


def test_distillation_pulls_a_drifted_policy_back_to_its_recorded_outputs() -> None:
    from l2rl.builder import build_agent, build_component, services_from
    from l2rl.components.regularizers.behavior_cloning import policy_kl
    from l2rl.config import PluginRef

    scenario = fake_scenario(num_tasks=1, steps_per_task=10)
    env_spec = scenario.env_spec()
    replay = build_component(PluginRef(name="fifo", options={"capacity": 200}), env_spec)
    agent = build_agent(
        PluginRef(name="dqn", options={"learning_starts": 10, "lr": 1e-2}),
        env_spec,
        services_from([replay]),
        seed=0,
    )
    options = {"batch_size": 32, "memory_per_task": 64}
    distill: Any = build_component(PluginRef(name="policy-distillation", options=options), env_spec)
    ctx = RunContext(agent, env_spec, scenario.tasks, 0, Recorder())
    distill.on_run_start(ctx)
    generator = torch.Generator().manual_seed(0)
    for t in range(64):
        obs = torch.randn(4, generator=generator).numpy()
        distill.on_step(ctx, Step(obs, 0, 0.0, obs, False, False, 0, t))
    task = TaskInfo(index=0, name="t", block=0, num_tasks=1)
    distill.on_task_end(ctx, task)
    with torch.no_grad():  # the wake phase of a next task moves the network
        for p in agent.networks().parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))

    def kl() -> float:
        rows = distill.memory.sample(64)
        old = {k[len("policy.") :]: v for k, v in rows.items() if k.startswith("policy.")}
        new = agent.policy_distribution(rows["obs"], rows["task_ids"])
        return float(policy_kl(old, new).mean().detach())

    before = kl()
    for batch in distill.sleep_batches(ctx, task):
        losses = distill.sleep_losses(ctx, batch)
        agent.optimizer.zero_grad()
        sum(losses.values()).backward()
        agent.optimizer.step()
    assert kl() < 0.2 * before


class Failing(Component):
    """A consolidator whose batch generator fails after one batch."""

    role = "consolidator"

    def sleep_batches(self, ctx: RunContext, task: TaskInfo) -> Any:
        yield 0
        raise ValueError("no more data")

    def sleep_losses(self, ctx: RunContext, batch: Any) -> Losses:
        weights = torch.cat([p.reshape(-1) for p in ctx.agent.networks().parameters()])
        return {"loss_to_zero": weights.pow(2).sum()}


def test_an_error_in_a_sleep_generator_names_the_component_and_the_method() -> None:
    from l2rl.hooks import ComponentError

    scenario = fake_scenario(num_tasks=1, steps_per_task=20)
    env_spec = scenario.env_spec()
    failing = Failing(PluginConfig(), env_spec)
    failing.name = "failing"
    agent = FakeAgent(FakeAgent.Config(), env_spec, AgentServices(), seed=0)
    runner = Runner(scenario, agent, [failing], EvalConfig(every=20, episodes=1), 0)
    with pytest.raises(ComponentError, match="'failing' failed in sleep_batches: ValueError"):
        runner.run()
