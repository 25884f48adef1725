"""genguard's numpy PDQ against the pdqhash binding of Meta's reference implementation."""

from __future__ import annotations

import cv2
import numpy as np
import pdqhash
import pytest
import skimage.data

from genguard.provenance.pdq import pdq_bits


def images() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    astronaut = skimage.data.astronaut()
    return [
        ("astronaut", astronaut),
        ("coffee", skimage.data.coffee()),
        ("chelsea", skimage.data.chelsea()),
        ("rocket", skimage.data.rocket()),
        ("resized 640x427", cv2.resize(astronaut, (640, 427))),
        ("upscaled 3000x2000", cv2.resize(skimage.data.coffee(), (3000, 2000))),
        ("noise 300x411", rng.integers(0, 256, (300, 411, 3), dtype=np.uint8)),
        ("thin 17x900", rng.integers(0, 256, (17, 900, 3), dtype=np.uint8)),
        ("tall 1500x700", rng.integers(0, 256, (1500, 700, 3), dtype=np.uint8)),
        ("blurred", cv2.GaussianBlur(astronaut, (0, 0), 25)),
    ]


@pytest.mark.parametrize(("name", "rgb"), images(), ids=[n for n, _ in images()])
def test_same_bits_and_quality_as_the_reference(name: str, rgb: np.ndarray) -> None:
    reference, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    bits, ours = pdq_bits(rgb)
    assert ours == quality
    assert int((reference.astype(bool) != bits).sum()) == 0, name


def test_quality_tracks_detail() -> None:
    y, x = np.mgrid[0:300, 0:400]
    gradient = np.stack([x * 255 / 399, y * 255 / 299, np.full_like(x, 90)], -1).astype(np.uint8)
    assert pdq_bits(gradient)[1] == pdqhash.compute(gradient)[1] == 0  # no detail: no hash
    assert pdq_bits(skimage.data.astronaut())[1] == 100
