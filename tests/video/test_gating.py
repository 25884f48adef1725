"""The gate analyses cuts, accumulated change and refreshes, and carries everything else."""

from __future__ import annotations

import numpy as np

from genguard.video.gating import Gate, GateConfig, GateReason, mean_abs_diff


def thumb(level: float) -> np.ndarray:
    return np.full((32, 32), level, dtype=np.float32)


def test_first_frame_is_analysed_and_static_frames_carry() -> None:
    gate = Gate(GateConfig(refresh_seconds=10))
    reasons = [gate.observe(thumb(100 + (i % 2) * 0.5), i / 30) for i in range(30)]
    assert reasons[0] is GateReason.FIRST
    assert set(reasons[1:]) == {GateReason.CARRY}


def test_cut_is_detected_against_the_previous_frame() -> None:
    gate = Gate()
    gate.observe(thumb(50), 0.0)
    assert gate.observe(thumb(50), 1 / 30) is GateReason.CARRY
    assert gate.observe(thumb(200), 2 / 30) is GateReason.CUT
    assert gate.cuts == 1


def test_slow_drift_accumulates_until_it_triggers_a_change() -> None:
    """0.5 grey level per frame never looks like a cut, but 6 levels of drift re-analyse."""
    gate = Gate(GateConfig(change_threshold=6.0, refresh_seconds=100))
    reasons = [gate.observe(thumb(100 + 0.5 * i), i / 30) for i in range(40)]
    changes = [i for i, r in enumerate(reasons) if r is GateReason.CHANGE]
    assert GateReason.CUT not in reasons
    assert changes[:3] == [13, 26, 39]  # each time the drift since the anchor exceeds 6.0


def test_refresh_bounds_the_time_between_analysed_frames() -> None:
    gate = Gate(GateConfig(refresh_seconds=1.0))
    times = [i / 30 for i in range(100)]
    analysed = [t for t in times if gate.observe(thumb(80), t) is not GateReason.CARRY]
    assert analysed[0] == 0.0
    gaps = np.diff(analysed)
    assert len(analysed) == 4 and np.all(gaps >= 1.0 - 1e-9) and np.all(gaps < 1.0 + 1 / 30)


def test_every_frame_mode_analyses_every_frame() -> None:
    gate = Gate(GateConfig(every_frame=True))
    assert all(gate.observe(thumb(10), i / 30) is not GateReason.CARRY for i in range(10))


def test_mean_abs_diff_is_symmetric_and_zero_on_equal() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32), dtype=np.float32), rng.random((32, 32), dtype=np.float32)
    assert mean_abs_diff(a, a) == 0.0
    assert mean_abs_diff(a, b) == mean_abs_diff(b, a) > 0
