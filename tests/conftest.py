"""Suite-wide settings: one torch thread.

The test networks are tiny; with torch's default of one thread per core, two cores shared
with other processes make them several times slower (intra-op threads contend), and
results do not depend on the thread count for these sizes.
"""

from __future__ import annotations

import torch


def pytest_configure() -> None:
    torch.set_num_threads(1)
