"""Monotone piecewise-linear calibration maps, shared by detectors and policies.

Raw model numbers are not probabilities. A backend maps its raw numbers to category
scores with a curve anchored at its documented operating points; a policy may add its own
curve per category (fitted by ``genguard calibrate`` on an operator's labelled data).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: ``(raw, calibrated)`` anchor points, increasing in raw; linear in between.
Curve = Sequence[tuple[float, float]]


def calibrate(raw: float, curve: Curve) -> float:
    """``raw`` mapped through ``curve`` (clamped to the first and last anchors)."""
    xs, ys = zip(*curve, strict=True)
    return float(np.interp(raw, xs, ys))
