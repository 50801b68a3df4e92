"""Skill-lifecycle managers: SLIM's bank rules, CSP's subspace, the acting seam."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch
from torch import nn

from l2rl.builder import build_run
from l2rl.components.regularizers.l2 import L2Penalty
from l2rl.components.regularizers.packnet import PackNetMasks
from l2rl.components.skills.bank import FailureCounter, SkillBank
from l2rl.components.skills.csp import CSP, SEARCHED_SKILL, keeps_anchor, mix
from l2rl.components.skills.slim import SLIM
from l2rl.config import ConfigError, PluginConfig, parse_config
from l2rl.core import Component, RunContext
from l2rl.evaluation import EpisodeOutcomes
from l2rl.experiment import resume_experiment, run_experiment
from l2rl.runner import Runner
from l2rl.testing.runs import Interrupted, interrupted_at, tiny_run_config
from l2rl.types import LEARNER_SKILL, EvalRecord, ParametersChanged, TaskInfo, TransitionBatch


# --- the bank -----------------------------------------------------------------------
def test_leave_one_out_matches_a_hand_made_value_table() -> None:
    bank = SkillBank(capacity=3, ema=1.0, epsilon=0.0, n_min=0)
    a, b, c = (bank.add(task=t, origin="snapshot") for t in range(3))
    table = {  # v(k, t): rows learner, a, b, c; columns tasks 0..2
        LEARNER_SKILL: [0.2, 0.3, 0.9],
        a: [0.8, 0.1, 0.1],
        b: [0.7, 0.6, 0.0],
        c: [0.1, 0.6, 0.5],
    }
    for skill, row in table.items():
        for task, value in enumerate(row):
            bank.set_value(skill, task, value)
    # V(S): per task the best of S + learner: 0.8, 0.6, 0.9 -> 2.3 / 3
    # without a: 0.7, 0.6, 0.9 -> Delta_a = 0.1 / 3; without b: 0.8, 0.6, 0.9 -> 0
    # (c covers task 1); without c: 0.8, 0.6, 0.9 -> 0 (b covers it)
    assert bank.value([a, b, c], tasks=[0, 1, 2]) == pytest.approx(2.3 / 3)
    deltas = bank.contributions(tasks=[0, 1, 2])
    assert deltas == pytest.approx({a: 0.1 / 3, b: 0.0, c: 0.0})
    assert bank.best(0) == a and bank.best(1) == b and bank.best(2) == LEARNER_SKILL


def test_contributions_are_smoothed_and_one_skill_retires_per_audit() -> None:
    bank = SkillBank(capacity=3, ema=0.5, epsilon=0.05, n_min=10)
    a, b = bank.add(0, "snapshot"), bank.add(0, "snapshot")
    for skill in (LEARNER_SKILL, a, b):
        bank.set_value(skill, 0, 0.5)
    bank.set_value(a, 0, 0.9)
    assert bank.audit([0]) == pytest.approx({a: 0.4, b: 0.0})
    bank.set_value(a, 0, 0.5)  # the learner caught up: a's Delta is 0 now
    assert bank.audit([0]) == pytest.approx({a: 0.2, b: 0.0})  # EMA: 0.5 * 0.4
    assert bank.to_retire() is None  # b is below epsilon but not exposed enough
    bank.skills[a].exposures = bank.skills[b].exposures = 10
    assert bank.to_retire() == b  # a's EMA (0.2) is still above epsilon
    bank.remove(b)
    assert bank.audit([0]) == pytest.approx({a: 0.1})
    assert bank.audit([0]) == pytest.approx({a: 0.05}) and bank.to_retire() is None
    assert bank.audit([0]) == pytest.approx({a: 0.025}) and bank.to_retire() == a


def test_capacity_and_failure_counter() -> None:
    bank = SkillBank(capacity=1, ema=1.0, epsilon=0.0, n_min=0)
    bank.add(0, "snapshot")
    with pytest.raises(RuntimeError, match="full"):
        bank.add(1, "snapshot")
    counter = FailureCounter(tau=0.5, patience=3)
    assert [counter.observe(s) for s in (0.1, 0.2, 0.9, 0.1, 0.1, 0.4)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]


# --- SLIM on scripted validation ------------------------------------------------------
class _Tasks:
    """Scripted validation: ``returns[(skill, task)]`` per call, the score = the return."""

    def __init__(self) -> None:
        self.returns: dict[tuple[int, int], float] = {}
        self.events: list[Any] = []
        self.changes: list[ParametersChanged] = []

    def ctx(self, slim: SLIM, task: int, step: int = 0) -> RunContext:
        def validate(task_index: int, skill: int, episodes: int) -> EpisodeOutcomes:
            value = self.returns[(skill, task_index)]
            return EpisodeOutcomes(np.full(episodes, value), np.zeros(episodes, dtype=bool))

        normalizer = SimpleNamespace(normalizer=lambda returns, successes: float(returns.mean()))
        return cast(
            RunContext,
            SimpleNamespace(
                validate=validate,
                tasks=[normalizer] * 3,
                task=_info(task),
                global_step=step,
                record_skill_event=self.events.append,
                parameters_changed=self.changes.append,
                env_spec=SimpleNamespace(task_aware=True),
                agent=SimpleNamespace(),
                seed=0,
            ),
        )


def _info(task: int) -> TaskInfo:
    return TaskInfo(index=task, name=f"t{task}", block=task, num_tasks=3, start_step=0)


def _slim(**options: Any) -> SLIM:
    slim = SLIM(SLIM.Config(**{"validation_episodes": 2, **options}), cast(Any, None))
    slim.name = "slim"
    slim.bind(nn.Linear(2, 2))
    slim.replay = cast(Any, SimpleNamespace())
    slim.agent = cast(Any, SimpleNamespace())
    return slim


def test_slim_retires_a_skill_the_learner_absorbed_and_keeps_one_it_forgot() -> None:
    script, slim = _Tasks(), _slim(ema=1.0, epsilon=0.05, n_min=2, expand=False)
    for task in (0, 1):
        slim.on_task_start(script.ctx(slim, task), _info(task))
        script.returns.update({(LEARNER_SKILL, 0): 0.9, (LEARNER_SKILL, 1): 0.8})
        script.returns.update({(0, 0): 0.9, (0, 1): 0.1})
        slim.on_task_end(script.ctx(slim, task), _info(task))
    # task 0's snapshot (skill 0) equals the learner on task 0: absorbed, retired
    kinds = [(e.event, e.skill) for e in script.events]
    assert kinds == [("add", 0), ("retain", 0), ("retire", 0), ("add", 1)]
    assert sorted(slim.bank.skills) == [1] and sorted(slim.snapshots) == [1]
    # now the learner forgets task 1 while skill 1 still holds it: it is retained
    slim.on_task_start(script.ctx(slim, 2), _info(2))
    script.returns.update({(LEARNER_SKILL, 1): 0.2, (1, 0): 0.5, (1, 1): 0.8})
    script.returns.update({(LEARNER_SKILL, 2): 0.7, (1, 2): 0.0})
    slim.on_task_end(script.ctx(slim, 2), _info(2))
    retained = [e for e in script.events if e.event == "retain" and e.skill == 1][-1]
    assert retained.delta == pytest.approx((0.8 - 0.2) / 3)
    assert 1 in slim.bank.skills and slim.select(np.zeros(2), 1, evaluation=True) == 1


def test_slim_expands_after_persistent_failures_and_freezes_at_the_window_end() -> None:
    script, slim = _Tasks(), _slim(tau=0.5, patience=2)
    ctx = script.ctx(slim, 0)
    slim.on_task_start(ctx, _info(0))

    def evaluate(score: float) -> None:
        record = EvalRecord(0, 0, 0, 0, "t0", score, score, 1, False)
        slim.on_eval(ctx, (record,))

    evaluate(0.1)
    evaluate(0.9)  # the run of failures breaks
    evaluate(0.2)
    assert not slim.training
    evaluate(0.3)  # second failure in a row: expand
    (skill,) = slim.training
    assert [c.learner for c in script.changes] == ["slim/skill-0"]
    assert script.changes[0].added == ("weight", "bias")
    assert [learner.learner_name for learner in slim.learners()] == ["slim/skill-0"]
    evaluate(0.0)
    evaluate(0.0)  # one expansion per window
    assert len(slim.training) == 1
    script.returns.update({(LEARNER_SKILL, 0): 0.1, (skill, 0): 0.6})
    slim.on_task_end(ctx, _info(0))
    assert not slim.training and skill in slim.snapshots
    assert script.changes[-1].removed == ("weight", "bias")
    assert [e.event for e in script.events][:2] == ["expand", "freeze"]
    assert slim.select(np.zeros(2), 0, evaluation=True) == skill


def test_slim_without_expansion_or_retirement_never_does_either() -> None:
    script, slim = _Tasks(), _slim(expand=False, retire=False, n_min=0, epsilon=1.0)
    ctx = script.ctx(slim, 0)
    slim.on_task_start(ctx, _info(0))
    for _ in range(5):
        slim.on_eval(ctx, (EvalRecord(0, 0, 0, 0, "t0", 0.0, 0.0, 1, False),))
    script.returns.update({(k, 0): 0.5 for k in (LEARNER_SKILL, 0, 1, 2)})
    for _ in range(3):
        slim.on_task_end(ctx, _info(0))
    assert not slim.training and len(slim.bank.skills) == 3
    assert {e.event for e in script.events} == {"add", "retain"}


def test_slim_state_round_trip_with_a_grown_bank() -> None:
    script, slim = _Tasks(), _slim(tau=0.5, patience=1, expand=True)
    ctx = script.ctx(slim, 0)
    slim.on_task_start(ctx, _info(0))
    script.returns.update({(LEARNER_SKILL, 0): 0.1, (0, 0): 0.6})
    slim.on_eval(ctx, (EvalRecord(0, 0, 0, 0, "t0", 0.0, 0.0, 1, False),))
    slim.on_task_end(ctx, _info(0))  # skill 0 frozen, snapshot 1 added
    slim.on_task_start(script.ctx(slim, 1), _info(1))
    slim.on_eval(script.ctx(slim, 1), (EvalRecord(0, 1, 1, 1, "t1", 0.0, 0.0, 1, False),))
    with torch.no_grad():
        slim.training[2].module.weight.add_(1.0)  # the training skill moved
    state = slim.state_dict()
    again = _slim(tau=0.5, patience=1, expand=True)
    again.load_state_dict(state)
    assert again.bank.state_dict() == slim.bank.state_dict()
    assert sorted(again.snapshots) == [0, 1] and sorted(again.training) == [2]
    for skill in (0, 1, 2):
        for name, value in slim.parameters(skill, {}).items():
            assert torch.equal(again.parameters(skill, {})[name], value)
    assert again.training[2].task == 1 and again.expanded_in_window
    assert again.rng.random() == slim.rng.random()


# --- SLIM in runs ---------------------------------------------------------------------
def _slim_run(tmp_path: Path, **options: Any) -> dict[str, Any]:
    return tiny_run_config(
        tmp_path / "runs",
        steps_per_task=200,
        name="skills",
        components=[
            {
                "name": "slim",
                "options": {
                    "tau": 2.0,  # every evaluation fails: expand at the first one
                    "patience": 1,
                    "n_min": 0,
                    "validation_episodes": 1,
                    "skill_batch_size": 16,
                    "skill_train_every": 5,
                    **options,
                },
            }
        ],
        agent={"name": "dqn", "options": {"learning_starts": 50, "batch_size": 16}},
        evaluation={"every": 50, "episodes": 2},
    )


def test_a_run_acts_with_skills_records_them_and_trains_expanded_ones(tmp_path: Path) -> None:
    built = build_run(parse_config(_slim_run(tmp_path)), seed=0)
    fired: list[str] = []

    class Watch(Component):
        def on_parameters_changed(self, ctx: RunContext, change: ParametersChanged) -> None:
            learners = [learner.learner_name for learner in runner.learners]
            fired.append(f"{change.reason} ({len(learners)} learners)")

    slim = next(c for c in built.components if isinstance(c, SLIM))
    watch = Watch(PluginConfig(), built.env_spec)
    watch.name = "watch"
    components = [*built.components, watch]
    runner = Runner(built.scenario, built.agent, components, built.evaluation, built.seed)
    runner.run()
    # the runner picked up the new learner before the hook, and dropped it at the freeze
    assert fired[:2] == ["slim: expanded skill 0 (2 learners)", "slim: froze skill 0 (1 learners)"]
    kinds = [e.event for e in slim.events]
    assert kinds.count("expand") == 2 and kinds.count("freeze") == 2
    assert runner.ctx.learner_updates["slim/skill-0"] > 0  # it trained while it was a learner
    assert [learner.learner_name for learner in runner.learners] == ["agent"]
    replay = built.agent.services.replay
    assert replay is not None
    skills = cast(TransitionBatch, replay.sample(400)).skills
    assert skills is not None and set(skills.tolist()) - {LEARNER_SKILL}  # bank skills acted


def test_a_resumed_run_with_a_grown_bank_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    data = _slim_run(tmp_path)
    data["checkpoint_every"] = 50
    whole = run_experiment(parse_config(data)).directory / "seed_0"
    # the expansion at step 50 is in the checkpoint of step 100; the run dies at 150
    with interrupted_at(150), pytest.raises(Interrupted):
        run_experiment(parse_config(data))
    (cut,) = [d for d in (tmp_path / "runs").glob("skills-*") if d != whole.parent]
    events = [json.loads(line) for line in (cut / "seed_0" / "skill_events.jsonl").open()]
    assert events[0]["event"] == "expand" and events[0]["global_step"] == 50
    resume_experiment(cut)
    for name in ("evals.jsonl", "metrics.json", "windows.jsonl"):
        assert (cut / "seed_0" / name).read_text() == (whole / name).read_text(), name


def test_validation_replays_the_same_starts_and_leaves_training_alone(tmp_path: Path) -> None:
    built = build_run(parse_config(_slim_run(tmp_path, expand=False)), seed=0)
    runner = Runner(built.scenario, built.agent, built.components, built.evaluation, 0)
    runner._eval_envs = [[t.make_env()] for t in built.scenario.tasks]
    first = runner.ctx.validate(0, LEARNER_SKILL, 3)
    again = runner.ctx.validate(0, LEARNER_SKILL, 3)
    assert first.returns.tolist() == again.returns.tolist()
    with pytest.raises(ValueError, match="not a task"):
        runner.ctx.validate(5, LEARNER_SKILL, 1)


def test_an_agent_that_ignores_the_skills_service_is_refused(tmp_path: Path) -> None:
    data = _slim_run(tmp_path)
    data["agent"] = {"name": "ppo", "options": {}}
    data["replay"] = None
    with pytest.raises(ConfigError, match="never binds the skills service"):
        build_run(parse_config(data), seed=0)


def test_slim_refuses_task_agnostic_runs(tmp_path: Path) -> None:
    data = _slim_run(tmp_path)
    data["scenario"]["task_aware"] = False
    with pytest.raises(Exception, match="task-aware"):
        run_experiment(parse_config(data))


# --- DQN acting with skills -----------------------------------------------------------
def test_dqn_acts_each_row_with_its_skills_parameters(tmp_path: Path) -> None:
    built = build_run(parse_config(_slim_run(tmp_path)), seed=0)
    slim = next(c for c in built.components if isinstance(c, SLIM))
    agent = cast(Any, built.agent)
    always = {}
    for action in (0, 1):  # a skill that always picks `action`
        params = {n: torch.zeros_like(p) for n, p in agent.q.named_parameters()}
        last_bias = [n for n in params if n.endswith("bias")][-1]
        params[last_bias][action] = 1.0
        always[action] = params
    slim.snapshots = {0: always[0], 1: always[1]}
    obs = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    assert agent.act_skills(obs, 0, False, np.array([0, 1, 1, 0])) == [0, 1, 1, 0]
    greedy = agent.act_batch(obs, 0, False)
    assert agent.act_skills(obs, 0, False, np.full(4, LEARNER_SKILL)) == greedy


# --- CSP ------------------------------------------------------------------------------
def test_csp_keeps_an_anchor_only_for_a_ten_percent_gain() -> None:
    assert keeps_anchor(0.55, 0.5, 0.1) and not keeps_anchor(0.549, 0.5, 0.1)
    assert keeps_anchor(0.0, 0.0, 0.1)  # no old return to beat


def _csp(returns_by_alpha: Any) -> tuple[CSP, RunContext, list[Any]]:
    csp = CSP(CSP.Config(candidates=4, validation_episodes=1), cast(Any, None))
    csp.bind(nn.Linear(1, 1, bias=False))
    events: list[Any] = []

    def validate(task: int, skill: int, episodes: int) -> EpisodeOutcomes:
        value = float(returns_by_alpha(csp.alphas[skill]))
        return EpisodeOutcomes(np.array([value]), np.zeros(1, dtype=bool))

    agent = SimpleNamespace(optimizer=SimpleNamespace(state={"x": 1}))
    ctx = SimpleNamespace(
        validate=validate,
        tasks=[SimpleNamespace(normalizer=lambda r, s: float(r.mean()))] * 3,
        record_skill_event=events.append,
        global_step=0,
        agent=agent,
    )
    return csp, cast(RunContext, ctx), events


def test_csp_grows_prunes_and_stores_each_tasks_best_combination() -> None:
    # the return is the weight of the newest anchor in the combination (+ 0.5 base)
    csp, ctx, events = _csp(lambda alpha: 0.5 + float(alpha[-1]))
    policy = csp._policy()
    with torch.no_grad():
        policy.weight.fill_(1.0)
    csp.on_task_end(ctx, _info(0))  # first task: kept, alpha = [1]
    assert len(csp.anchors) == 1 and csp.alphas[0].tolist() == [1.0]
    csp.on_task_start(ctx, _info(1))  # new anchor starts at the anchors' mean, fresh Adam
    assert policy.weight.item() == 1.0 and not ctx.agent.optimizer.state
    with torch.no_grad():
        policy.weight.fill_(3.0)
    csp.on_task_end(ctx, _info(1))  # new vertex scores 1.5 vs the old subspace's 1.5
    assert events[-1].event == "prune-anchor" and len(csp.anchors) == 1

    csp, ctx, events = _csp(lambda alpha: 1.0 + float(alpha[-1]) if len(alpha) > 1 else 1.0)
    csp.on_task_end(ctx, _info(0))
    csp.on_task_end(ctx, _info(1))  # new subspace: up to 2.0 vs 1.0: kept
    assert events[-1].event == "keep-anchor" and len(csp.anchors) == 2
    assert csp.alphas[1].tolist() == [0.0, 1.0]  # the new vertex is the best point
    params = csp.parameters(1, dict(csp._policy().named_parameters()))
    assert torch.equal(params["weight"], csp.anchors[1]["weight"])
    assert csp.select(np.zeros(1), 1, evaluation=True) == 1
    assert csp.select(np.zeros(1), 2, evaluation=True) == LEARNER_SKILL


def test_csp_trains_the_newest_anchor_through_a_dirichlet_mix() -> None:
    csp, _, _ = _csp(lambda alpha: 0.0)
    csp.anchors = [{"weight": torch.zeros(1, 1)}]
    live = nn.Linear(1, 1, bias=False)
    (mixed,) = csp.train_parameters([dict(live.named_parameters())])
    mixed["weight"].sum().backward()
    alpha_new = float(live.weight.grad.item())  # type: ignore[union-attr]
    assert 0.0 < alpha_new < 1.0  # the gradient reaches the live anchor scaled by its weight
    assert mixed["weight"].item() == pytest.approx(alpha_new * live.weight.item())
    assert mix([{"w": torch.ones(1)}, {"w": 3 * torch.ones(1)}], torch.tensor([0.5, 0.5]))[
        "w"
    ].item() == pytest.approx(2.0)


# --- CSP, searched mode (task-agnostic) -------------------------------------------------
def _searched_csp(returns_by_alpha: Any) -> tuple[CSP, Any, list[Any], list[Any]]:
    """A CSP in searched mode whose validation on the task at hand returns
    ``returns_by_alpha(alpha of the skill played)``; every validate call is logged."""
    csp, ctx, events = _csp(returns_by_alpha)
    csp.config = CSP.Config(candidates=4, validation_episodes=1, score_every=10)
    calls: list[Any] = []

    def validate(task: int | None, skill: int, episodes: int) -> EpisodeOutcomes:
        calls.append(task)
        value = float(returns_by_alpha(csp.alphas[skill]))
        return EpisodeOutcomes(np.array([value]), np.zeros(1, dtype=bool))

    ctx = cast(Any, ctx)
    ctx.validate = validate
    ctx.env_spec = SimpleNamespace(task_aware=False)
    ctx.infers_tasks, ctx.seed, ctx.task = True, 0, None
    csp.on_run_start(ctx)
    return csp, ctx, events, calls


def _inferred(index: int, start: int) -> TaskInfo:
    return TaskInfo(index, f"inferred-{index}", index, index + 1, start, inferred=True)


def _train_inferred(csp: CSP, ctx: Any, index: int, start: int, steps: int) -> None:
    """Open inferred task ``index`` at ``start``, step ``steps`` times, close it."""
    ctx.task = _inferred(index, start)
    ctx.global_step = start
    csp.on_task_start(ctx, ctx.task)
    for _ in range(steps):
        ctx.global_step += 1
        csp.on_step(ctx, cast(Any, None))
    csp.on_task_end(ctx, ctx.task)


def test_csp_searched_mode_decides_from_the_task_at_hand_alone() -> None:
    # returns: 1 + the newest anchor's weight, once there are two anchors; else 1
    csp, ctx, events, calls = _searched_csp(
        lambda alpha: 1.0 + float(alpha[-1]) if len(alpha) > 1 else 1.0
    )
    _train_inferred(csp, ctx, 0, start=0, steps=25)  # scored at steps 10 and 20
    assert calls and set(calls) == {None}  # never a task index: the task at hand only
    assert events[-1].event == "keep-anchor" and len(csp.anchors) == 1
    _train_inferred(csp, ctx, 1, start=25, steps=12)  # R_old 1.0 at the start, R_new at 35
    assert events[-1].event == "keep-anchor" and len(csp.anchors) == 2
    assert csp.alphas[1].tolist() == [0.0, 1.0]  # the new vertex scored best (2.0)
    assert set(calls) == {None}


def test_csp_searched_mode_prunes_without_a_gain_or_without_a_score() -> None:
    csp, ctx, events, _ = _searched_csp(lambda alpha: 1.0)  # no combination is better
    _train_inferred(csp, ctx, 0, start=0, steps=3)  # too short to score: first anchor kept
    assert events[-1].event == "keep-anchor" and math.isnan(events[-1].delta)
    _train_inferred(csp, ctx, 1, start=3, steps=15)  # scored: 1.0 vs 1.0, no 10% gain
    assert events[-1].event == "prune-anchor" and len(csp.anchors) == 1
    _train_inferred(csp, ctx, 2, start=18, steps=5)  # a false alarm, never scored
    assert events[-1].event == "prune-anchor" and math.isnan(events[-1].delta)
    assert csp.alphas[2].tolist() == [1.0]  # it plays the old subspace's best


def test_csp_searched_mode_evaluates_with_the_best_combination_for_the_hidden_task() -> None:
    # the hidden task rewards the first anchor: the search must find the vertex [1, 0]
    csp, ctx, _, calls = _searched_csp(lambda alpha: float(alpha[0]))
    csp.anchors = [{"weight": torch.zeros(1, 1)}]
    csp.alphas = {0: torch.tensor([1.0])}
    csp.on_eval_hidden_task_start(ctx)
    assert csp.select(np.zeros(1), None, evaluation=True) == SEARCHED_SKILL
    assert csp.alphas[SEARCHED_SKILL].tolist() == [1.0, 0.0]
    assert len(calls) == 1 + 4 + 1  # the stored combination, 4 candidates, the vertex
    assert csp.select(np.zeros(1), None, evaluation=False) == LEARNER_SKILL
    live = {"weight": torch.ones(1, 1)}
    assert csp.parameters(SEARCHED_SKILL, live)["weight"].item() == 0.0  # anchor 0 alone


def test_csp_searched_mode_state_round_trip() -> None:
    csp, ctx, _, _ = _searched_csp(lambda alpha: float(alpha[-1]))
    _train_inferred(csp, ctx, 0, start=0, steps=12)
    ctx.task = _inferred(1, 12)
    csp.on_task_start(ctx, ctx.task)
    ctx.global_step = 22
    csp.on_step(ctx, cast(Any, None))
    again, _, _, _ = _searched_csp(lambda alpha: 0.0)
    again.load_state_dict(csp.state_dict())
    assert again.searched_mode and again.next_score == csp.next_score == 32
    assert again.old_best is not None and csp.old_best is not None
    assert again.old_best[1] == csp.old_best[1]
    assert again.new_best is not None and csp.new_best is not None
    assert torch.equal(again.new_best[0], csp.new_best[0])


DETECTOR = {"statistic": "loss", "loss_key": "loss_td", "warmup": 10, "threshold": 5.0}


def _searched_run(tmp_path: Path, detector: bool = True) -> dict[str, Any]:
    components: list[dict[str, Any]] = [
        {"name": "csp", "options": {"candidates": 2, "validation_episodes": 1, "score_every": 100}}
    ]
    if detector:
        components.insert(0, {"name": "cusum", "options": DETECTOR})
    config = tiny_run_config(
        tmp_path / "runs",
        steps_per_task=400,
        name="searched",
        components=components,
        agent={"name": "dqn", "options": {"learning_starts": 50, "batch_size": 16}},
        evaluation={"every": 100, "episodes": 2},
    )
    config["scenario"]["task_aware"] = False
    return config


def test_csp_needs_a_detector_in_a_task_agnostic_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="needs a task-change detector"):
        run_experiment(parse_config(_searched_run(tmp_path, detector=False)))


def test_a_searched_csp_run_resumes_exactly(tmp_path: Path) -> None:
    data = _searched_run(tmp_path)
    data["checkpoint_every"] = 100
    whole = run_experiment(parse_config(data)).directory / "seed_0"
    events = [json.loads(line) for line in (whole / "skill_events.jsonl").open()]
    changes = (whole / "task_changes.jsonl").read_text().splitlines()
    assert changes and len(events) == len(changes) + 1  # one decision per inferred task
    assert {e["event"] for e in events} <= {"keep-anchor", "prune-anchor"}
    windows = [json.loads(line) for line in (whole / "windows.jsonl").open()]
    assert all(w["validation_episodes"] > 0 for w in windows)  # searches ran in each window
    with interrupted_at(300), pytest.raises(Interrupted):  # inside the second window
        run_experiment(parse_config(data))
    (cut,) = [d for d in (tmp_path / "runs").glob("searched-*") if d != whole.parent]
    resume_experiment(cut)
    for name in ("evals.jsonl", "skill_events.jsonl", "metrics.json", "windows.jsonl"):
        assert (cut / "seed_0" / name).read_text() == (whole / name).read_text(), name


def test_validate_none_plays_the_task_at_hand(tmp_path: Path) -> None:
    built = build_run(parse_config(_searched_run(tmp_path)), seed=0)
    runner = Runner(built.scenario, built.agent, built.components, built.evaluation, 0)
    runner._eval_envs = [[t.make_env()] for t in built.scenario.tasks]
    with pytest.raises(RuntimeError, match="no task at hand"):
        runner.ctx.validate(None, LEARNER_SKILL, 1)
    named = [runner.ctx.validate(i, LEARNER_SKILL, 3).returns.tolist() for i in (0, 1)]
    assert named[0] != named[1]  # the two tasks play differently from these starts
    for index in (0, 1):
        runner._task_at_hand = index
        assert runner.ctx.validate(None, LEARNER_SKILL, 3).returns.tolist() == named[index]


# --- regularizers follow a changed layout -----------------------------------------------
def test_a_quadratic_penalty_follows_a_grown_and_shrunk_network() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    penalty = L2Penalty(strength=1.0)
    penalty.consolidate(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    before = float(penalty(net).detach())
    grown = nn.Sequential(net[0], nn.Linear(2, 3))
    penalty.follow(grown)
    assert float(penalty(grown)) == pytest.approx(before)  # the new layer is free
    penalty.follow(nn.Sequential(nn.Identity(), grown[1]))
    assert float(penalty(nn.Sequential(nn.Identity(), grown[1]))) == 0.0
    assert math.isfinite(before) and before > 0


def test_packnet_masks_give_new_weights_to_the_training_task() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    masks = PackNetMasks(num_tasks=2)
    masks.bind(net)
    masks.start_task(1, net)
    grown = nn.Sequential(net[0], nn.Linear(2, 3))
    masks.follow(grown)
    assert bool(masks.trainable("1.weight", grown[1].weight).all())
    assert not bool(masks.trainable("0.weight", net[0].weight).any())  # still task 0's


def test_slim_with_nothing_to_call_on_trains_exactly_like_plain_dqn(tmp_path: Path) -> None:
    data = _slim_run(tmp_path, expand=False, reuse_prob=0.0)
    data["scenario"]["options"]["variants"] = ["base"]
    with_slim = run_experiment(parse_config(data)).directory / "seed_0"
    data["components"] = []
    plain = run_experiment(parse_config(data)).directory / "seed_0"
    assert (with_slim / "evals.jsonl").read_text() == (plain / "evals.jsonl").read_text()
    nets = [
        torch.load(d / "checkpoint.pt", weights_only=True)["agent"]["networks"]
        for d in (with_slim, plain)
    ]
    assert nets[0].keys() == nets[1].keys()
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
