"""Fusing backend outputs into category scores in [0, 1].

How (and why):

1. **Calibration belongs to the backend.** Each detector reports calibrated category
   scores itself (``DetectorOutput.scores``): it knows what its raw numbers mean (NudeNet's
   box confidences, OpenNSFW's global probability; see their modules). Fusion knows no
   backend by name, so a new backend is one module and nothing here changes. Region
   evidence of a category a backend did not score counts at its own score.
2. **Implication.** Explicit content is also nudity, nudity also suggestive, so
   ``nudity >= sexual_explicit`` and ``suggestive >= nudity`` always hold; thresholds stay
   monotone and a policy never allows nudity it would censor as merely suggestive.
3. **Combination across backends: noisy-OR.** Independent evidence adds up:
   ``1 - (1 - a)(1 - b)``. A confident backend alone reaches thresholds, and agreement of
   two backends pushes scores up.

An operator's own calibration (``genguard calibrate``) applies after fusion, per category,
in the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genguard.detectors.base import DetectorOutput
from genguard.taxonomy import IMPLIES


def noisy_or(*scores: float) -> float:
    remaining = 1.0
    for score in scores:
        remaining *= 1.0 - min(max(score, 0.0), 1.0)
    return 1.0 - remaining


def backend_scores(output: DetectorOutput) -> dict[str, float]:
    """One backend's category scores: what it reported, plus unscored region evidence."""
    scores = dict(output.scores)
    for region in output.regions:
        if region.category not in output.scores:
            scores[region.category] = max(scores.get(region.category, 0.0), region.score)
    return scores


@dataclass
class Fusion:
    """Turns one frame's backend outputs into category scores (see module docstring)."""

    def fuse(self, outputs: Sequence[DetectorOutput]) -> dict[str, float]:
        evidence: dict[str, list[float]] = {}
        for output in outputs:
            for category, score in backend_scores(output).items():
                evidence.setdefault(category, []).append(score)
        scores = {category: noisy_or(*values) for category, values in evidence.items()}
        return apply_implications(scores)


def apply_implications(scores: dict[str, float]) -> dict[str, float]:
    """Raise implied categories to at least their implier's score; fill the vocabulary."""
    result = {name: 0.0 for name in ("sexual_explicit", "nudity", "suggestive", "face")}
    result.update(scores)
    for source in ("sexual_explicit", "nudity"):
        for implied in IMPLIES[source]:
            result[implied] = max(result[implied], result[source])
    return result
