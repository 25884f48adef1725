"""Test doubles for audits (a module, so tests import it by name)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class FakeDecision:
    """Has the two fields an audit reads from a real Decision."""

    action: str
    categories: dict[str, float]


class FakeClassifier:
    """Flags images by a rule on their pixels, and counts what it was asked."""

    def __init__(self, rule: Callable[[np.ndarray], bool], classifier_id: str = "fake:v1"):
        self.rule = rule
        self.classifier_id = classifier_id
        self.seen = 0

    def check_images(self, images: Sequence[Image.Image]) -> list[FakeDecision]:
        self.seen += len(images)
        out = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
            flagged = self.rule(pixels)
            score = 0.9 if flagged else 0.1
            out.append(
                FakeDecision("block" if flagged else "allow", {"nudity": score, "face": 0.3})
            )
        return out


def reddish(pixels: np.ndarray) -> bool:
    """A content-free rule: the red channel dominates on average."""
    return bool(pixels[..., 0].mean() > pixels[..., 1:].mean() + 10)
