"""Fixtures of the face-likeness tests: benign portraits as files, and a store with one
registered face (Eileen Collins, scikit-image's astronaut), built once per session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from genguard.detectors.base import DetectorOutput
from genguard.faces.index import FaceIndex
from tests.faces import samples

REGISTERED = "Eileen Collins"


@pytest.fixture(scope="session")
def portraits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """astronaut.jpg, hopper.jpg (one face each), coffee.jpg (none), pair.jpg (two)."""
    folder = tmp_path_factory.mktemp("portraits")
    images = {
        "astronaut": samples.astronaut(),
        "hopper": samples.grace_hopper(),
        "coffee": samples.face_free()["coffee"],
        "pair": samples.side_by_side(samples.astronaut(), samples.grace_hopper()),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.jpg"
        image.save(paths[name], quality=92)
    return paths


@pytest.fixture(scope="session")
def face_index(portraits: dict[str, Path]) -> FaceIndex:
    """An index holding the astronaut's reference embedding only."""
    from genguard.faces.reference import reference_face

    embedding = reference_face(portraits["astronaut"]).embedding
    return FaceIndex([REGISTERED], embedding[None, :])


class SexualSignal:
    """A fake backend that reports a synthetic nudity score on every frame (no imagery)."""

    name = "fake"
    categories = ("nudity",)

    def __init__(self, score: float) -> None:
        self.score = score

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        return [DetectorOutput(self.name, scores={"nudity": self.score}) for _ in frames]
