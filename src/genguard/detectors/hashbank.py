"""Hash-bank matching as a detector: an upload that matches a known image is a signal.

``--backend hashbank:banned.bank`` hashes every frame with PDQ and looks it up in the bank
(Hamming distance <= 31 by default; ``hashbank:banned.bank@20`` sets another threshold).
A match becomes the ``hash_match`` category (score 1.0) with a whole-frame region whose
label names the bank entry and the distance, so the policy decides what a match means
(every built-in profile but ``off`` blocks it) and the Decision shows which entry matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genguard.decision import Region
from genguard.detectors.base import DetectorOutput, register_detector
from genguard.errors import ConfigError


@register_detector("hashbank")
class HashBankDetector:
    """PDQ hash of each frame looked up in a bank of known images."""

    name = "hashbank"
    categories = ("hash_match",)

    def __init__(self, spec: str | None = None, *, threads: int | None = None) -> None:
        from genguard.provenance.hashbank import DEFAULT_THRESHOLD, HashBank

        if not spec:
            raise ConfigError("the hashbank backend needs a bank file: --backend hashbank:PATH")
        path, _, threshold = spec.rpartition("@") if "@" in spec else (spec, "", "")
        try:
            self.threshold = int(threshold) if threshold else DEFAULT_THRESHOLD
        except ValueError as exc:
            raise ConfigError(f"hashbank threshold must be an integer, got {threshold!r}") from exc
        if not Path(path).is_file():
            raise ConfigError(f"hash bank not found: {path}")
        self.bank = HashBank.load(path)

    @staticmethod
    def weights() -> str:
        return "(a bank file given as hashbank:PATH)"

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        from genguard.provenance.hashbank import pdq_hash

        outputs = []
        for frame in frames:
            digest, _quality = pdq_hash(frame)
            matches = self.bank.match(digest, threshold=self.threshold, limit=1)
            regions = []
            if matches:
                best = matches[0]
                height, width = frame.shape[:2]
                label = f"HASHBANK:{best.entry.name} (distance {best.distance})"
                regions.append(Region((0, 0, width, height), label, "hash_match", 1.0, self.name))
            scores = {"hash_match": float(bool(matches))}
            outputs.append(DetectorOutput(self.name, regions=regions, scores=scores))
        return outputs
