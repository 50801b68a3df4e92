"""Every regularizer through the Runner with DQN and FIFO replay on the fake scenario.

Each run is a few hundred env steps; a probe component (role ``custom``, so it runs after
the regularizers in every hook) records what the hooks did: the loss terms of each update,
the network at each task end and during evaluations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from l2rl.agents.dqn import DQNAgent
from l2rl.components.regularizers.agem import AGEM
from l2rl.components.regularizers.behavior_cloning import BehaviorCloning
from l2rl.components.regularizers.ewc import EWCRegularizer
from l2rl.components.regularizers.l2 import L2Regularizer
from l2rl.components.regularizers.online_ewc import OnlineEWCRegularizer
from l2rl.components.regularizers.packnet import PackNet
from l2rl.components.regularizers.si import SIRegularizer
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.config import EvalConfig, PluginConfig
from l2rl.core import AgentServices, Component, RunContext
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.testing import fake_scenario, fake_tasks
from l2rl.types import TaskInfo, UpdateStats

STEPS_PER_TASK = 200


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small networks: a second thread only adds contention on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Probe(Component):
    """Records loss keys per update, the network at task ends and at evaluations."""

    role = "custom"

    def __init__(self) -> None:
        super().__init__(PluginConfig(), fake_scenario().env_spec())
        self.name = "probe"
        self.update_keys: list[tuple[int, frozenset[str]]] = []
        self.task_end_weights: list[dict[str, torch.Tensor]] = []
        self.eval_weights: list[tuple[int, int, dict[str, torch.Tensor]]] = []

    def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
        """Which task, which loss terms."""
        assert ctx.task is not None
        self.update_keys.append((ctx.task.index, frozenset(stats.losses)))

    def on_eval_task_start(self, ctx: RunContext, task: TaskInfo) -> None:
        """The weights the evaluation of ``task`` sees."""
        self.eval_weights.append((task.block, task.index, weights(ctx)))

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """The weights a task ends with."""
        self.task_end_weights.append(weights(ctx))

    def keys_in_task(self, task: int) -> set[frozenset[str]]:
        return {keys for index, keys in self.update_keys if index == task}


def weights(ctx: RunContext) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ctx.agent.networks().named_parameters()}


def run(
    component: Component | None,
    num_tasks: int = 2,
    capacity: int = 1_000,
    gamma: float = 0.99,
    scenario: Scenario | None = None,
) -> tuple[Runner, DQNAgent, Probe]:
    scenario = scenario or fake_scenario(num_tasks=num_tasks, steps_per_task=STEPS_PER_TASK)
    env_spec = scenario.env_spec()
    fifo = FIFOReplay(FIFOReplay.Config(capacity=capacity), env_spec)
    fifo.name = "fifo"
    agent = DQNAgent(
        DQNAgent.Config(
            gamma=gamma,
            learning_starts=32,
            train_every=4,
            batch_size=32,
            hidden_sizes=[16],
            epsilon_decay_steps=100,
            target_update_every=50,
        ),
        env_spec,
        AgentServices(replay=fifo),
        seed=0,
    )
    probe = Probe()
    components: list[Component] = [fifo, probe]
    if component is not None:
        component.name = "reg"
        components.insert(1, component)
    runner = Runner(scenario, agent, components, EvalConfig(every=100, episodes=1), seed=0)
    runner.run()
    return runner, agent, probe


def drift(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> float:
    return float(sum((after[k] - before[k]).pow(2).sum() for k in before))


@pytest.fixture(scope="module")
def baseline_drift() -> float:
    """How far plain DQN moves during task 1 from where task 0 ended."""
    _, _, probe = run(None)
    return drift(probe.task_end_weights[1], probe.task_end_weights[0])


PENALTIES = {
    "l2": (L2Regularizer, {"strength": 100.0}, "loss_l2"),
    "ewc": (EWCRegularizer, {"strength": 1e4}, "loss_ewc"),
    "online-ewc": (OnlineEWCRegularizer, {"strength": 1e4}, "loss_online_ewc"),
    "si": (SIRegularizer, {"strength": 10.0}, "loss_si"),
}


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalties_start_after_the_first_task_and_hold_the_weights(
    name: str, baseline_drift: float
) -> None:
    cls, options, key = PENALTIES[name]
    _, _, probe = run(cls(cls.Config(**options), fake_scenario().env_spec()))
    assert probe.keys_in_task(0) == {frozenset({"loss_td"})}
    assert probe.keys_in_task(1) == {frozenset({"loss_td", key})}
    held = drift(probe.task_end_weights[1], probe.task_end_weights[0])
    assert held < 0.25 * baseline_drift, (held, baseline_drift)


def test_ewc_keeps_one_term_per_task_from_the_policys_fisher() -> None:
    component = EWCRegularizer(EWCRegularizer.Config(), fake_scenario().env_spec())
    _, _, probe = run(component, num_tasks=3)
    assert sorted(component.penalty.terms) == [0, 1, 2]
    saved = component.penalty.state_dict()["terms"]
    for task, (fisher, _) in component.penalty.terms.items():
        for name, value in saved[task]["anchor"].items():
            assert torch.equal(value, probe.task_end_weights[task][name])
        assert torch.all(fisher >= 1e-5)
        assert float(fisher.max()) > 1e-3  # a real estimate, not only the floor


def test_si_importances_come_from_the_training_path() -> None:
    component = SIRegularizer(SIRegularizer.Config(), fake_scenario().env_spec())
    _, _, probe = run(component)
    omega = component.si.omega
    assert omega is not None
    # Training lowers the loss, so the path integral (and Omega) is mostly positive.
    assert float(omega.sum()) > 0 and float((omega > 0).float().mean()) > 0.5
    for name, value in component.si.state_dict()["anchor"].items():
        assert torch.equal(value, probe.task_end_weights[1][name])


def test_agem_checks_every_update_after_the_first_task_and_projects_conflicts() -> None:
    # Task 1 rewards the opposite actions of task 0 (fake task 4 inverts task 0), immediate
    # rewards only (gamma 0) and a replay too small to hold task 0 once task 1 is under way:
    # the current gradient then often opposes the memory's.
    tasks = fake_tasks(5)
    scenario = Scenario.sequence("opposed", (tasks[0], tasks[4]), STEPS_PER_TASK)
    component = AGEM(AGEM.Config(memory_per_task=100, batch_size=32), scenario.env_spec())
    _, _, probe = run(component, capacity=100, gamma=0.0, scenario=scenario)
    assert component.memory.tasks == [0, 1]
    assert len(component.memory) == 200
    updates_in_task_1 = sum(1 for task, _ in probe.update_keys if task == 1)
    assert component.checked == updates_in_task_1 > 0
    assert 0 < component.projected < component.checked


def test_packnet_freezes_prunes_in_window_and_masks_evaluation() -> None:
    component = PackNet(PackNet.Config(prune_at=0.8), fake_scenario(num_tasks=3).env_spec())
    runner, _, probe = run(component, num_tasks=3)
    owner = component.masks.owner
    # Equal shares: of n weights task 0 keeps n - floor(2n/3), task 1 half the rest.
    for who in owner.values():
        n = who.numel()
        first = n - (2 * n) // 3
        second = (n - first) - (n - first) // 2
        assert [int((who == t).sum()) for t in range(3)] == [first, second, n - first - second]
    final = weights(runner.ctx)
    for position in range(2):  # weights of a finished task never change again
        end = probe.task_end_weights[position]
        for name, who in owner.items():
            mine = who == position
            assert torch.equal(final[name][mine], end[name][mine])
    # Biases trained in the first task only.
    for name in final:
        if name not in owner:
            assert torch.equal(final[name], probe.task_end_weights[0][name])
    # Pruned in the window: at the first task's end its handed-on weights are zero already.
    for name, who in owner.items():
        assert torch.all(probe.task_end_weights[0][name][who > 0] == 0)
    # Evaluating task 0 during the last window sees only task 0's weights; then restored.
    seen = [w for block, index, w in probe.eval_weights if block == 2 and index == 0]
    assert seen
    for name, who in owner.items():
        assert torch.all(seen[-1][name][who > 0] == 0)
        assert torch.any(final[name][who > 0] != 0)


def test_behavior_cloning_adds_its_terms_after_the_first_task() -> None:
    component = BehaviorCloning(
        BehaviorCloning.Config(memory_per_task=100, batch_size=32), fake_scenario().env_spec()
    )
    _, _, probe = run(component)
    assert probe.keys_in_task(0) == {frozenset({"loss_td"})}
    assert probe.keys_in_task(1) == {frozenset({"loss_td", "loss_bc_kl", "loss_bc_value"})}
    assert component.memory.tasks == [0, 1]
    rows: dict[str, Any] = component.memory.rows
    assert set(rows) == {"obs", "task_ids", "policy.logits", "value"}
