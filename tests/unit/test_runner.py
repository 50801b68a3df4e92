"""The runner on fake scenarios: exact hook order, settings, evaluation schedule, errors."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from l2rl.config import EvalConfig, PluginConfig
from l2rl.core import AgentServices, Component, RunContext
from l2rl.hooks import ComponentError
from l2rl.runner import _EVAL_ENV, _TRAIN_ENV, LossKeyError, Runner, RunResult
from l2rl.scenario import Scenario
from l2rl.seeding import derive_seed
from l2rl.testing import FakeAgent, FakeEnv, RecordingComponent, fake_scenario
from l2rl.testing.fakes import HookCall
from l2rl.types import EnvSpec, Losses, Step, TaskInfo, TransitionBatch, UpdateStats


class LoggingAgent(FakeAgent):
    """A FakeAgent that writes its task starts and ``act`` arguments into a shared log."""

    def __init__(
        self, config: FakeAgent.Config, env_spec: EnvSpec, log: list[HookCall], seed: int = 0
    ) -> None:
        super().__init__(config, env_spec, AgentServices(), seed)
        self.log = log

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> int:
        self.log.append(HookCall("agent", "act", (task_id, explore)))
        return super().act(obs, task_id, explore)

    def on_task_start(self, task: TaskInfo) -> None:
        self.log.append(HookCall("agent", "on_task_start", task))


def make_components(
    scenario: Scenario, log: list[HookCall], roles: dict[str, str]
) -> list[Component]:
    components: list[Component] = []
    env_spec = scenario.env_spec()
    for name, role in roles.items():
        cls = type(f"Recording_{role}", (RecordingComponent,), {"role": role})
        component = cls(PluginConfig(), env_spec, log=log)
        component.name = name
        components.append(component)
    return components


def run(
    scenario: Scenario,
    components: list[Component] | None = None,
    *,
    log: list[HookCall] | None = None,
    every: int = 2,
    episodes: int = 1,
    seed: int = 0,
    **agent_options: Any,
) -> RunResult:
    log = [] if log is None else log
    options = {"batch_size": 2, "train_every": 2} | agent_options
    agent = LoggingAgent(FakeAgent.Config(**options), scenario.env_spec(), log, seed)
    evaluation = EvalConfig(every=every, episodes=episodes)
    return Runner(scenario, agent, components or [], evaluation, seed).run()


def linear(ctx: RunContext) -> torch.nn.Linear:
    """The FakeAgent's network."""
    layer = ctx.agent.networks()
    assert isinstance(layer, torch.nn.Linear)
    return layer


def which(task: TaskInfo) -> tuple[int, str, int, int]:
    """(index, name, block, num_tasks): which task, in which window."""
    return (task.index, task.name, task.block, task.num_tasks)


def component_hooks(log: list[HookCall], name: str = "rec") -> list[str]:
    return [call.hook for call in log if call.component == name]


UPDATE = ["before_update", "losses", "after_backward", "after_update"]


def eval_round(task_aware: bool, num_tasks: int = 2) -> list[str]:
    per_task = ["on_eval_task_start", "on_eval_task_end"] if task_aware else []
    return per_task * num_tasks + ["on_eval"]


# --- the documented order, exactly ------------------------------------------------------
def test_task_aware_hook_order_is_exactly_the_documented_one() -> None:
    # 2 tasks x 4 steps; an update every 2 steps; evaluation every 2 steps.
    scenario = fake_scenario(num_tasks=2, steps_per_task=4, episode_length=2)
    log: list[HookCall] = []
    result = run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log)

    window = [
        "on_task_start",
        "on_step",  # step 1
        "on_step",
        *UPDATE,
        *eval_round(True),  # step 2: update, mid-window evaluation
        "on_step",  # step 3
        "on_step",
        *UPDATE,  # step 4: update; the window-end evaluation follows
        *eval_round(True),
        "on_task_end",
        "on_consolidate",
    ]
    assert component_hooks(log) == [
        "on_run_start",
        *eval_round(True),
        *window,
        *window,
        "on_run_end",
    ]
    assert (result.env_steps, result.updates, result.episodes) == (8, 4, 4)


def test_payloads_are_typed_and_describe_the_moment() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=4)
    log: list[HookCall] = []
    run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log)
    mine = [call for call in log if call.component == "rec"]
    types = {call.hook: call.payload_type for call in mine}
    assert types == {
        "on_run_start": None,
        "on_task_start": "TaskInfo",
        "on_step": "Step",
        "before_update": None,
        "losses": "TransitionBatch",
        "after_backward": None,
        "after_update": "UpdateStats",
        "on_eval_task_start": "TaskInfo",
        "on_eval_task_end": "TaskInfo",
        "on_eval": "tuple",
        "on_task_end": "TaskInfo",
        "on_consolidate": "TaskInfo",
        "on_run_end": None,
    }
    steps = [c.payload for c in mine if c.hook == "on_step"]
    assert [s.global_step for s in steps] == list(range(1, 9))
    assert [s.task_id for s in steps] == [0] * 4 + [1] * 4
    starts = [c.payload for c in mine if c.hook == "on_task_start"]
    assert [which(t) for t in starts] == [(0, "fake-0", 0, 2), (1, "fake-1", 1, 2)]
    updates = [c.payload for c in mine if c.hook == "after_update"]
    assert [u.update_index for u in updates] == [1, 2, 3, 4]
    assert all(set(u.losses) == {"loss_q"} for u in updates)


def test_the_agent_hears_of_a_task_before_the_components() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=2)
    log: list[HookCall] = []
    run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log)
    starts = [(c.component, c.payload.index) for c in log if c.hook == "on_task_start"]
    assert starts == [("agent", 0), ("rec", 0), ("agent", 1), ("rec", 1)]


def test_task_agnostic_runs_fire_no_task_hooks_and_give_no_task_ids() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=4, task_aware=False)
    log: list[HookCall] = []
    run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log)

    # each round: one hidden-task start per task evaluated (their names withheld)
    rounds = ["on_eval_hidden_task_start", "on_eval_hidden_task_start", "on_eval"]
    window = ["on_step", "on_step", *UPDATE, *rounds, "on_step", "on_step", *UPDATE, *rounds]
    assert component_hooks(log) == ["on_run_start", *rounds, *window, *window, "on_run_end"]
    acts = [call.payload for call in log if call.hook == "act"]
    assert {task_id for task_id, _ in acts} == {None}
    assert {explore for _, explore in acts} == {True, False}  # training and evaluation
    assert not any(c.component == "agent" and c.hook == "on_task_start" for c in log)
    steps = [c.payload for c in log if c.hook == "on_step"]
    assert {s.task_id for s in steps} == {None}


def test_task_aware_runs_give_the_task_id_to_act_in_training_and_evaluation() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=2)
    log: list[HookCall] = []
    run(scenario, log=log, every=100)
    acts = [call.payload for call in log if call.hook == "act"]
    training = [task_id for task_id, explore in acts if explore]
    assert training == [0, 0, 1, 1]
    evaluation = {task_id for task_id, explore in acts if not explore}
    assert evaluation == {0, 1}


def test_ctx_task_is_the_current_task_only_inside_task_aware_windows() -> None:
    seen: list[tuple[str, TaskInfo | None]] = []

    class Watcher(Component):
        def on_step(self, ctx: RunContext, step: Step) -> None:
            seen.append(("step", ctx.task))

        def on_run_end(self, ctx: RunContext) -> None:
            seen.append(("end", ctx.task))

    for task_aware in (True, False):
        seen.clear()
        scenario = fake_scenario(num_tasks=2, steps_per_task=2, task_aware=task_aware)
        run(scenario, [Watcher(PluginConfig(), scenario.env_spec())])
        tasks = [task.index if task else None for _, task in seen]
        assert tasks == ([0, 0, 1, 1, None] if task_aware else [None] * 5)


# --- the update -------------------------------------------------------------------------
def test_after_backward_sees_gradients_before_the_step_and_after_update_sees_the_step() -> None:
    events: list[str] = []

    class Probe(Component):
        role = "regularizer"

        def before_update(self, ctx: RunContext) -> None:
            self.weight = linear(ctx).weight.detach().clone()

        def after_backward(self, ctx: RunContext) -> None:
            weight = linear(ctx).weight
            assert weight.grad is not None and weight.grad.abs().sum() > 0
            assert torch.equal(weight.detach(), self.weight)  # not stepped yet
            events.append("after_backward")

        def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
            assert not torch.equal(linear(ctx).weight.detach(), self.weight)
            events.append("after_update")

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    run(scenario, [Probe(PluginConfig(), scenario.env_spec())])
    assert events == ["after_backward", "after_update"] * 2


def test_the_optimiser_steps_on_the_sum_of_agent_and_component_losses() -> None:
    lr, strength = 0.05, 0.3
    captured: dict[str, Any] = {}

    class L2(Component):
        role = "regularizer"

        def before_update(self, ctx: RunContext) -> None:
            if "before" not in captured:
                captured["before"] = {k: v.clone() for k, v in linear(ctx).state_dict().items()}

        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            captured.setdefault("batch", batch)
            return {"loss_l2": strength * linear(ctx).weight.pow(2).sum()}

        def after_update(self, ctx: RunContext, stats: UpdateStats) -> None:
            after = {k: v.clone() for k, v in linear(ctx).state_dict().items()}
            captured.setdefault("after", after)
            captured.setdefault("stats", stats)

    scenario = fake_scenario(num_tasks=1, steps_per_task=2)
    run(scenario, [L2(PluginConfig(), scenario.env_spec())], lr=lr)

    # Recompute the first update by hand: one SGD step on (mse + strength * |W|^2).
    weight = captured["before"]["weight"].clone().requires_grad_(True)
    bias = captured["before"]["bias"].clone().requires_grad_(True)
    batch: TransitionBatch = captured["batch"]
    q = (batch.obs @ weight.T + bias).gather(1, batch.actions.view(-1, 1)).squeeze(1)
    loss_q = ((q - batch.rewards) ** 2).mean()
    loss_l2 = strength * weight.pow(2).sum()
    (loss_q + loss_l2).backward()
    assert weight.grad is not None and bias.grad is not None
    torch.testing.assert_close(captured["after"]["weight"], (weight - lr * weight.grad).detach())
    torch.testing.assert_close(captured["after"]["bias"], (bias - lr * bias.grad).detach())
    stats: UpdateStats = captured["stats"]
    expected = {"loss_q": loss_q.item(), "loss_l2": loss_l2.item()}
    assert stats.losses == pytest.approx(expected)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({"penalty": 1.0}, r"loss keys must start with 'loss_': \['penalty'\]"),
        ({"loss_q": 1.0}, r"loss key 'loss_q' from component 'bad' is already given by agent"),
    ],
)
def test_bad_loss_keys_raise(returned: dict[str, float], message: str) -> None:
    class Bad(Component):
        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            return {k: torch.tensor(v) for k, v in returned.items()}

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    bad = Bad(PluginConfig(), scenario.env_spec())
    bad.name = "bad"
    with pytest.raises(LossKeyError, match=message):
        run(scenario, [bad])


def test_two_components_giving_one_loss_key_raise_naming_both() -> None:
    class Same(Component):
        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            return {"loss_extra": torch.zeros(())}

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    first, second = (Same(PluginConfig(), scenario.env_spec()) for _ in range(2))
    first.name, second.name = "first", "second"
    expected = "from component 'second' is already given by component 'first'"
    with pytest.raises(LossKeyError, match=expected):
        run(scenario, [first, second])


# --- role order -------------------------------------------------------------------------
def test_components_run_in_role_order_then_config_order_and_end_hooks_in_reverse() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=4)
    log: list[HookCall] = []
    # The config lists the regularizers first; the replay still runs before them.
    roles = {"reg-a": "regularizer", "replay": "replay", "reg-b": "regularizer"}
    run(scenario, make_components(scenario, log, roles), log=log)
    calls = [call for call in log if call.component != "agent"]
    assert len(calls) % 3 == 0 and len(calls) > 0
    closing = {"on_eval_task_end", "on_task_end", "on_run_end"}
    for i in range(0, len(calls), 3):
        triple = calls[i : i + 3]
        assert len({c.hook for c in triple}) == 1
        expected = ["replay", "reg-a", "reg-b"]
        if triple[0].hook in closing:  # they unwind like nested context managers
            expected.reverse()
        assert [c.component for c in triple] == expected
    assert {c.hook for c in calls} >= closing


# --- evaluation ---------------------------------------------------------------------------
def rounds(result: RunResult) -> list[tuple[int, int, int, bool]]:
    """(global_step, block, trained_task, block_end) of each evaluation round."""
    seen: list[tuple[int, int, int, bool]] = []
    for record in result.records:
        key = (record.global_step, record.block, record.trained_task, record.block_end)
        if not seen or seen[-1] != key:
            seen.append(key)
    return seen


def test_evaluation_before_training_every_n_steps_and_at_each_window_end() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=10)
    log: list[HookCall] = []
    result = run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log, every=4)
    # Steps 4 and 8 in window 0, 12 and 16 in window 1; step 20 is window 1's end, so the
    # every-4 evaluation there is the window-end one, not a second round.
    assert rounds(result) == [
        (0, -1, -1, True),
        (4, 0, 0, False),
        (8, 0, 0, False),
        (10, 0, 0, True),
        (12, 1, 1, False),
        (16, 1, 1, False),
        (20, 1, 1, True),
    ]
    assert len(result.records) == 7 * 2
    assert [r.eval_task for r in result.records] == [0, 1] * 7
    assert [r.eval_task_name for r in result.records[:2]] == ["fake-0", "fake-1"]
    # on_eval receives each round's records, and they are the run's records.
    delivered = [c.payload for c in log if c.hook == "on_eval"]
    assert [r for batch in delivered for r in batch] == result.records


def test_evaluation_less_often_than_a_window_happens_only_at_window_ends() -> None:
    result = run(fake_scenario(num_tasks=2, steps_per_task=6), every=1000)
    assert rounds(result) == [(0, -1, -1, True), (6, 0, 0, True), (12, 1, 1, True)]


def test_evaluation_replays_the_same_seeded_episodes_every_round() -> None:
    # A frozen policy (no update due) must score the same at every round, and exactly what
    # the greedy policy earns on episodes reset with derive_seed(seed, eval, task) + e.
    seed, episodes = 3, 2
    scenario = fake_scenario(num_tasks=2, steps_per_task=6)
    frozen = FakeAgent.Config(train_every=1000)
    agent = FakeAgent(frozen, scenario.env_spec(), AgentServices(), seed)
    evaluation = EvalConfig(every=2, episodes=episodes)
    result = Runner(scenario, agent, [], evaluation, seed).run()
    assert result.updates == 0
    for task in (0, 1):
        env = FakeEnv(feature=task)
        returns = []
        for e in range(episodes):
            obs, _ = env.reset(seed=derive_seed(seed, _EVAL_ENV, task) + e)
            total, done = 0.0, False
            while not done:
                obs, reward, _, done, _ = env.step(agent.act(obs, task, explore=False))
                total += reward
            returns.append(total)
        scores = {r.mean_return for r in result.records if r.eval_task == task}
        assert scores == {float(np.mean(returns))}
        assert all(r.episodes == episodes for r in result.records)


def test_two_runs_with_one_seed_give_identical_records() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=24)
    first = run(scenario, every=8, episodes=2, seed=7, epsilon=0.5)
    second = run(scenario, every=8, episodes=2, seed=7, epsilon=0.5)
    assert first.records == second.records
    assert len({r.mean_return for r in first.records}) > 1  # the records are not constant


# --- errors ---------------------------------------------------------------------------------
def test_a_component_exception_is_re_raised_naming_component_and_hook() -> None:
    class Fails(Component):
        def on_step(self, ctx: RunContext, step: Step) -> None:
            if step.global_step == 3:
                raise ValueError("bad step")

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    fails = Fails(PluginConfig(), scenario.env_spec())
    fails.name = "detector-x"
    expected = "component 'detector-x' failed in on_step: ValueError: bad step"
    with pytest.raises(ComponentError, match=expected):
        run(scenario, [fails])


def test_an_exception_in_component_losses_names_the_losses_call() -> None:
    class Fails(Component):
        def losses(self, ctx: RunContext, batch: Any) -> Losses:
            raise RuntimeError("no memory yet")

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    fails = Fails(PluginConfig(), scenario.env_spec())
    fails.name = "agem"
    with pytest.raises(ComponentError) as err:
        run(scenario, [fails])
    assert (err.value.component, err.value.hook) == ("agem", "losses")


# --- cycles ---------------------------------------------------------------------------------
def test_cycles_repeat_the_task_sequence_as_new_blocks() -> None:
    scenario = fake_scenario(num_tasks=2, steps_per_task=4, cycles=2)
    log: list[HookCall] = []
    result = run(scenario, make_components(scenario, log, {"rec": "custom"}), log=log, every=100)
    starts = [c.payload for c in log if c.component == "rec" and c.hook == "on_task_start"]
    assert [which(t) for t in starts] == [
        (0, "fake-0", 0, 2),
        (1, "fake-1", 1, 2),
        (0, "fake-0", 2, 2),
        (1, "fake-1", 3, 2),
    ]
    ends = [c.payload for c in log if c.component == "rec" and c.hook == "on_consolidate"]
    assert ends == starts
    assert rounds(result) == [
        (0, -1, -1, True),
        (4, 0, 0, True),
        (8, 1, 1, True),
        (12, 2, 0, True),
        (16, 3, 1, True),
    ]
    # Each block's training env is reset with its own seed, so the second visit of a task
    # starts from a different observation than the first.
    steps = [c.payload for c in log if c.component == "rec" and c.hook == "on_step"]
    for block in range(4):
        expected, _ = FakeEnv(feature=block % 2).reset(seed=derive_seed(0, _TRAIN_ENV, block, 0))
        np.testing.assert_array_equal(steps[4 * block].obs, expected)
    assert not np.array_equal(steps[0].obs, steps[8].obs)


# --- parallel training envs ---------------------------------------------------------------
class BatchCountingAgent(FakeAgent):
    """Counts batched act calls of training, to show the runner uses act_batch with
    several envs (evaluation, one episode per task here, stacks one observation)."""

    batched_calls = 0

    def act_batch(self, obs: np.ndarray, task_id: int | None, explore: bool) -> list[Any]:
        assert obs.shape[0] == (3 if explore else 1)
        self.batched_calls += explore
        return list(super().act_batch(obs, task_id, explore))


def test_parallel_envs_feed_single_transitions_and_keep_the_budget() -> None:
    # 2 windows of 10 transitions over 3 envs: rounds of 3, 3, 3 and a last partial one.
    scenario = fake_scenario(num_tasks=2, steps_per_task=10, episode_length=4)
    log: list[HookCall] = []
    components = make_components(scenario, log, {"rec": "custom"})
    agent = BatchCountingAgent(
        FakeAgent.Config(batch_size=2, train_every=2), scenario.env_spec(), AgentServices(), 0
    )
    result = Runner(
        scenario, agent, components, EvalConfig(every=5, episodes=1), seed=0, num_envs=3
    ).run()
    steps = [call.payload for call in log if call.hook == "on_step"]
    assert [s.global_step for s in steps] == list(range(1, 21))
    assert [s.env_index for s in steps[:10]] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert agent.batched_calls == 2 * 4
    assert result.env_steps == 20
    # evaluation before training, at step 5 of each window and at each window's end
    assert sorted({r.global_step for r in result.records}) == [0, 5, 10, 15, 20]
    # each env's transitions chain: the next observation is that env's next obs
    for env_index in range(3):
        mine = [s for s in steps[:10] if s.env_index == env_index]
        for earlier, later in itertools.pairwise(mine):
            if not (earlier.terminated or earlier.truncated):
                np.testing.assert_array_equal(earlier.next_obs, later.obs)


class EpisodeStartAgent(FakeAgent):
    """Logs episode starts and the acts they precede."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.log: list[tuple[str, Any]] = []

    def on_episode_start(self, env_indices: Any, evaluation: bool) -> None:
        self.log.append(("start", (tuple(env_indices), evaluation)))

    def act(self, obs: np.ndarray, task_id: int | None, explore: bool) -> Any:
        self.log.append(("act", explore))
        return super().act(obs, task_id, explore)


def test_recurrent_agents_hear_of_every_episode_start_before_acting_in_it() -> None:
    # One window of 10 steps in episodes of 4 (episodes start at steps 1, 5, 9); three
    # evaluation rounds (before, at step 5 and at the end) of 2 episodes each, in lockstep
    # on 2 slots (both start at once) or, with parallel_episodes=1, one after another.
    for parallel, starts in ((None, [(0, 1)] * 3), (1, [(0,)] * 6)):
        scenario = fake_scenario(num_tasks=1, steps_per_task=10, episode_length=4)
        agent = EpisodeStartAgent(FakeAgent.Config(), scenario.env_spec(), AgentServices(), 0)
        evaluation = EvalConfig(every=5, episodes=2, parallel_episodes=parallel)
        Runner(scenario, agent, [], evaluation, seed=0).run()
        training = [e for e in agent.log if e == ("act", True) or (e[0] == "start" and not e[1][1])]
        acts_after = [
            sum(1 for _ in itertools.takewhile(lambda e: e[0] == "act", training[i + 1 :]))
            for i, e in enumerate(training)
            if e[0] == "start"
        ]
        assert acts_after == [4, 4, 2]
        assert all(e == ("start", ((0,), False)) for e in training if e[0] == "start")
        evaluating = [e for e in agent.log if e not in training]
        assert [e[1][0] for e in evaluating if e[0] == "start"] == starts
        # every evaluation episode starts before its first act: 4 steps of each episode
        assert evaluating[0][0] == "start"
        assert evaluating.count(("act", False)) == 3 * 2 * 4


def test_no_loss_terms_is_an_error() -> None:
    class SilentAgent(FakeAgent):
        def losses(self, batch: Any) -> Losses:
            return {}

    scenario = fake_scenario(num_tasks=1, steps_per_task=4)
    agent = SilentAgent(
        FakeAgent.Config(batch_size=2, train_every=2), scenario.env_spec(), AgentServices(), 0
    )
    with pytest.raises(LossKeyError, match="no loss terms"):
        Runner(scenario, agent, [], EvalConfig(every=10, episodes=1), seed=0).run()
