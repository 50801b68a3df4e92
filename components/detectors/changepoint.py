"""Sequential change-point tests on a standardised stream: Page-Hinkley and CUSUM.

Both see z-scores ``z_t = (x_t - mu_0) / sigma_0`` of the watched statistic, standardised
by the mean and standard deviation of a warm-up on the current regime (see
:mod:`.detector`), so their thresholds are in units of the regime's own spread. Each can
watch for an increase of the mean, a decrease, or both; ``update`` returns the direction
of an alarm (``"increase"`` / ``"decrease"``) or ``""``.

>>> test = CUSUM(drift=0.5, threshold=4.0, direction="both")
>>> [test.update(0.1) for _ in range(3)]
['', '', '']
>>> alarms = [test.update(3.0) for _ in range(3)]
>>> alarms
['', 'increase', '']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["increase", "decrease", "both"]


@dataclass
class PageHinkley:
    """The Page-Hinkley test (Page 1954; Hinkley 1971), in the incremental form of Gama et
    al. 2014 ("A survey on concept drift adaptation", section 3.2.2) and of MOA.

    With ``zbar_t`` the running mean of the z-scores since the last reset, for an
    increase of the mean: ``m_T = sum_{t <= T} (z_t - zbar_t - delta)``,
    ``M_T = min_{t <= T} m_t``, alarm when ``m_T - M_T > lambda``; for a decrease the
    deviation's sign flips: ``m'_T = sum_{t <= T} (z_t - zbar_t + delta)``, alarm when
    ``max_{t <= T} m'_t - m'_T > lambda``.

    Attributes:
        drift: ``delta``, the magnitude of change tolerated (in standard deviations).
        threshold: ``lambda``, the alarm threshold.
        direction: which changes of the mean to detect.
    """

    drift: float
    threshold: float
    direction: Direction = "both"
    _n: int = field(default=0, init=False)
    _mean: float = field(default=0.0, init=False)
    _up: float = field(default=0.0, init=False)
    _up_min: float = field(default=0.0, init=False)
    _down: float = field(default=0.0, init=False)
    _down_max: float = field(default=0.0, init=False)

    def update(self, z: float) -> str:
        """Feed one z-score; the direction of an alarm, or ``""``."""
        self._n += 1
        self._mean += (z - self._mean) / self._n
        self._up += z - self._mean - self.drift
        self._down += z - self._mean + self.drift
        self._up_min = min(self._up_min, self._up)
        self._down_max = max(self._down_max, self._down)
        return _decide(self, self._up - self._up_min, self._down_max - self._down)

    def reset(self) -> None:
        """Forget everything seen (after an alarm, or when a new regime starts)."""
        self._n, self._mean = 0, 0.0
        self._up = self._up_min = self._down = self._down_max = 0.0


@dataclass
class CUSUM:
    """The two-sided tabular CUSUM (Page 1954; Montgomery, "Introduction to Statistical
    Quality Control", section 9.1).

    ``S+_t = max(0, S+_{t-1} + z_t - k)`` and ``S-_t = max(0, S-_{t-1} - z_t - k)``, both
    from 0; alarm when ``S+_t > h`` (an increase) or ``S-_t > h`` (a decrease).

    Attributes:
        drift: ``k``, the slack (half the shift to detect, in standard deviations).
        threshold: ``h``, the decision interval.
        direction: which changes of the mean to detect.
    """

    drift: float
    threshold: float
    direction: Direction = "both"
    _high: float = field(default=0.0, init=False)
    _low: float = field(default=0.0, init=False)

    def update(self, z: float) -> str:
        """Feed one z-score; the direction of an alarm, or ``""``."""
        self._high = max(0.0, self._high + z - self.drift)
        self._low = max(0.0, self._low - z - self.drift)
        return _decide(self, self._high, self._low)

    def reset(self) -> None:
        """Restart both sums from 0."""
        self._high = self._low = 0.0


def _decide(test: PageHinkley | CUSUM, rise: float, fall: float) -> str:
    """The alarm of a two-sided test whose statistics for an increase and a decrease of the
    mean are ``rise`` and ``fall`` (``direction`` and ``threshold`` as the test's); the test
    resets on an alarm."""
    if test.direction != "decrease" and rise > test.threshold:
        alarm = "increase"
    elif test.direction != "increase" and fall > test.threshold:
        alarm = "decrease"
    else:
        return ""
    test.reset()
    return alarm
