"""Fusing backend outputs into category scores in [0, 1].

How (and why):

1. **Calibration belongs to the backend.** Each detector reports calibrated category
   scores itself (``DetectorOutput.scores``): it knows what its raw numbers mean (NudeNet's
   box confidences and box sizes, OpenNSFW's global probability; see their modules).
   Fusion knows no backend by name, so a new backend is one module and nothing here
   changes. Region evidence of a category a backend did not score counts at its own score.
2. **The strongest backend speaks**: a category's fused score is the highest backend
   score, so wherever the backends alone reach the same decision the fused decision is
   that decision, under any threshold (two doubts never add up to a verdict).
3. **Except lone boxes that a whole-image classifier rejects.** Located evidence (boxes)
   of a category that every whole-image classifier covering it scores below
   ``absent_below`` counts at ``lone_factor``. That is the signature of a box detector
   misfiring on abstract art: on 300 benign images (``bench/benign_fp.py``, dev split)
   27 of NudeNet's 31 false alarms under ``standard`` came with OpenNSFW's nudity score
   below 0.025. A detection both backends support keeps its full score.
4. **Implication.** Explicit content is also nudity, nudity also suggestive, so
   ``nudity >= sexual_explicit`` and ``suggestive >= nudity`` always hold; thresholds stay
   monotone and a policy never allows nudity it would censor as merely suggestive.

An operator's own calibration (``genguard calibrate``) applies after fusion, per category,
in the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genguard.detectors.base import DetectorOutput
from genguard.taxonomy import IMPLIES


def backend_scores(output: DetectorOutput) -> dict[str, float]:
    """One backend's category scores: what it reported, plus unscored region evidence."""
    scores = dict(output.scores)
    for region in output.regions:
        if region.category not in output.scores:
            scores[region.category] = max(scores.get(region.category, 0.0), region.score)
    return scores


@dataclass(frozen=True)
class Evidence:
    """One backend's score for one category, and whether it points at a place."""

    score: float
    located: bool


@dataclass
class Fusion:
    """Turns one frame's backend outputs into category scores (see module docstring)."""

    #: A whole-image classifier scoring a category below this has looked and seen nothing.
    absent_below: float = 0.025
    #: Located evidence (boxes) that every whole-image classifier covering the category
    #: rejects counts at this fraction: a detector's lone boxes on abstract art.
    lone_factor: float = 0.6

    def fuse(self, outputs: Sequence[DetectorOutput]) -> dict[str, float]:
        evidence: dict[str, list[Evidence]] = {}
        for output in outputs:
            located = {region.category for region in output.regions}
            for category, score in backend_scores(output).items():
                evidence.setdefault(category, []).append(Evidence(score, category in located))
        scores = {category: self.combine(items) for category, items in evidence.items()}
        return apply_implications(scores)

    def combine(self, items: Sequence[Evidence]) -> float:
        """One category's fused score from every backend that scored it."""
        if len(items) == 1:
            return items[0].score
        ranked = sorted(items, key=lambda e: e.score, reverse=True)
        top, rest = ranked[0], ranked[1:]
        if top.located and all(not e.located and e.score < self.absent_below for e in rest):
            return top.score * self.lone_factor
        return top.score


def apply_implications(scores: dict[str, float]) -> dict[str, float]:
    """Raise implied categories to at least their implier's score; fill the vocabulary."""
    result = {name: 0.0 for name in ("sexual_explicit", "nudity", "suggestive", "face")}
    result.update(scores)
    for source in ("sexual_explicit", "nudity"):
        for implied in IMPLIES[source]:
            result[implied] = max(result[implied], result[source])
    return result
