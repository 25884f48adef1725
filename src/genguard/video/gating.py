"""Which frames the models must see: change gating, shot boundaries, periodic refresh.

Consecutive video frames are nearly identical, and running the detectors on every one
of them wastes >95% of the work. The gate compares cheap 32x32 grey thumbnails:

* **shot boundary (cut)**: the mean absolute difference to the *previous* frame exceeds
  ``cut_threshold`` -> a new shot starts, analyse it;
* **content change**: the difference to the *last analysed* frame exceeds
  ``change_threshold`` -> slow pans and zooms, which never trip the cut test from one
  frame to the next, accumulate until they do trip this one;
* **refresh**: ``refresh_seconds`` passed since the last analysed frame -> analyse
  anyway, so that a change the thumbnail cannot see (small, local) is caught within a
  bounded delay.

Every other frame carries the decision (and regions) of the last analysed frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class GateReason(StrEnum):
    """Why a frame was analysed (or ``CARRY`` when it was not)."""

    FIRST = "first"
    CUT = "cut"
    CHANGE = "change"
    REFRESH = "refresh"
    EVERY = "every"
    CARRY = "carry"


@dataclass(frozen=True)
class GateConfig:
    """Gate thresholds; grey-level differences are on a 0-255 scale.

    Defaults measured on generated test videos (bench/video.py): compression noise on a
    static shot stays below 1.0, a 0.5 px/frame pan of a photo crosses 6.0 within about
    half a second, and hard cuts between different photos exceed 25.
    """

    change_threshold: float = 6.0
    cut_threshold: float = 25.0
    refresh_seconds: float = 2.0
    #: Analyse every frame (the reference run that gating is measured against).
    every_frame: bool = False


class Gate:
    """Stateful per-video gate: feed it each frame's thumbnail and time, in order."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._previous: np.ndarray | None = None
        self._anchor: np.ndarray | None = None
        self._anchor_time = 0.0
        self.cuts = 0

    def observe(self, thumbnail: np.ndarray, time: float) -> GateReason:
        """Classify one frame; updates the state (previous frame, last analysed frame)."""
        reason = self._classify(thumbnail, time)
        self._previous = thumbnail
        if reason is not GateReason.CARRY:
            self._anchor = thumbnail
            self._anchor_time = time
        if reason is GateReason.CUT:
            self.cuts += 1
        return reason

    def _classify(self, thumbnail: np.ndarray, time: float) -> GateReason:
        if self._anchor is None or self._previous is None:
            return GateReason.FIRST
        config = self.config
        if mean_abs_diff(thumbnail, self._previous) > config.cut_threshold:
            return GateReason.CUT
        if config.every_frame:
            return GateReason.EVERY
        if mean_abs_diff(thumbnail, self._anchor) > config.change_threshold:
            return GateReason.CHANGE
        if time - self._anchor_time >= config.refresh_seconds:
            return GateReason.REFRESH
        return GateReason.CARRY


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey-level difference of two same-size thumbnails."""
    return float(np.abs(a - b).mean())
