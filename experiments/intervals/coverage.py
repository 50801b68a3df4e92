"""How often Continual World's 90% percentile bootstrap interval covers the true mean.

    .venv/bin/python experiments/intervals/coverage.py [--trials 2000]

For each number of seeds, draws ``trials`` samples of per-seed values from a known
distribution, computes :func:`l2rl.aggregate.cw_mean_interval` on each, and prints the
fraction of intervals that contain the distribution's mean. Two distributions: a normal one
and a skewed Beta(2, 5) (like scores bunched near a bound). This is why the committed
baselines use 10 seeds rather than 5 and why every table prints its seed count.
"""

from __future__ import annotations

import argparse

import numpy as np

from l2rl.aggregate import CONFIDENCE, cw_mean_interval

SEEDS = (3, 5, 10, 20)


def coverage(draw: np.ndarray, true_mean: float) -> float:
    """Fraction of the rows of ``draw`` (trials x seeds) whose interval holds ``true_mean``."""
    hits = 0
    for row in draw:
        interval = cw_mean_interval(row.tolist())
        hits += interval.low <= true_mean <= interval.high
    return hits / len(draw)


def main() -> None:
    """Print the coverage table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials must be >= 1")
    rng = np.random.default_rng(0)
    print(f"nominal {CONFIDENCE:.0%}; {args.trials} trials per cell")
    print(f"{'seeds':>5} {'normal':>8} {'beta(2,5)':>10}")
    for n in SEEDS:
        normal = coverage(rng.normal(0.0, 1.0, (args.trials, n)), 0.0)
        skewed = coverage(rng.beta(2.0, 5.0, (args.trials, n)), 2.0 / 7.0)
        print(f"{n:>5} {normal:>8.3f} {skewed:>10.3f}")


if __name__ == "__main__":
    main()
