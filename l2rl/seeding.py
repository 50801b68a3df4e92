"""Independent seeds for every purpose in a run, derived from the run's seed."""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """An independent 31-bit seed for a purpose named by ``parts`` (run seed, role, index).

    Different ``parts`` give statistically independent streams (numpy's ``SeedSequence``),
    so training envs, evaluation envs and components never share a stream by accident.
    """
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)
