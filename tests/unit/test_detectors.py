"""Task-change detection: the change-point tests on hand-computed and synthetic streams,
the detector components, the runner's inferred tasks, and the detection figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2rl.components.detectors.changepoint import CUSUM, PageHinkley
from l2rl.components.detectors.detector import CUSUMDetector, PageHinkleyDetector
from l2rl.config import EvalConfig, PluginConfig, parse_config
from l2rl.core import AgentServices, Component, RunContext
from l2rl.experiment import resume_experiment, run_experiment
from l2rl.metrics_detection import detection_figures, true_changes
from l2rl.runner import Runner
from l2rl.testing import check_component
from l2rl.testing.fakes import FakeAgent, fake_scenario
from l2rl.testing.runs import Interrupted, interrupted_at, tiny_run_config
from l2rl.types import Step, TaskInfo


# --- the tests, by hand -----------------------------------------------------------------
def test_cusum_sums_by_hand() -> None:
    # k = 0.5, h = 4: S+ = 0, 0, 2.5, 5.0 -> alarm at the 4th; S- never grows
    test = CUSUM(drift=0.5, threshold=4.0, direction="both")
    assert [test.update(z) for z in (0.2, -0.3, 3.0, 3.0)] == ["", "", "", "increase"]
    # S- = 1.5, 3.0, 4.5 -> alarm at the 3rd; an increase-only test ignores it
    assert [test.update(-2.0) for _ in range(3)] == ["", "", "decrease"]
    up = CUSUM(drift=0.5, threshold=4.0, direction="increase")
    assert [up.update(-2.0) for _ in range(5)] == [""] * 5


def test_page_hinkley_sums_by_hand() -> None:
    # delta = 0, lambda = 1.9. z = 0, 0, 4: running means 0, 0, 4/3;
    # m = 0, 0, 4 - 4/3 = 2.667; min 0 -> 2.667 > 1.9 at the 3rd (an increase)
    test = PageHinkley(drift=0.0, threshold=1.9, direction="both")
    assert [test.update(z) for z in (0.0, 0.0, 4.0)] == ["", "", "increase"]
    # after the reset: z = 0, -4: means 0, -2; m' = 0, -4 - (-2) = -2; max 0 -> 2 > 1.9
    assert [test.update(z) for z in (0.0, -4.0)] == ["", "decrease"]
    # the drift absorbs a small steady offset: z = 0.1 forever never alarms with delta 0.2
    calm = PageHinkley(drift=0.2, threshold=1.0, direction="both")
    assert not any(calm.update(0.1) for _ in range(1000))


@pytest.mark.parametrize("make", [lambda: CUSUM(0.5, 8.0), lambda: PageHinkley(0.5, 8.0)])
def test_a_shift_of_two_sigmas_is_found_fast_and_noise_rarely_alarms(make: Any) -> None:
    rng = np.random.default_rng(0)
    delays, false_alarms, stationary = [], 0, 0
    for _ in range(50):
        test = make()
        before, after = rng.normal(0, 1, 300), rng.normal(2.0, 1, 300)
        alarms = [t for t, z in enumerate(np.concatenate([before, after])) if test.update(z)]
        false_alarms += sum(t < 300 for t in alarms)
        stationary += 300
        later = [t - 300 for t in alarms if t >= 300]
        assert later, "the shift was missed"
        delays.append(later[0])
    # CUSUM with k = 0.5, h = 8 has a mean delay of about (h + 1.166) / (shift - k) = 6.1
    # samples for a 2-sigma shift and an in-control run length of thousands of samples
    assert float(np.mean(delays)) < 12
    assert false_alarms / stationary < 0.005


# --- the detector on a stream, its runner played by hand --------------------------------
class StreamContext:
    """What a detector uses of a RunContext; a requested change opens the next task at once
    (a new id, or the one named), as the runner does after the step."""

    def __init__(self) -> None:
        self.task = TaskInfo(0, "inferred-0", 0, 1, inferred=True)
        self.sleeping = False
        self.changes: list[tuple[int, int | None]] = []  # (value index, named id)
        self.seen = 0

    def feed(self, detector: CUSUMDetector, values: np.ndarray) -> None:
        ctx: Any = self
        for value in values:
            self.pending: tuple[str, int | None] | None = None
            detector.observe(ctx, float(value))
            self.seen += 1
            if self.pending is not None:
                named = self.pending[1]
                index = self.task.num_tasks if named is None else named
                self.changes.append((self.seen, named))
                total = max(self.task.num_tasks, index + 1)
                self.task = TaskInfo(index, f"inferred-{index}", len(self.changes), total, True)
                detector.on_task_start(ctx, self.task)

    def request_task_change(self, reason: str, task_id: int | None = None) -> None:
        self.pending = (reason, task_id)


def stream_detector(**options: Any) -> CUSUMDetector:
    config = CUSUMDetector.Config(warmup=50, threshold=8.0, **options)
    return CUSUMDetector(config, fake_scenario(num_tasks=1).env_spec())


def test_recognise_names_the_earlier_task_a_stream_returns_to() -> None:
    named, delays, plain_ids = [], [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        values = np.concatenate([rng.normal(m, 1.0, 200) for m in (0.0, 6.0, 0.0)])
        ctx = StreamContext()
        ctx.feed(stream_detector(recognise=True, match_tolerance=1.0), values)
        named.append([task for _, task in ctx.changes])
        # asked for once the new regime's 50 values are in
        delays += [at - change for (at, _), change in zip(ctx.changes, (200, 400), strict=False)]
        plain = StreamContext()
        plain.feed(stream_detector(), values)
        plain_ids.append([task for _, task in plain.changes])
    # B is a new task, the return to A names id 0 (in 9 of 10 streams: in one a false
    # alarm late in B warms up on a mix of both regimes, which matches neither)
    assert named.count([None, 0]) >= 9
    assert sorted(delays)[1] >= 50 and sorted(delays)[-2] < 60
    # without recognise every change (the return included) opens a new id
    assert all(len(ids) >= 2 and set(ids) == {None} for ids in plain_ids)


def test_recognise_takes_an_alarm_whose_new_regime_is_the_tasks_own_for_false() -> None:
    rng = np.random.default_rng(2)
    # a test so touchy that noise alone alarms; each re-warmed regime is task 0's again
    touchy = CUSUMDetector(
        CUSUMDetector.Config(warmup=50, threshold=1.0, drift=0.0, recognise=True),
        fake_scenario(num_tasks=1).env_spec(),
    )
    ctx = StreamContext()
    ctx.feed(touchy, rng.normal(0.0, 1.0, 2000))
    assert ctx.changes == [] and list(touchy.regimes) == [0]


def test_rewarm_opposite_follows_learning_and_alarms_only_on_the_drop() -> None:
    at_drop, early_alarms, both_alarms = 0, 0, []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        # returns climb from 10 to 200 while the agent learns, stay, then fall to 60
        climb = np.linspace(10, 200, 300) + rng.normal(0, 5, 300)
        values = np.concatenate([climb, rng.normal(200, 5, 300), rng.normal(60, 5, 200)])
        ctx = StreamContext()
        ctx.feed(stream_detector(direction="decrease", rewarm_opposite=True), values)
        at_drop += [at for at, _ in ctx.changes] == [601]
        # a plain decrease-only test stays on the regime of its first warm-up (returns
        # about 26) and misses a fall to a level above it
        early = StreamContext()
        early.feed(stream_detector(direction="decrease"), values)
        early_alarms += len(early.changes)
        # a two-sided one calls every rise of learning a task change
        both = StreamContext()
        both.feed(stream_detector(direction="both"), values)
        both_alarms.append(len(both.changes))
    assert at_drop >= 9  # one false alarm in ten 300-value stationary stretches at most
    assert early_alarms == 0 and min(both_alarms) > 3
    with pytest.raises(ValueError, match="rewarm_opposite needs"):
        stream_detector(rewarm_opposite=True)


def test_episode_statistics_are_each_episodes_return_or_length_per_env() -> None:
    seen: dict[str, list[float]] = {}
    for statistic in ("episode_return", "episode_length"):
        detector = stream_detector(statistic=statistic)
        values: list[float] = []
        detector.observe = lambda ctx, value, values=values: values.append(value)  # type: ignore[method-assign]
        obs = np.zeros(4, dtype=np.float32)
        # env 0: episodes of 3 steps (rewards 1, 2, 3) and 1 step (reward 5); env 1, in
        # between: one of 2 steps (rewards 0.5, 0.5), truncated
        script = [(0, 1.0, False), (1, 0.5, False), (0, 2.0, False), (1, 0.5, True)]
        script += [(0, 3.0, True), (0, 5.0, True)]
        for t, (env, reward, done) in enumerate(script):
            step = Step(obs, 0, reward, obs, done and env == 0, done and env == 1, None, t, env)
            detector.on_step(None, step)  # type: ignore[arg-type]
        seen[statistic] = values
    assert seen == {"episode_return": [1.0, 6.0, 5.0], "episode_length": [2.0, 3.0, 1.0]}


# --- the detectors in runs --------------------------------------------------------------
class ScriptedDetector(Component):
    """A detector that asks for a change at fixed steps (recognising task 0 at the 2nd)."""

    role = "detector"

    def on_step(self, ctx: RunContext, step: Step) -> None:
        if ctx.global_step == 30:
            ctx.request_task_change("scripted")
        if ctx.global_step == 50:
            ctx.request_task_change("scripted again", task_id=0)


class Watcher(Component):
    """Records the task hooks a task-agnostic run fires."""

    role = "custom"

    def __init__(self, config: PluginConfig, env_spec: Any) -> None:
        super().__init__(config, env_spec)
        self.calls: list[tuple[str, int, TaskInfo]] = []

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        self.calls.append(("start", ctx.global_step, task))

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        self.calls.append(("end", ctx.global_step, task))

    def on_consolidate(self, ctx: RunContext, task: TaskInfo) -> None:
        self.calls.append(("consolidate", ctx.global_step, task))


def run_with(detector: type[Component], task_aware: bool = False) -> Watcher:
    scenario = fake_scenario(num_tasks=2, steps_per_task=40, task_aware=task_aware)
    env_spec = scenario.env_spec()
    components = [detector(PluginConfig(), env_spec), Watcher(PluginConfig(), env_spec)]
    agent = FakeAgent(FakeAgent.Config(), env_spec, AgentServices(), seed=0)
    Runner(scenario, agent, components, EvalConfig(every=20, episodes=1), 0).run()
    watcher = components[1]
    assert isinstance(watcher, Watcher)
    return watcher


def test_a_requested_change_closes_the_inferred_task_and_opens_the_next() -> None:
    calls = run_with(ScriptedDetector).calls
    summary = [(kind, step, task.index, task.block) for kind, step, task in calls]
    assert summary == [
        ("start", 0, 0, 0),
        ("end", 30, 0, 0),
        ("consolidate", 30, 0, 0),
        ("start", 30, 1, 1),
        ("end", 50, 1, 1),
        ("consolidate", 50, 1, 1),
        ("start", 50, 0, 2),  # recognised: id 0 again
        ("end", 80, 0, 2),  # the run's end closes it
        ("consolidate", 80, 0, 2),
    ]
    infos = [task for _, _, task in calls]
    assert all(t.inferred and t.name == f"inferred-{t.index}" and t.steps == 0 for t in infos)
    assert [task.num_tasks for kind, _, task in calls if kind == "start"] == [1, 2, 2]


def test_a_task_aware_run_refuses_requests() -> None:
    with pytest.raises(RuntimeError, match="task-agnostic runs only"):
        run_with(ScriptedDetector, task_aware=True)


def test_the_builtin_detectors_pass_the_conformance_kit() -> None:
    for cls in (PageHinkleyDetector, CUSUMDetector):
        for options in ({"warmup": 3, "threshold": 2.0}, {"statistic": "loss", "warmup": 3}):
            report = check_component(cls, options, settings=("task-agnostic",))
            assert "state_dict[task-agnostic]" in report.passed


def tiny(tmp_path: Path, detector: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Two CartPole variants of 400 steps, task-agnostic, EWC consolidating at detections."""
    config = tiny_run_config(
        tmp_path / "runs",
        steps_per_task=400,
        name="detected",
        components=[detector, {"name": "ewc", "options": {"fisher_samples": 32}}],
        evaluation={"every": 200, "episodes": 1},
        **changes,
    )
    config["scenario"]["task_aware"] = False
    return config


LOSS_DETECTOR = {
    "name": "cusum",
    "options": {"statistic": "loss", "loss_key": "loss_td", "warmup": 10, "threshold": 5.0},
}


def test_ewc_consolidates_at_detected_changes_and_metrics_report_them(tmp_path: Path) -> None:
    result = run_experiment(parse_config(tiny(tmp_path, LOSS_DETECTOR)))
    seed = result.directory / "seed_0"
    changes = [json.loads(line) for line in (seed / "task_changes.jsonl").open()]
    assert changes and all(c["reason"].startswith("cusum: ") for c in changes)
    metrics = json.loads((seed / "metrics.json").read_text())
    detection = metrics["detection"]
    assert detection["true_changes"] == 1 and detection["detections"] == len(changes)
    assert detection["false_alarms"] + len(detection["delays"]) == len(changes)
    # EWC consolidated at each detected change and at the run's end: one anchor each
    checkpoint = __import__("torch").load(seed / "checkpoint.pt", weights_only=True)
    terms = checkpoint["components"]["ewc"]["penalty"]["terms"]
    assert len(terms) == len(changes) + 1  # per inferred task (ids 0, 1, ...)


def test_inferred_tasks_and_their_changes_resume_exactly(tmp_path: Path) -> None:
    data = tiny(tmp_path, LOSS_DETECTOR, checkpoint_every=100)
    whole = run_experiment(parse_config(data)).directory / "seed_0"
    with interrupted_at(600), pytest.raises(Interrupted):
        run_experiment(parse_config(data))
    (cut,) = [d for d in (tmp_path / "runs").glob("detected-*") if d != whole.parent]
    resume_experiment(cut)
    for name in ("evals.jsonl", "task_changes.jsonl", "metrics.json"):
        assert (cut / "seed_0" / name).read_text() == (whole / name).read_text(), name


# --- detection figures ------------------------------------------------------------------
def test_true_changes_skip_windows_that_repeat_their_task() -> None:
    assert true_changes([(0, 10), (0, 10), (1, 10), (0, 5)]) == [(20, 1), (30, 0)]


def test_detection_figures_by_hand() -> None:
    schedule = [(0, 100), (1, 100), (2, 100), (0, 100)]
    # change into 1 at 100 found at 120 (new id 1); a false alarm at 150 (id 2); the change
    # into 2 at 200 missed; into 0 at 300 found at 330 as id 2 (wrong: task 0 is id 0);
    # a false alarm before the first change at 50
    detections = [(50, 5), (120, 1), (150, 2), (330, 2)]
    figures = detection_figures(schedule, detections)
    assert figures == {
        "true_changes": 3,
        "detections": 4,
        "delays": [20, 30],
        "mean_delay": 25.0,
        "false_alarms": 2,
        "false_alarms_per_1e5_steps": 500.0,  # 2 in 400 steps
        "missed": 1,
        "task_id_accuracy": 0.5,
    }
    none = detection_figures(schedule, [])
    assert none["missed"] == 3 and none["false_alarms"] == 0
    assert math.isnan(none["mean_delay"]) and math.isnan(none["task_id_accuracy"])
