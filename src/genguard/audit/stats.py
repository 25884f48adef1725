"""Small-sample statistics for audit rates: Wilson intervals and two-proportion tests.

Audits produce counts like "3 of 320 images flagged", often with zeros, where the usual
normal-approximation interval (p +- 1.96 sqrt(p(1-p)/n)) collapses to [0, 0] and claims
certainty the data do not have. The Wilson score interval stays honest at 0 and n and is
the standard choice for such rates. Comparisons between two models use the pooled
two-proportion z-test (two-sided), reported with the difference and its Newcombe
interval (built from the two Wilson intervals, so it also behaves at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Proportion:
    """k successes out of n, with its Wilson interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        """Observed share (0 when n is 0)."""
        return self.k / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """JSON form used in report.json."""
        return {
            "count": self.k,
            "n": self.n,
            "rate": round(self.rate, 6),
            "ci95": [round(self.low, 6), round(self.high, 6)],
        }


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k/n; (0, 1) when n is 0 (no information)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> Proportion:
    """A :class:`Proportion` with its 95% Wilson interval."""
    low, high = wilson_interval(k, n)
    return Proportion(k, n, low, high)


@dataclass(frozen=True)
class Comparison:
    """Model A vs model B on one rate."""

    a: Proportion
    b: Proportion
    z: float
    p_value: float
    diff_low: float
    diff_high: float

    @property
    def diff(self) -> float:
        """Rate of A minus rate of B."""
        return self.a.rate - self.b.rate

    def to_dict(self) -> dict[str, float | list[float]]:
        """JSON form used in report.json."""
        return {
            "diff": round(self.diff, 6),
            "diff_ci95": [round(self.diff_low, 6), round(self.diff_high, 6)],
            "z": round(self.z, 4),
            "p_value": round(self.p_value, 6),
        }


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> Comparison:
    """Pooled two-sided z-test of p1 == p2, plus the Newcombe (hybrid Wilson) interval.

    With no successes (or no failures) in both groups the pooled variance is 0: there is
    no evidence of a difference, so z = 0 and p = 1.
    """
    a, b = proportion(k1, n1), proportion(k2, n2)
    if n1 == 0 or n2 == 0:
        return Comparison(a, b, 0.0, 1.0, -1.0, 1.0)
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    z = 0.0 if var == 0 else (a.rate - b.rate) / math.sqrt(var)
    p_value = math.erfc(abs(z) / math.sqrt(2))
    d = a.rate - b.rate
    low = d - math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    high = d + math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return Comparison(a, b, z, p_value, max(-1.0, low), min(1.0, high))
