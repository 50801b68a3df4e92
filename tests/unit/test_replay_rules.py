"""The replay rules, checked statistically on the plain writer and sampler objects.

Every test is seeded, so its outcome is fixed; the tolerances are what a correct rule
passes with high probability (chi-square at p = 1e-4), and each would fail by a wide
margin for the obvious wrong rule (FIFO instead of reservoir, uniform instead of
triangular, ...).
"""

from __future__ import annotations

import math

import numpy as np

from l2rl.components.replay.samplers import RecencyBiasedSampler
from l2rl.components.replay.writers import (
    ChunkWriter,
    ReservoirWriter,
    TaskBalancedWriter,
    TopKeysWriter,
)


def chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(((observed - expected) ** 2 / expected).sum())


def chi_square_limit(df: int, z: float = 3.72) -> float:
    """The 1 - 1e-4 quantile of chi-square(df) (Wilson-Hilferty; z = 3.72 for 1e-4)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def retention(make: type[ChunkWriter], capacity: int, stream: int, trials: int) -> np.ndarray:
    """How often each of ``stream`` chunks (offered in order) is held at the end."""
    rng = np.random.default_rng(0)
    kept = np.zeros(stream)
    for _ in range(trials):
        writer = make(capacity)  # type: ignore[call-arg]
        for chunk in range(stream):
            writer.place(chunk, 0, rng)
        kept[writer.held()] += 1
    return kept


def test_chi_square_limit_matches_tabulated_quantiles() -> None:
    # Exact 1 - 1e-4 quantiles (regularised incomplete gamma): 33.72, 94.60, 160.06.
    assert abs(chi_square_limit(9) - 33.72) < 0.5
    assert abs(chi_square_limit(49) - 94.60) < 0.5
    assert abs(chi_square_limit(99) - 160.06) < 0.5


def test_reservoir_retention_is_uniform_over_insertion_time() -> None:
    kept = retention(ReservoirWriter, capacity=10, stream=100, trials=2000)
    assert kept.sum() == 10 * 2000
    expected = np.full(100, 2000 * 10 / 100)
    assert chi_square(kept, expected) < chi_square_limit(99)
    # The oldest and newest tenths are kept equally often (FIFO would keep only the last).
    assert abs(kept[:10].sum() - kept[-10:].sum()) < 0.1 * kept[:10].sum()


def test_reservoir_keeps_everything_until_full() -> None:
    writer, rng = ReservoirWriter(5), np.random.default_rng(0)
    assert [writer.place(c, 0, rng) for c in range(5)] == [[]] * 5
    outcomes = [writer.place(c, 0, rng) for c in range(5, 500)]
    assert all(len(o) == 1 for o in outcomes)  # each later chunk evicts one, maybe itself
    assert len(writer.held()) == 5 and writer.seen == 500


def test_top_keys_holds_the_chunks_with_the_largest_keys() -> None:
    writer, rng = TopKeysWriter(20), np.random.default_rng(3)
    for chunk in range(500):
        writer.place(chunk, 0, rng)
    # The writer draws one standard normal key per chunk, in order.
    keys = np.random.default_rng(3).standard_normal(500)
    assert sorted(writer.held()) == sorted(np.argsort(keys)[-20:].tolist())
    assert sorted(writer.keys()) == sorted(keys[np.argsort(keys)[-20:]].tolist())


def test_top_keys_retention_is_uniform_over_insertion_time() -> None:
    kept = retention(TopKeysWriter, capacity=10, stream=100, trials=2000)
    assert chi_square(kept, np.full(100, 200.0)) < chi_square_limit(99)


def place_tasks(writer: TaskBalancedWriter, lengths: list[int], rng: np.random.Generator) -> None:
    """Offer ``lengths[t]`` chunks of task ``t``, task after task; chunk ids count up."""
    chunk = 0
    for task, length in enumerate(lengths):
        for _ in range(length):
            writer.place(chunk, task, rng)
            chunk += 1


def test_task_balanced_quotas_hold_for_equal_tasks() -> None:
    for seed in range(5):
        writer = TaskBalancedWriter(30)
        place_tasks(writer, [60, 60, 60], np.random.default_rng(seed))
        assert writer.held_per_task() == {0: 10, 1: 10, 2: 10}


def test_task_balanced_keeps_all_of_a_short_task() -> None:
    writer = TaskBalancedWriter(20)
    place_tasks(writer, [100, 3, 100], np.random.default_rng(0))
    # Task 1 takes 3 of task 0's 20 and, never the largest, keeps them. Task 2 then takes
    # from the largest (task 0) until it is the largest itself: 9 against task 0's 8.
    assert writer.held_per_task() == {0: 8, 1: 3, 2: 9}


def test_task_balanced_retention_is_uniform_within_a_task() -> None:
    rng = np.random.default_rng(1)
    kept = np.zeros(50)
    trials = 1500
    for _ in range(trials):
        writer = TaskBalancedWriter(10)
        place_tasks(writer, [50, 50], rng)
        assert writer.held_per_task() == {0: 5, 1: 5}
        kept[[c for c in writer.held() if c < 50]] += 1
    # Each of task 0's 50 chunks is held with probability 5 / 50.
    assert chi_square(kept, np.full(50, trials * 5 / 50)) < chi_square_limit(49)


def recency_expected(n: int, p: float) -> np.ndarray:
    """P(index k): p * P(floor(triangular(0, n, n)) = k) + (1 - p) / n."""
    k = np.arange(n)
    return p * (2 * k + 1) / n**2 + (1 - p) / n


def test_recency_bias_matches_the_triangular_rule() -> None:
    n, draws = 20, 200_000
    for p in (1.0, 0.5, 0.0):
        ranks = RecencyBiasedSampler(p, seed=7).ranks(n, draws)
        counts = np.bincount(ranks, minlength=n)
        assert chi_square(counts, draws * recency_expected(n, p)) < chi_square_limit(n - 1)
    # p = 0.5: the newest chunk is drawn (0.5 * 39/400 + 0.5/20) / (1/20) = 1.475x uniform.
    assert abs(recency_expected(n, 0.5)[-1] * n - 1.475) < 1e-9


class LargestUniforms:
    """A generator stand-in whose every uniform is the largest double below 1."""

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        return np.full(size, np.nextafter(1.0, 0.0))


def test_the_largest_uniform_still_gives_an_index_below_n() -> None:
    # Samplers take floor(n * u) with no clamp to n - 1: for u = 1 - 2^-53, the largest a
    # generator returns, n * u must still round to a double below n.
    sampler = RecencyBiasedSampler(1.0)
    sampler.rng = LargestUniforms()  # type: ignore[assignment]
    for n in (1, 2, 3, 7, 100, 2**20, 2**31 - 1, 3 * 2**40 + 1, 2**52 - 1):
        assert sampler.ranks(n, 4).tolist() == [n - 1] * 4
