"""The detector and consolidator of docs/writing-a-component.md work as printed: they pass
the conformance kit, and in a task-agnostic run the detector's requests open inferred
tasks after which the consolidator sleeps."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from l2rl.config import EvalConfig, PluginConfig
from l2rl.core import AgentServices
from l2rl.logging.recorder import Recorder
from l2rl.runner import Runner
from l2rl.testing import FakeAgent, check_component, fake_scenario
from l2rl.types import SleepRecord, TaskChange

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-component.md"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    text = DOC.read_text()
    section = text[text.index("## Detectors and sleep phases") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("## State")], re.DOTALL)
    path = tmp_path_factory.mktemp("doc") / "sleep_example.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("sleep_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sleep_example"] = module
    spec.loader.exec_module(module)
    return module


def test_both_pass_the_conformance_kit(example: ModuleType) -> None:
    check_component(example.ReturnDrop, settings=("task-agnostic",))
    check_component(example.PullBack)


class Kept(Recorder):
    def __init__(self) -> None:
        self.changes: list[TaskChange] = []
        self.sleeps: list[SleepRecord] = []

    def task_change(self, change: TaskChange) -> None:
        self.changes.append(change)

    def sleep(self, record: SleepRecord) -> None:
        self.sleeps.append(record)


def test_a_change_of_rewards_is_detected_and_each_inferred_task_is_slept_on(
    example: ModuleType,
) -> None:
    # the fake tasks reward different actions: after the switch the learnt policy earns less
    scenario = fake_scenario(num_tasks=2, steps_per_task=600, task_aware=False)
    spec = scenario.env_spec()
    components = [example.ReturnDrop(PluginConfig(), spec), example.PullBack(PluginConfig(), spec)]
    for component, name in zip(components, ("return-drop", "pull-back"), strict=True):
        component.name = name
    agent = FakeAgent(FakeAgent.Config(), spec, AgentServices(), seed=0)
    kept = Kept()
    Runner(scenario, agent, components, EvalConfig(every=300, episodes=1), 0, recorder=kept).run()
    assert kept.changes and all(c.reason.startswith("return ") for c in kept.changes)
    assert [s.updates for s in kept.sleeps] == [20] * (len(kept.changes) + 1)
    assert [s.task for s in kept.sleeps][:2] == ["inferred-0", "inferred-1"]
