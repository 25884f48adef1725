"""Reference photos -> one face embedding each, or a one-line error naming the file.

A reference photo defines whom the registry protects, so it must be unambiguous: exactly
one face. A photo with no face, or with two, is refused rather than guessed at (the wrong
face registered would block a stranger and protect nobody).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genguard.content import LoadLimits, load_image
from genguard.errors import ContentError
from genguard.faces.model import FaceBox, face_model

#: Reference photos are shrunk to this longest side before detection: a 6000 px camera
#: photo is decoded at reduced scale (fast, bounded memory) and a face filling a tenth of
#: it is still ~100 px, above the HOG detector's ~80 px minimum.
REFERENCE_SIDE = 1024
#: Detections below this HOG confidence do not count in a reference photo. Frontal faces
#: of our sample photos score 1.2-1.6; JPEG artefacts on astronaut's helmet made a
#: 0.07-0.12 "face" that would otherwise make a clean portrait a "two faces" error.
MIN_REFERENCE_CONFIDENCE = 0.3
#: A photo with no face found at full size is searched again upsampled (x2, then x4) while
#: the upsampled image stays within this side: small photos of small faces still work.
MAX_UPSAMPLED_SIDE = 2048


@dataclass(frozen=True)
class ReferenceFace:
    """The one face of a reference photo."""

    path: str
    embedding: np.ndarray
    #: SHA-256 of the file's bytes: the same photo added twice is stored once.
    sha256: str
    box: tuple[int, int, int, int]


def find_reference_faces(rgb: np.ndarray) -> list[FaceBox]:
    """Faces of a reference image, upsampling only when none is found at its own size."""
    longest = max(rgb.shape[:2])
    model = face_model()
    upsample = 0
    while True:
        found = model.detect(rgb, upsample=upsample)
        faces = [face for face in found if face.confidence >= MIN_REFERENCE_CONFIDENCE]
        if faces or longest * 2 ** (upsample + 1) > MAX_UPSAMPLED_SIDE:
            return faces
        upsample += 1


def reference_face(path: str | Path) -> ReferenceFace:
    """The embedding of the single face in ``path`` (ContentError naming the file if not)."""
    try:
        loaded = load_image(path, LoadLimits(analysis_side=REFERENCE_SIDE, max_frames=1))
    except ContentError as exc:
        raise ContentError(f"reference photo {path}: {exc}", code=exc.code) from exc
    rgb = loaded.frames[0]
    faces = find_reference_faces(rgb)
    if not faces:
        raise ContentError(
            f"reference photo {path}: no face found (use a sharp, frontal photo of one face)",
            code="no_face",
        )
    if len(faces) > 1:
        raise ContentError(
            f"reference photo {path}: {len(faces)} faces found; a reference photo must show "
            "exactly one face (crop it to the person)",
            code="several_faces",
        )
    embedding = face_model().embed(rgb, faces)[0]
    return ReferenceFace(str(path), embedding, loaded.sha256 or "", faces[0].box)


def reference_faces(paths: Sequence[str | Path]) -> list[ReferenceFace]:
    """Every photo's embedding, or the first photo's error: all or nothing."""
    if not paths:
        raise ContentError("give at least one reference photo")
    return [reference_face(path) for path in paths]
