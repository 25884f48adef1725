"""Fusing backend outputs into category scores in [0, 1].

How (and why):

1. **Per-backend calibration.** Raw detector numbers are not probabilities: NudeNet's box
   confidences of 0.2-0.4 are mostly noise, and OpenNSFW's authors describe < 0.2 as
   "likely safe" and > 0.8 as "likely NSFW". Each raw score goes through a monotone
   piecewise-linear map anchored at those documented operating points
   (:data:`NUDENET_CURVE`, :data:`OPENNSFW_CURVE`). ``genguard calibrate`` (see the eval
   docs) replaces these anchors with curves fitted on an operator's own labelled data.
2. **Region evidence -> category.** A NudeNet box contributes
   ``calibrated(score) * weight(label)`` to its label's category (weights in
   :data:`genguard.taxonomy.NUDENET_LABELS`); a category takes its strongest box.
3. **Implication.** Explicit content is also nudity, nudity also suggestive, so
   ``nudity >= sexual_explicit`` and ``suggestive >= nudity`` always hold; thresholds stay
   monotone and a policy never allows nudity it would censor as merely suggestive.
4. **Combination across backends: noisy-OR.** Independent evidence adds up:
   ``1 - (1 - a)(1 - b)``. OpenNSFW's global score speaks to nudity fully and to explicit
   content at half weight (it cannot tell the two apart), so a confident OpenNSFW score
   alone reaches ``nudity`` thresholds, and agreement of both backends pushes scores up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genguard.detectors.base import DetectorOutput
from genguard.taxonomy import IMPLIES, NUDENET_LABELS

#: (raw, calibrated) anchor points; linear in between.
NUDENET_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.2, 0.1),
    (0.4, 0.45),
    (0.6, 0.75),
    (0.8, 0.92),
    (1.0, 1.0),
)
OPENNSFW_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.2, 0.1),
    (0.5, 0.45),
    (0.8, 0.85),
    (1.0, 1.0),
)
#: How strongly OpenNSFW's global score speaks to each category.
OPENNSFW_WEIGHTS: dict[str, float] = {"sexual_explicit": 0.5, "nudity": 1.0, "suggestive": 1.0}


def calibrate(raw: float, curve: Sequence[tuple[float, float]]) -> float:
    xs, ys = zip(*curve, strict=True)
    return float(np.interp(raw, xs, ys))


def noisy_or(*scores: float) -> float:
    remaining = 1.0
    for score in scores:
        remaining *= 1.0 - min(max(score, 0.0), 1.0)
    return 1.0 - remaining


@dataclass
class Fusion:
    """Turns one frame's backend outputs into category scores (see module docstring)."""

    nudenet_curve: Sequence[tuple[float, float]] = NUDENET_CURVE
    opennsfw_curve: Sequence[tuple[float, float]] = OPENNSFW_CURVE

    def fuse(self, outputs: Sequence[DetectorOutput]) -> dict[str, float]:
        evidence: dict[str, list[float]] = {}
        for output in outputs:
            for category, score in self._backend_scores(output).items():
                evidence.setdefault(category, []).append(score)
        scores = {category: noisy_or(*values) for category, values in evidence.items()}
        return apply_implications(scores)

    def _backend_scores(self, output: DetectorOutput) -> dict[str, float]:
        if output.backend == "opennsfw":
            value = calibrate(output.raw.get("nsfw", 0.0), self.opennsfw_curve)
            return {category: value * weight for category, weight in OPENNSFW_WEIGHTS.items()}
        scores: dict[str, float] = {}
        for region in output.regions:
            category, weight = NUDENET_LABELS.get(region.label, (region.category, 1.0))
            if output.backend == "nudenet":
                value = calibrate(region.score, self.nudenet_curve) * weight
            else:
                value = region.score * weight
            scores[category] = max(scores.get(category, 0.0), value)
        for category, value in output.scores.items():
            scores[category] = max(scores.get(category, 0.0), value)
        return scores


def apply_implications(scores: dict[str, float]) -> dict[str, float]:
    """Raise implied categories to at least their implier's score; fill the vocabulary."""
    result = {name: 0.0 for name in ("sexual_explicit", "nudity", "suggestive", "face")}
    result.update(scores)
    for source in ("sexual_explicit", "nudity"):
        for implied in IMPLIES[source]:
            result[implied] = max(result[implied], result[source])
    return result
