"""Tests of the episode-stats component: the tally alone, a real run, and conformance."""

from __future__ import annotations

import pytest
from l2rl.config import EvalConfig
from l2rl.core import AgentServices
from l2rl.logging.recorder import Recorder
from l2rl.runner import Runner
from l2rl.testing import FakeAgent, check_component, fake_scenario

from l2rl_example_plugin import EpisodeStats, EpisodeTally


class Scalars(Recorder):
    """Keeps every scalar the run logs, as (tag, value, step)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.rows.append((tag, value, step))

    def values(self, tag: str) -> list[float]:
        return [value for t, value, _ in self.rows if t == tag]

    def steps(self, tag: str) -> list[int]:
        return [step for t, _, step in self.rows if t == tag]


def run(task_aware: bool, steps_per_task: int, episode_length: int) -> tuple[EpisodeStats, Scalars]:
    scenario = fake_scenario(
        num_tasks=2,
        steps_per_task=steps_per_task,
        task_aware=task_aware,
        episode_length=episode_length,
    )
    stats = EpisodeStats(EpisodeStats.Config(window=2), scenario.env_spec())
    stats.name = "episode-stats"
    agent = FakeAgent(FakeAgent.Config(), scenario.env_spec(), AgentServices(), seed=0)
    scalars = Scalars()
    evaluation = EvalConfig(every=1000, episodes=1)
    Runner(scenario, agent, [stats], evaluation, seed=0, recorder=scalars).run()
    return stats, scalars


def test_the_component_passes_the_conformance_checks() -> None:
    check_component(EpisodeStats, {"window": 3})


def test_the_tally_counts_and_averages() -> None:
    tally = EpisodeTally(window=2)
    for episode_return in (1.0, 3.0, 5.0):
        tally.add("a", episode_return)
    assert tally.episodes == {"a": 3}
    assert tally.mean_return("a") == 3.0
    assert tally.recent_mean("a") == 4.0  # the last two: 3 and 5


def test_every_episode_is_counted_under_its_task_and_logged() -> None:
    # 20 steps per task with 4-step episodes: 5 episodes each, ending at steps 4, 8, ...
    stats, scalars = run(task_aware=True, steps_per_task=20, episode_length=4)
    assert stats.tally.episodes == {"fake-0": 5, "fake-1": 5}
    first = scalars.values("episode_stats/fake-0/return")
    assert scalars.steps("episode_stats/fake-0/return") == [4, 8, 12, 16, 20]
    assert sum(first) == pytest.approx(stats.tally.total_return["fake-0"])
    assert scalars.values("episode_stats/fake-0/recent_mean")[-1] == pytest.approx(
        (first[-2] + first[-1]) / 2
    )
    assert scalars.values("episode_stats/fake-1/episodes") == [5]
    # The runner logs every training episode's return too; ours must agree with it.
    second = scalars.values("episode_stats/fake-1/return")
    assert first + second == scalars.values("train/episode_return")


def test_an_episode_cut_by_a_window_end_does_not_leak_into_the_next() -> None:
    # 4 steps per window, 3-step episodes: each window finishes one episode and cuts one.
    stats, scalars = run(task_aware=False, steps_per_task=4, episode_length=3)
    assert stats.tally.episodes == {"all": 2}
    assert scalars.values("episode_stats/all/return") == scalars.values("train/episode_return")
