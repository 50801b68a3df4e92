"""Learners beside the agent, the NaN/inf guard, Step.first and hidden task indexes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from l2rl.config import EvalConfig, PluginConfig
from l2rl.core import Component, Learner, RunContext
from l2rl.logging.recorder import Recorder
from l2rl.runner import NonFiniteError, Runner
from l2rl.testing import FakeAgent, FakeLearnerComponent, fake_scenario
from l2rl.types import EvalRecord, Losses, Step, UpdateStats


class ScalarLog(Recorder):
    """Keeps scalar tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.tags.append(tag)


class UpdateWatcher(Component):
    """Counts the update hooks and loss calls it gets, for the learner it is aimed at."""

    def __init__(self, learner: str) -> None:
        super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
        self.name = f"watch-{learner}"
        self.learner = learner
        self.seen: list[tuple[str, str | None]] = []
        self.stats: list[UpdateStats] = []

    def before_update(self, ctx: RunContext) -> None:
        self.seen.append(("before_update", ctx.learner))

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        self.seen.append(("losses", ctx.learner))
        return {}

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        self.stats.append(stats)


def make_runner(
    components: list[Component], steps: int = 40, lr: float = 0.05, **kwargs: Any
) -> Runner:
    scenario = fake_scenario(num_tasks=2, steps_per_task=steps)
    agent = FakeAgent(FakeAgent.Config(lr=lr), scenario.env_spec(), _services(), seed=0)
    return Runner(scenario, agent, components, EvalConfig(every=20, episodes=1), 0, **kwargs)


def _services() -> Any:
    from l2rl.core import AgentServices

    return AgentServices()


def learner_component() -> FakeLearnerComponent:
    component = FakeLearnerComponent(FakeLearnerComponent.Config(), fake_scenario(1, 4).env_spec())
    component.name = "reward"
    return component


def test_a_components_learner_is_trained_with_its_own_optimizer() -> None:
    component = learner_component()
    before = component.model.model.weight.detach().clone()
    log = ScalarLog()
    runner = make_runner([component], recorder=log, log_every_updates=1)
    agent_before = runner.agent.networks().weight.detach().clone()
    result = runner.run()
    assert not torch.equal(component.model.model.weight, before)
    assert not torch.equal(runner.agent.networks().weight, agent_before)
    # 80 steps, every 4 once 8 were seen: steps 8, 12, ..., 80 -> 19 updates each.
    assert runner.ctx.learner_updates == {"agent": 19, "reward-model": 19}
    assert result.updates == 19  # the agent's
    assert "train/reward-model/loss_reward" in log.tags and "train/loss_q" in log.tags
    # The agent's Adam-free SGD never saw the reward model's parameters and vice versa.
    agent_params = {id(p) for g in runner.agent.optimizer.param_groups for p in g["params"]}
    assert not agent_params & {id(p) for p in component.model.model.parameters()}


def test_reward_model_learns_the_reward() -> None:
    component = learner_component()
    make_runner([component], steps=400).run()
    batch_losses = [
        float(component.model.losses(b)["loss_reward"].detach()) for b in component.model.batches(0)
    ]
    # FakeEnv rewards are 0 or 1; predicting their mean would give about 0.25.
    assert batch_losses and batch_losses[0] < 0.2


def test_update_hooks_and_losses_go_only_to_the_components_aimed_at_the_learner() -> None:
    on_agent, on_model = UpdateWatcher("agent"), UpdateWatcher("reward-model")
    runner = make_runner([learner_component(), on_agent, on_model])
    runner.run()
    assert {learner for _, learner in on_agent.seen} == {"agent"}
    assert {learner for _, learner in on_model.seen} == {"reward-model"}
    assert len(on_model.seen) == 2 * 19  # before_update and losses, every update
    assert [s.update_index for s in on_model.stats] == list(range(1, 20))
    assert {s.learner for s in on_model.stats} == {"reward-model"}


def test_learner_names_must_be_unique_and_targets_must_exist() -> None:
    first, second = learner_component(), learner_component()
    second.name = "reward-2"
    with pytest.raises(ValueError, match="'reward-model' of component 'reward-2' is already"):
        make_runner([first, second])
    with pytest.raises(ValueError, match="aimed at learner 'nobody'"):
        make_runner([UpdateWatcher("nobody")])


class GainLearner(Learner):
    """One scalar ``gain`` with no batches of its own: it steps with the learner it
    ``trains_with``, through a loss term its component adds to that learner's losses."""

    learner_name = "gain"

    def __init__(self, trains_with: str | None, max_grad_norm: float | None) -> None:
        self.net = nn.Module()
        self.net.gain = nn.Parameter(torch.zeros(()))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=1.0)
        self.trains_with = trains_with
        self.max_grad_norm = max_grad_norm
        self.steps_seen = 0

    def batches(self, global_step: int) -> Iterator[Any]:
        return iter(())

    def losses(self, batch: Any) -> Losses:
        raise AssertionError("a learner with no batches is never asked for losses")

    def after_optimizer_step(self) -> None:
        self.steps_seen += 1

    def networks(self) -> nn.Module:
        return self.net


class GainComponent(Component):
    """Adds ``(gain - 3)^2`` to the agent's losses; owns the :class:`GainLearner`."""

    def __init__(self, trains_with: str | None = "agent", max_grad_norm: float | None = None):
        super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
        self.name = "gain"
        self.model = GainLearner(trains_with, max_grad_norm)

    def learners(self) -> tuple[GainLearner]:
        return (self.model,)

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        return {"loss_gain": (self.model.net.gain - 3.0).pow(2)}


def test_a_learner_that_trains_with_the_agent_steps_on_every_agent_update() -> None:
    component = GainComponent()
    runner = make_runner([component])
    runner.run()
    assert runner.ctx.learner_updates == {"agent": 19, "gain": 19}
    assert component.model.steps_seen == 19
    # SGD lr 1 on (g - 3)^2 overshoots to g = 6 and back: g alternates 6, 0, 6, ...
    assert float(component.model.net.gain.detach()) == pytest.approx(6.0)


def test_a_learner_that_trains_with_another_is_clipped_on_its_own() -> None:
    component = GainComponent(max_grad_norm=1e-3)
    runner = make_runner([component])
    runner.run()
    # 19 steps of at most 1e-3 each towards 3; the agent's own clipping (none) is apart.
    assert float(component.model.net.gain.detach()) == pytest.approx(19e-3)


def test_trains_with_must_name_another_learner_that_trains_on_its_own() -> None:
    with pytest.raises(ValueError, match="trains with 'nobody', which is not another"):
        make_runner([GainComponent(trains_with="nobody")])
    with pytest.raises(ValueError, match="trains with 'gain', which is not another"):
        make_runner([GainComponent(trains_with="gain")])
    chained = GainComponent()
    chained.model.learner_name = "chained"
    chained.model.trains_with = "gain"
    with pytest.raises(ValueError, match="which itself trains with 'agent'"):
        make_runner([GainComponent(), chained])


def test_learner_state_is_checkpointed_and_resumed_exactly(tmp_path: Path) -> None:
    uninterrupted = learner_component()
    make_runner([uninterrupted]).run()
    halfway = make_runner([learner_component()], checkpoint_path=tmp_path / "half.pt")
    state = _checkpoint_after_first_window(halfway, tmp_path / "half.pt")
    assert state["learner_updates"] == {"agent": 9, "reward-model": 9}
    resumed_component = learner_component()
    resumed = make_runner([resumed_component])
    resumed.run(resume=state)
    assert torch.equal(resumed_component.model.model.weight, uninterrupted.model.model.weight)
    # (FakeAgent keeps no transitions across a resume, so only the reward model's count
    # is compared: its component checkpoints its transitions.)
    assert resumed.ctx.learner_updates["reward-model"] == 19


def _checkpoint_after_first_window(runner: Runner, path: Path) -> dict[str, Any]:
    """Run only the first window (as a crash in the second would leave it)."""

    class StopAfterFirstWindow(Exception):
        pass

    original = runner.end_window

    def end_then_stop(info: Any) -> None:
        original(info)
        raise StopAfterFirstWindow

    runner.end_window = end_then_stop  # type: ignore[method-assign]
    with pytest.raises(StopAfterFirstWindow):
        runner.run()
    state: dict[str, Any] = torch.load(path, weights_only=False)
    assert state["block"] == 0
    return state


# --- the NaN/inf guard -------------------------------------------------------------------
class Exploding(Component):
    """Adds a loss that turns infinite from step ``at`` on."""

    def __init__(self, at: int) -> None:
        super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
        self.name, self.at = "exploding", at

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        weight = ctx.agent.networks().weight
        scale = math.inf if ctx.global_step >= self.at else 0.0
        return {"loss_boom": scale * weight.sum() ** 2}


def test_a_non_finite_loss_stops_the_run_naming_learner_key_and_step(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    runner = make_runner([Exploding(at=50)], checkpoint_path=path)
    with pytest.raises(
        NonFiniteError, match=r"learner 'agent': loss 'loss_boom' is (inf|nan)"
    ) as err:
        runner.run()
    # The first update at or after step 50 (every 4 steps from step 8) is at step 52.
    assert (err.value.learner, err.value.key, err.value.global_step) == (
        "agent",
        "loss 'loss_boom'",
        52,
    )
    # What happened before stays: the first window's checkpoint and its records.
    assert torch.load(path, weights_only=False)["block"] == 0
    assert max(r.global_step for r in runner.records) == 40


def test_a_non_finite_gradient_names_the_parameter() -> None:
    class NanGradient(Component):
        def __init__(self) -> None:
            super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
            self.name = "nan-grad"

        def after_backward(self, ctx: RunContext) -> None:
            bias = ctx.agent.networks().bias
            assert bias.grad is not None
            bias.grad[0] = math.nan

    runner = make_runner([NanGradient()])
    with pytest.raises(NonFiniteError, match="gradient of bias is nan at step 8"):
        runner.run()


def test_parameters_overflowed_by_the_optimizer_step_stop_the_run() -> None:
    class HugeGradient(Component):
        """A finite gradient that, times the huge lr, overflows the bias to inf."""

        def __init__(self) -> None:
            super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
            self.name = "huge-grad"

        def after_backward(self, ctx: RunContext) -> None:
            bias = ctx.agent.networks().bias
            assert bias.grad is not None
            bias.grad.fill_(1e30)

    runner = make_runner([HugeGradient()], lr=1e30)
    with pytest.raises(
        NonFiniteError,
        match=r"learner 'agent': parameter bias \(after the optimizer step\) is -inf at step 8",
    ) as err:
        runner.run()
    assert (err.value.learner, err.value.global_step) == ("agent", 8)
    assert err.value.key == "parameter bias (after the optimizer step)"


def test_non_finite_error_survives_pickling() -> None:
    import pickle

    error = NonFiniteError("world-model", "loss 'loss_kl'", 120, math.nan)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.learner, copy.key, copy.global_step, str(copy)) == (
        "world-model",
        "loss 'loss_kl'",
        120,
        str(error),
    )


# --- episode starts and hidden tasks -----------------------------------------------------
class StepLog(Component):
    def __init__(self) -> None:
        super().__init__(PluginConfig(), fake_scenario(1, 4).env_spec())
        self.name = "steps"
        self.steps: list[Step] = []
        self.records: list[EvalRecord] = []

    def on_step(self, ctx: RunContext, step: Step) -> None:
        self.steps.append(step)

    def on_eval(self, ctx: RunContext, records: tuple[EvalRecord, ...]) -> None:
        self.records.extend(records)


def test_step_first_marks_every_episode_start() -> None:
    log = StepLog()
    make_runner([log]).run()
    for previous, step in zip(log.steps, log.steps[1:], strict=False):
        ended = previous.terminated or previous.truncated
        new_window = step.global_step == 41
        assert step.first == (ended or new_window), step.global_step
    assert log.steps[0].first


def test_task_agnostic_components_see_records_without_task() -> None:
    log = StepLog()
    scenario = fake_scenario(num_tasks=2, steps_per_task=40, task_aware=False)
    agent = FakeAgent(FakeAgent.Config(), scenario.env_spec(), _services(), seed=0)
    runner = Runner(scenario, agent, [log], EvalConfig(every=20, episodes=1), 0)
    result = runner.run()
    assert {(r.eval_task, r.trained_task, r.eval_task_name) for r in log.records} == {(-1, -1, "")}
    assert {r.eval_task for r in result.records} == {0, 1}  # the run's own records keep it
