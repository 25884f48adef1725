"""Likeness matching as a detector: faces of registered persons become ``real_person``.

``--backend faces`` (or ``faces:STORE`` for another database, ``faces:STORE@0.55`` or
``faces:@0.55`` for another distance threshold) reads the face embeddings
that ``genguard persons add NAME --photo ...`` stored, finds the faces in each frame
(dlib HOG, at most :data:`MAX_FACES` of the largest, none smaller than
:data:`MIN_FACE_SIDE`), embeds them and looks up the nearest registered embedding. A
face within the distance threshold gives ``real_person`` a score of at least 0.5 and a
region whose label names the person and the distance, so the ``sexual_real_person`` hard
rule blocks sexual content of that person under every profile. With no registered face
the backend returns empty outputs without loading a model; embeddings are computed only
for frames where a face was found.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from genguard import taxonomy
from genguard.decision import Region
from genguard.detectors.base import DetectorOutput, register_detector
from genguard.errors import ConfigError
from genguard.faces.index import DEFAULT_THRESHOLD, FaceIndex, score_from_distance
from genguard.faces.model import FaceBox, face_model, models_dir

taxonomy.register_category(
    "real_person", "image", "the face of a registered protected person (faces backend)"
)

#: Faces embedded per frame at most (the largest first): a crowd photo costs at most
#: this many embeddings (~15-40 ms each on one core), not one per face in the crowd.
MAX_FACES = 16
#: Faces smaller than this (pixels of the detection frame) are skipped: too few pixels
#: for a reliable identity, and every one would cost an embedding.
MIN_FACE_SIDE = 40
#: Frames are searched at this longest side at most (the Guard already analyses at 640):
#: HOG's cost grows with pixels, and at 640 px it finds faces from ~80 px up.
DETECT_SIDE = 640


@register_detector("faces")
class FaceMatchDetector:
    """Faces matched against the registry of protected persons' face embeddings."""

    name = "faces"
    categories = ("real_person",)

    def __init__(
        self,
        store: str | None = None,
        *,
        threads: int | None = None,
        index: FaceIndex | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        max_faces: int = MAX_FACES,
        upsample: int = 0,
    ) -> None:
        from genguard.faces.registry import load_index_from

        location, threshold = parse_spec(store or "", threshold)
        self.index = index if index is not None else load_index_from(location)
        self.threshold = threshold
        self.max_faces = max(1, max_faces)
        self.upsample = max(0, upsample)

    @staticmethod
    def weights() -> str:
        return str(models_dir())

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        if not len(self.index):
            return [DetectorOutput(self.name) for _ in frames]
        return [self._detect_one(frame) for frame in frames]

    def find_faces(self, frame: np.ndarray) -> tuple[list[FaceBox], np.ndarray, float]:
        """The faces to embed (largest first, bounded), the image they were found in, and
        its scale relative to ``frame``."""
        small, scale = _shrink(frame, DETECT_SIDE)
        found = face_model().detect(small, upsample=self.upsample + _upsampling(small))
        faces = [f for f in found if f.side >= MIN_FACE_SIDE]
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces[: self.max_faces], small, scale

    def _detect_one(self, frame: np.ndarray) -> DetectorOutput:
        faces, small, scale = self.find_faces(frame)
        if not faces:
            return DetectorOutput(self.name, raw={"faces": 0.0}, scores={"real_person": 0.0})
        nearest = self.index.nearest(face_model().embed(small, faces))
        height, width = frame.shape[:2]
        regions = []
        best = 0.0
        for face, match in zip(faces, nearest, strict=True):
            score = score_from_distance(match.distance, self.threshold)
            best = max(best, score)
            if match.distance <= self.threshold:
                label = f"PERSON:{match.name} (distance {match.distance:.3f})"
                box = _rescale(face.box, 1.0 / scale, width, height)
                regions.append(Region(box, label, "real_person", score, self.name))
        raw = {"faces": float(len(faces)), "distance": min(m.distance for m in nearest)}
        return DetectorOutput(self.name, raw=raw, regions=regions, scores={"real_person": best})


def parse_spec(argument: str, threshold: float = DEFAULT_THRESHOLD) -> tuple[str | None, float]:
    """``STORE``, ``STORE@THRESHOLD`` or ``@THRESHOLD`` -> (store or None, threshold).

    Only a number after the last ``@`` is a threshold, so a database URL with a user
    (``postgresql://me@host/db``) stays whole.
    """
    head, at, tail = argument.rpartition("@")
    if at:
        try:
            value = float(tail)
        except ValueError:
            return argument or None, threshold
        if not 0.0 < value < 2.0:
            raise ConfigError(f"faces threshold must be between 0 and 2, got {tail}")
        return head or None, value
    return argument or None, threshold


def _upsampling(image: np.ndarray) -> int:
    """How many times HOG doubles a small frame: as often as it stays within
    :data:`DETECT_SIDE`, so a 256 px thumbnail is searched for faces down to ~40 px at
    the cost of a 512 px frame, not only for faces above ~80 px."""
    longest, times = max(image.shape[:2]), 0
    while longest * 2 ** (times + 1) <= DETECT_SIDE:
        times += 1
    return times


def _shrink(frame: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``frame`` as contiguous RGB uint8 with its longest side at most ``side``, and the
    scale applied."""
    rgb = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    longest = max(rgb.shape[:2])
    if longest <= side:
        return rgb, 1.0
    scale = side / longest
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _rescale(
    box: tuple[int, int, int, int], factor: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """A box of the detection image in ``frame`` pixels, clipped to the frame."""
    x, y, w, h = box
    x0, y0 = min(width, round(x * factor)), min(height, round(y * factor))
    return x0, y0, min(width - x0, round(w * factor)), min(height - y0, round(h * factor))
