"""The conformance checker itself: good components pass, each kind of broken one fails.

Every check of :func:`l2rl.testing.check_component` is shown failing here on a component
broken in exactly that way, so a pass from the kit means something.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import Field

from l2rl import registry
from l2rl.builder import build_agent
from l2rl.config import PluginConfig, PluginRef
from l2rl.core import Agent, AgentServices, Component, RunContext
from l2rl.testing import (
    ConformanceError,
    FakeAgent,
    NoOpComponent,
    RecordingComponent,
    check_component,
)
from l2rl.testing.conformance import state_differences
from l2rl.types import EnvSpec, Losses, Step, TaskInfo, TransitionBatch


class StepCounter(Component):
    """A good, stateful component: counts steps per task in a tensor."""

    role = "custom"

    class Config(PluginConfig):
        """Options."""

        slots: int = Field(default=4, gt=0)

    config: Config

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.counts = torch.zeros(config.slots, dtype=torch.int64)
        self.label = "none"

    def on_step(self, ctx: RunContext, step: Step) -> None:
        self.counts[(step.task_id if step.task_id is not None else -1) % self.config.slots] += 1

    def on_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        self.label = task.name

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.clone(), "label": self.label}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = state["counts"].clone()
        self.label = state["label"]


def failures(err: pytest.ExceptionInfo[ConformanceError]) -> dict[str, str]:
    return dict(err.value.failures)


# --- good components ---------------------------------------------------------------------
def test_good_components_pass_every_check() -> None:
    report = check_component(StepCounter, {"slots": 3})
    assert report.component == "StepCounter"
    assert report.passed == (
        "subclass",
        "role",
        "config",
        "options",
        "construct",
        "hooks",
        "run[task-aware]",
        "gradients applied[task-aware]",
        "weights after evaluation[task-aware]",
        "state_dict[task-aware]",
        "run[task-agnostic]",
        "gradients applied[task-agnostic]",
        "weights after evaluation[task-agnostic]",
        "state_dict[task-agnostic]",
    )
    assert report.hooks == ("on_task_start", "on_step")


@pytest.mark.parametrize("cls", [NoOpComponent, RecordingComponent])
def test_the_kits_own_components_pass(cls: type[Component]) -> None:
    assert "run[task-agnostic]" in check_component(cls).passed


def test_builtin_fifo_passes_with_the_fake_agent_and_with_dqn() -> None:
    fifo = registry.load("l2rl.components", "fifo")
    report = check_component(fifo, {"capacity": 40})
    assert "replay sample[task-aware]" in report.passed
    assert "replay protocol[task-agnostic]" in report.passed

    built: list[Agent] = []

    def dqn(env_spec: EnvSpec, services: AgentServices, seed: int) -> Agent:
        options = {"learning_starts": 8, "batch_size": 8, "train_every": 4}
        agent = build_agent(PluginRef(name="dqn", options=options), env_spec, services, seed)
        built.append(agent)
        return agent

    check_component(fifo, {"capacity": 40}, agent_factory=dqn, name="fifo")
    assert len(built) == 2  # one agent per setting
    assert all(type(a).__name__ == "DQNAgent" for a in built)


# --- declarations ------------------------------------------------------------------------
def test_a_class_that_is_not_a_component_stops_at_the_first_check() -> None:
    class NotAComponent:
        role = "custom"

    with pytest.raises(ConformanceError) as err:
        check_component(NotAComponent)  # type: ignore[arg-type]
    assert err.value.passed == []
    assert list(failures(err)) == ["subclass"]


def test_an_empty_role_and_a_misspelt_hook_are_both_reported() -> None:
    class Sloppy(Component):
        role = ""

        def on_tsk_end(self, ctx: RunContext, task: TaskInfo) -> None:
            pass

    with pytest.raises(ConformanceError) as err:
        check_component(Sloppy)
    found = failures(err)
    assert set(found) == {"role", "hooks"}
    assert "on_tsk_end looks like a hook but is not one" in found["hooks"]
    assert "failed 2 conformance check(s)" in str(err.value)
    # Hooks are broken, so the component is never run.
    assert not any(check.startswith("run[") for check in err.value.passed)


def test_config_must_be_a_plugin_config() -> None:
    class LooseConfig(Component):
        Config = dict  # type: ignore[assignment]

    with pytest.raises(ConformanceError) as err:
        check_component(LooseConfig)
    assert list(failures(err)) == ["config"]


def test_options_are_validated_against_the_config() -> None:
    with pytest.raises(ConformanceError) as err:
        check_component(StepCounter, {"slot": 3})
    assert "slot" in failures(err)["options"]
    assert err.value.passed == ["subclass", "role", "config"]


def test_a_constructor_that_raises_is_reported() -> None:
    class Picky(Component):
        def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
            raise ValueError("needs a continuous action space")

    with pytest.raises(ConformanceError) as err:
        check_component(Picky)
    assert "ValueError: needs a continuous action space" in failures(err)["construct"]


def test_a_component_that_cannot_run_task_agnostic_fails_that_run_only() -> None:
    class NeedsTaskIds(Component):
        def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
            if not env_spec.task_aware:
                raise ValueError("needs task ids")
            super().__init__(config, env_spec)

    with pytest.raises(ConformanceError) as err:
        check_component(NeedsTaskIds)
    assert failures(err) == {
        "run[task-agnostic]": "NeedsTaskIds(config, env_spec) raised ValueError: needs task ids"
    }


# --- hook signatures ---------------------------------------------------------------------
def test_a_hook_with_the_wrong_signature_fails() -> None:
    class ForgotPayload(Component):
        def on_step(self, ctx: RunContext) -> None:  # type: ignore[override]
            pass

    with pytest.raises(ConformanceError) as err:
        check_component(ForgotPayload)
    assert "ForgotPayload.on_step takes 2 parameters, the hook passes 3" in failures(err)["hooks"]


def test_losses_with_the_wrong_signature_fails() -> None:
    class NoContext(Component):
        def losses(self, batch: Any) -> Losses:  # type: ignore[override]
            return {}

    with pytest.raises(ConformanceError) as err:
        check_component(NoContext)
    assert "NoContext.losses takes 2 parameters, expected 3" in failures(err)["hooks"]


# --- state ---------------------------------------------------------------------------------
def test_state_that_does_not_round_trip_fails_in_both_settings() -> None:
    class Forgetful(StepCounter):
        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            pass  # the bug: restores nothing

    with pytest.raises(ConformanceError) as err:
        check_component(Forgetful, {"slots": 3})
    found = failures(err)
    assert set(found) == {"state_dict[task-aware]", "state_dict[task-agnostic]"}
    # Task-aware: 32 steps of each task id 0 and 1 went to slots 0 and 1.
    assert "state['counts']: tensor values differ" in found["state_dict[task-aware]"]
    assert "state['label']: 'fake-1' vs 'none'" in found["state_dict[task-aware]"]
    assert "run[task-aware]" in err.value.passed


def test_state_that_torch_save_cannot_pickle_fails() -> None:
    class Unpicklable(StepCounter):
        def state_dict(self) -> dict[str, Any]:
            return {"counts": self.counts, "label": self.label, "fn": lambda: 0}

    with pytest.raises(ConformanceError) as err:
        check_component(Unpicklable)
    assert "torch.save(state_dict()) failed" in failures(err)["state_dict[task-aware]"]


def test_state_with_numpy_arrays_is_refused_by_the_safe_loader() -> None:
    class NumpyState(StepCounter):
        def state_dict(self) -> dict[str, Any]:
            return {"counts": self.counts.numpy().copy(), "label": self.label}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            self.counts = torch.as_tensor(state["counts"])

    with pytest.raises(ConformanceError) as err:
        check_component(NumpyState)
    assert "weights_only=True" in failures(err)["state_dict[task-aware]"]


class Anchor(Component):
    """A regularizer whose state (the anchor) lives outside its state_dict: the bug."""

    role = "regularizer"

    def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        self.anchor: list[torch.Tensor] = []

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        self.anchor = [p.detach().clone() for p in ctx.agent.networks().parameters()]

    def losses(self, ctx: RunContext, batch: Any) -> Losses:
        if not self.anchor:
            return {}
        params = ctx.agent.networks().parameters()
        pairs = zip(params, self.anchor, strict=True)
        return {"loss_anchor": torch.stack([((p - a) ** 2).sum() for p, a in pairs]).sum()}


def test_state_kept_outside_state_dict_shows_in_the_restored_losses() -> None:
    with pytest.raises(ConformanceError) as err:
        check_component(Anchor)
    found = failures(err)
    # Task-agnostic runs have no task end, so no anchor and nothing lost there.
    assert list(found) == ["state_dict[task-aware]"]
    assert "behaves differently" in found["state_dict[task-aware]"]
    assert "losses(ctx, last batch): keys ['loss_anchor'] vs []" in found["state_dict[task-aware]"]

    class SavedAnchor(Anchor):
        def state_dict(self) -> dict[str, Any]:
            return {"anchor": self.anchor}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            self.anchor = list(state["anchor"])

    check_component(SavedAnchor)


def test_a_loss_drawing_from_the_global_generator_is_not_taken_for_lost_state() -> None:
    class Noisy(Component):
        role = "regularizer"

        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            weight = ctx.agent.networks().parameters().__next__()
            return {"loss_noise": (weight * torch.randn_like(weight)).sum() * 1e-3}

    check_component(Noisy)


def test_a_replay_that_does_not_save_its_sampler_samples_differently_when_restored() -> None:
    fifo = registry.load("l2rl.components", "fifo")

    class Unseeded(fifo):  # type: ignore[misc, valid-type]
        def state_dict(self) -> dict[str, Any]:
            return {k: v for k, v in super().state_dict().items() if k != "sampler"}

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            # everything but the sampler's generator, which keeps its fresh state
            super().load_state_dict({**state, "sampler": self.buffer.sampler.state_dict()})

    with pytest.raises(ConformanceError) as err:
        check_component(Unseeded, {"capacity": 40})
    found = failures(err)
    assert set(found) == {"state_dict[task-aware]", "state_dict[task-agnostic]"}
    assert "sample(4)" in found["state_dict[task-aware]"]


# --- runs ----------------------------------------------------------------------------------
def test_an_exception_in_a_hook_names_the_component_and_the_hook() -> None:
    class Exploding(Component):
        def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
            raise RuntimeError("boom")

    with pytest.raises(ConformanceError) as err:
        check_component(Exploding, name="exploding")
    found = failures(err)
    assert list(found) == ["run[task-aware]"]
    assert found["run[task-aware]"] == (
        "ComponentError: component 'exploding' failed in on_task_end: RuntimeError: boom"
    )
    # Task-agnostic runs have no task boundaries, so the broken hook never fires there.
    assert "run[task-agnostic]" in err.value.passed


def test_a_bad_loss_key_fails_the_run() -> None:
    class Unprefixed(Component):
        role = "regularizer"

        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            return {"penalty": torch.zeros(())}

    with pytest.raises(ConformanceError) as err:
        check_component(Unprefixed)
    assert "must start with 'loss_'" in failures(err)["run[task-agnostic]"]


def test_a_run_without_updates_is_not_a_pass() -> None:
    def lazy(env_spec: EnvSpec, services: AgentServices, seed: int) -> Agent:
        return FakeAgent(FakeAgent.Config(train_every=1000), env_spec, services, seed)

    with pytest.raises(ConformanceError) as err:
        check_component(NoOpComponent, agent_factory=lazy)
    assert "made no update" in failures(err)["run[task-aware]"]


# --- the replay role -----------------------------------------------------------------------
def test_a_replay_without_sample_fails_the_protocol_check() -> None:
    class NoSample(Component):
        role = "replay"

        def __len__(self) -> int:
            return 0

    with pytest.raises(ConformanceError) as err:
        check_component(NoSample)
    assert set(failures(err)) == {"replay protocol[task-aware]", "replay protocol[task-agnostic]"}


def test_a_replay_that_never_reports_its_content_fails_the_sample_check() -> None:
    class Uncounted(Component):
        role = "replay"

        def __init__(self, config: PluginConfig, env_spec: EnvSpec) -> None:
            super().__init__(config, env_spec)
            self.steps: list[Step] = []

        def on_step(self, ctx: RunContext, step: Step) -> None:
            self.steps.append(step)

        def __len__(self) -> int:
            return 0  # the bug: stores steps but says it holds none

        def sample(self, batch_size: int) -> TransitionBatch:
            raise AssertionError("never reached: len() is 0")

    with pytest.raises(ConformanceError) as err:
        check_component(Uncounted)
    assert failures(err)["replay sample[task-aware]"] == (
        "len() is 0 after a run that stored transitions"
    )


# --- state comparison ----------------------------------------------------------------------
def test_state_differences_compares_recursively() -> None:
    nan = float("nan")
    a = {"w": torch.tensor([1.0, nan]), "n": [1, (2, 3)], "x": np.array([1, 2]), "f": nan}
    same = {"w": torch.tensor([1.0, nan]), "n": [1, (2, 3)], "x": np.array([1, 2]), "f": nan}
    assert state_differences(a, same) == []
    other = {"w": torch.tensor([1.0, 2.0]), "n": [1, (2, 4)], "x": np.array([1, 2.0]), "f": nan}
    assert state_differences(a, other) == [
        "state['w']: tensor values differ",
        "state['n'][1][1]: 3 vs 4",
        "state['x']: int64[2] vs float64[2]",
    ]
    assert state_differences({"a": 1}, {"b": 1}) == ["state: keys ['a'] vs ['b']"]
    assert state_differences({"a": torch.zeros(2)}, {"a": torch.zeros(2, dtype=torch.int32)}) == [
        "state['a']: torch.float32[2] vs torch.int32[2]"
    ]
    assert state_differences([1, 2], (1, 2)) == ["state: list of 2 vs tuple of 2"]
    assert state_differences(True, 1) == ["state: True vs 1"]


class EvaluationSwap(Component):
    """Skill-style: swaps other weights into the agent for each evaluated task, and (unless
    ``restore``) never puts the trained ones back."""

    role = "custom"

    class Config(PluginConfig):
        """Options."""

        restore: bool = True

    config: Config

    def on_eval_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        parameters = list(ctx.agent.networks().parameters())
        self.saved = [p.detach().clone() for p in parameters]
        with torch.no_grad():
            for p in parameters:
                p.add_(1.0)

    def on_eval_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        if self.config.restore:
            with torch.no_grad():
                for p, saved in zip(ctx.agent.networks().parameters(), self.saved, strict=True):
                    p.copy_(saved)


def test_a_component_that_leaves_swapped_weights_after_evaluation_fails() -> None:
    settings = ("task-aware",)  # evaluation task hooks fire only with task ids
    assert (
        "weights after evaluation[task-aware]"
        in check_component(EvaluationSwap, settings=settings).passed
    )
    with pytest.raises(ConformanceError) as err:
        check_component(EvaluationSwap, {"restore": False}, settings=settings)
    problem = failures(err)["weights after evaluation[task-aware]"]
    assert "must put the trained ones back" in problem and "weights['agent']" in problem


class BuiltAtRunStart(Component):
    """A good learner component whose network exists only from ``on_run_start`` (its size
    comes from the agent), so its state can be loaded only after that, as on a resume."""

    role = "custom"
    learner = "agent"

    def on_run_start(self, ctx: RunContext) -> None:
        width = sum(p.numel() for p in ctx.agent.networks().parameters()) % 5 + 2
        self.net = torch.nn.Linear(width, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["net"])


def test_a_component_that_builds_its_modules_at_run_start_passes() -> None:
    report = check_component(BuiltAtRunStart)
    assert "state_dict[task-agnostic]" in report.passed
