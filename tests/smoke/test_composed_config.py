"""experiments/dreamer_composed.yaml: world model + WMAR + EWC + Plan2Explore in one run.

Runs the committed config end to end with small budgets and sizes and checks that every
piece does its job through the ordinary runner: three learners update, Plan2Explore's
reward reaches the agent, and EWC's penalty enters the agent's losses once the first task
has ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2rl.builder import build_run
from l2rl.config import PluginConfig, load_yaml, parse_config
from l2rl.core import Component, RunContext
from l2rl.types import UpdateStats

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "dreamer_composed.yaml"
TINY_MODEL = {"deter": 16, "units": 16, "latents": 2, "classes": 4}
TINY_SCHEDULE = {"batch_size": 2, "sequence_length": 8, "learning_starts": 50}


class LossKeys(Component):
    """Records the loss keys of every agent update, by window."""

    role = "~spy"

    def __init__(self) -> None:
        super().__init__(PluginConfig(), None)  # type: ignore[arg-type]
        self.name = "spy"
        self.keys: dict[int, set[str]] = {}

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        task = -1 if ctx.task is None else ctx.task.index
        self.keys.setdefault(task, set()).update(stats.losses)


def small(data: dict[str, Any]) -> dict[str, Any]:
    data["scenario"]["steps_per_task"] = 150
    data["scenario"]["options"]["max_episode_steps"] = 30
    data["evaluation"] = {"every": 150, "episodes": 1, "max_episode_steps": 30}
    data["agent"]["options"].update(units=16, **TINY_SCHEDULE)
    for component in data["components"]:
        component.setdefault("options", {})
        if component["name"] == "dreamer-world-model":
            component["options"].update(TINY_MODEL, **TINY_SCHEDULE)
        elif component["name"] == "plan2explore":
            component["options"].update(units=16, layers=1, ensemble_size=3, **TINY_SCHEDULE)
    return data


def test_the_composed_config_trains_every_learner_and_every_component_acts() -> None:
    data = small(load_yaml(CONFIG.read_text()))
    names = [c["name"] for c in data["components"]]
    assert data["replay"]["name"] == "wmar" and data["agent"]["name"] == "dreamer"
    assert names == ["dreamer-world-model", "plan2explore", "ewc"]
    built = build_run(parse_config(data), seed=0)
    assert built.agent.services.exploration is not None  # type: ignore[attr-defined]
    spy = LossKeys()
    built.components.append(spy)
    runner = built.runner(progress=None)
    runner.run()
    updates = runner.ctx.learner_updates
    assert updates["agent"] > 0 and updates["world_model"] > 0 and updates["plan2explore"] > 0
    assert "loss_ewc" not in spy.keys[0]  # nothing to protect during the first task
    assert {"loss_actor", "loss_critic", "loss_ewc"} <= spy.keys[1]
