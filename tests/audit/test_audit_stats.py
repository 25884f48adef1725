"""Wilson intervals and the two-proportion test against published / hand-computed values."""

from __future__ import annotations

import math

import pytest

from genguard.audit.stats import proportion, two_proportion_test, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # the "rule of three"-like upper bound at zero
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Table I example
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    p = proportion(3, 40)
    assert p.rate == 0.075 and p.low < 0.075 < p.high
    assert p.to_dict()["ci95"] == [round(p.low, 6), round(p.high, 6)]


def test_two_proportion_test_matches_hand_computation() -> None:
    # 30/100 vs 15/100: pooled 0.225, se = sqrt(.225*.775*.02) = 0.05906, z = 2.540
    c = two_proportion_test(30, 100, 15, 100)
    se = math.sqrt(0.225 * 0.775 * 0.02)
    assert c.z == pytest.approx(0.15 / se, rel=1e-9)
    assert c.p_value == pytest.approx(0.01108, abs=2e-4)
    assert c.diff == pytest.approx(0.15) and c.diff_low < 0.15 < c.diff_high
    assert c.diff_low > 0  # significant at 5%: the interval excludes 0


def test_two_proportion_test_no_difference_and_zeros() -> None:
    same = two_proportion_test(0, 50, 0, 50)
    assert same.z == 0 and same.p_value == 1.0 and same.diff_low < 0 < same.diff_high
    symmetric = two_proportion_test(4, 40, 9, 40)
    mirrored = two_proportion_test(9, 40, 4, 40)
    assert symmetric.p_value == pytest.approx(mirrored.p_value)
    assert symmetric.z == pytest.approx(-mirrored.z)
    assert 0.05 < symmetric.p_value < 0.5
