"""Conformance: every registered detector backend, the same checks.

As python-threatexchange does for its signal types, but parametrised over the live
registry (a new backend is checked without touching this file; a backend without a
builder here fails, so none is skipped silently). Each backend must give one output per
frame, scores in [0, 1] only for the categories it declares (all known), regions inside
the frame, the same result in a batch as alone, and the same result twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from genguard import taxonomy
from genguard.content import load_image
from genguard.detectors.base import DETECTORS, ImageDetector, create_detector
from genguard.provenance.hashbank import HashBank, pdq_hash

Builder = Callable[[pytest.FixtureRequest, Path], ImageDetector]


def _hashbank(request: pytest.FixtureRequest, tmp_path: Path) -> ImageDetector:
    photos = request.getfixturevalue("photos")
    bank = HashBank()
    digest, _ = pdq_hash(load_image(photos["astronaut"]).rgb)
    bank.add("known", digest, {})
    bank.save(tmp_path / "known.bank")
    return create_detector(f"hashbank:{tmp_path / 'known.bank'}")


def _hf(request: pytest.FixtureRequest, tmp_path: Path) -> ImageDetector:
    folder = request.getfixturevalue("vit_factory")(["normal", "nsfw"])
    return create_detector(f"hf:{folder}", threads=1)


def _clip(request: pytest.FixtureRequest, tmp_path: Path) -> ImageDetector:
    return create_detector(f"clip:{request.getfixturevalue('tiny_clip')}?zeroshot=default")


def _faces(request: pytest.FixtureRequest, tmp_path: Path) -> ImageDetector:
    from genguard.cli import main

    photos = request.getfixturevalue("photos")
    store = tmp_path / "faces.db"
    add = ["persons", "add", "Eileen Collins", "--photo", str(photos["astronaut"])]
    assert main([*add, "--store", str(store)]) == 0
    return create_detector(f"faces:{store}")


BUILDERS: dict[str, Builder] = {
    "nudenet": lambda request, tmp_path: create_detector("nudenet", threads=1),
    "opennsfw": lambda request, tmp_path: create_detector("opennsfw", threads=1),
    "hashbank": _hashbank,
    "hf": _hf,
    "clip": _clip,
    "faces": _faces,
}


def test_every_registered_backend_has_a_builder() -> None:
    names = DETECTORS.names()
    assert names, "the registry is empty"
    assert set(names) <= set(BUILDERS), f"no conformance builder for {set(names) - set(BUILDERS)}"


@pytest.mark.parametrize("name", DETECTORS.names())
def test_backend_conforms(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, frames: list[np.ndarray]
) -> None:
    detector = BUILDERS[name](request, tmp_path)
    known = {c.name for c in taxonomy.categories("image")}
    declared = set(detector.categories)
    assert declared and declared <= known, declared
    assert detector.detect([]) == []
    batch = detector.detect(frames)
    assert len(batch) == len(frames)
    for frame, output in zip(frames, batch, strict=True):
        height, width = frame.shape[:2]
        # Scores are the backend's own calibrated ones, only for categories it declares.
        assert set(output.scores) <= declared, output.scores
        assert all(0.0 <= s <= 1.0 for s in output.scores.values())
        for region in output.regions:
            x, y, w, h = region.box
            assert region.category in declared
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, region
            assert 0.0 <= region.score <= 1.0
    for frame, output in zip(frames, batch, strict=True):
        (alone,) = detector.detect([frame])
        assert alone.scores == pytest.approx(output.scores, abs=1e-4)
        assert len(alone.regions) == len(output.regions)
    again = detector.detect(frames)
    assert [o.scores for o in again] == [o.scores for o in batch]
