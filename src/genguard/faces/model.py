"""dlib's face models behind a small typed wrapper, loaded once per process, lazily.

Why dlib: the HOG frontal detector runs in ~35 ms on a 640 px frame on one CPU core, and
the ResNet face embedding (128 numbers, Euclidean distance) is the model of the
``face_recognition`` package, with published accuracy (99.38 % on LFW) and weights that
ship in the ``face_recognition_models`` package. dlib has no type stubs, so every call
goes through this module: the rest of genguard sees numpy arrays and :class:`FaceBox`.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genguard.errors import ModelUnavailableError

#: Files of the ``face_recognition_models`` package that this module uses.
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDING_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: Recorded with every stored embedding: embeddings of two models cannot be compared.
MODEL_ID = "dlib_resnet_v1"
EMBEDDING_SIZE = 128
_INSTALL = "pip install dlib-bin face_recognition_models"


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box ``(x, y, w, h)`` in pixels of the image it was found in."""

    box: tuple[int, int, int, int]
    #: HOG detection confidence (dlib's SVM margin; > 0 is a detection at its default).
    confidence: float

    @property
    def side(self) -> int:
        return min(self.box[2], self.box[3])


def models_dir() -> Path:
    """Folder of the ``face_recognition_models`` weights (ModelUnavailableError if absent).

    The package cannot be imported on current setuptools (it needs ``pkg_resources``), so
    its files are located without importing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelUnavailableError(
            f"face matching needs the face_recognition_models package: {_INSTALL}"
        )
    folder = Path(locations[0]) / "models"
    for name in (LANDMARKS_FILE, EMBEDDING_FILE):
        if not (folder / name).is_file():
            raise ModelUnavailableError(
                f"face model file {folder / name} is missing: reinstall it with {_INSTALL}"
            )
    return folder


def _import_dlib() -> Any:
    try:
        import dlib  # no type stubs: used only through this module
    except ImportError as exc:
        raise ModelUnavailableError(f"face matching needs the dlib package: {_INSTALL}") from exc
    return dlib


class FaceModel:
    """HOG detector + 5-point landmarks + ResNet embedding; thread-safe.

    dlib's objects are not documented as safe to share between threads, and a gateway
    shares one detector between its policies, so every call holds one lock.
    """

    def __init__(self, folder: Path) -> None:
        dlib = _import_dlib()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(folder / LANDMARKS_FILE))
        self._embedder = dlib.face_recognition_model_v1(str(folder / EMBEDDING_FILE))
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, *, upsample: int = 0) -> list[FaceBox]:
        """Faces in an HxWx3 uint8 RGB image, most confident first, boxes clipped to it."""
        height, width = rgb.shape[:2]
        with self._lock:
            rects, confidences, _ = self._detector.run(_contiguous(rgb), upsample, 0.0)
        faces = []
        for rect, confidence in zip(rects, confidences, strict=True):
            x0, y0 = max(0, rect.left()), max(0, rect.top())
            x1, y1 = min(width, rect.right() + 1), min(height, rect.bottom() + 1)
            if x1 > x0 and y1 > y0:
                faces.append(FaceBox((x0, y0, x1 - x0, y1 - y0), float(confidence)))
        return sorted(faces, key=lambda f: f.confidence, reverse=True)

    def embed(self, rgb: np.ndarray, faces: Sequence[FaceBox]) -> np.ndarray:
        """One L2-comparable 128-d float32 embedding per face (shape ``(len(faces), 128)``)."""
        if not faces:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        dlib = self._dlib
        image = _contiguous(rgb)
        with self._lock:
            shapes = dlib.full_object_detections()
            for face in faces:
                x, y, w, h = face.box
                shapes.append(self._landmarks(image, dlib.rectangle(x, y, x + w - 1, y + h - 1)))
            vectors = self._embedder.compute_face_descriptor(image, shapes)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)


def _contiguous(rgb: np.ndarray) -> np.ndarray:
    """dlib wants a C-contiguous uint8 HxWx3 array (a flipped or cropped view is not)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


_MODEL: FaceModel | None = None
_MODEL_LOCK = threading.Lock()


def face_model() -> FaceModel:
    """The process's one :class:`FaceModel`, built on first use (~0.8 s, ~30 MB)."""
    global _MODEL
    if _MODEL is None:
        with _MODEL_LOCK:
            if _MODEL is None:
                _MODEL = FaceModel(models_dir())
    return _MODEL
