"""NudeNet v3 (320n) body-part detector, run directly on its ONNX session.

The ``nudenet`` package's wrapper reads one path at a time with OpenCV and post-processes
each of the 2,100 candidate rows in a Python loop. Here frames arrive decoded (once, for
every backend), are letterboxed and stacked into one batch, and post-processing is
vectorised; the maths is the wrapper's, so scores and boxes match it (a test checks).

Channel order: the wrapper converts OpenCV's BGR with ``COLOR_RGBA2BGR`` (a swap) and then
``blobFromImage(swapRB=True)`` (a second swap), so the network is fed BGR. We feed the
same order, because that is what its published behaviour was measured on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from genguard.calibration import Curve, calibrate
from genguard.decision import Region
from genguard.detectors import quantize
from genguard.detectors.base import DetectorOutput, register_detector
from genguard.errors import ModelUnavailableError
from genguard.taxonomy import NUDENET_LABELS

LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
INPUT_SIZE = 320
CANDIDATE_MIN_SCORE = 0.2  # the wrapper's pre-NMS cut
NMS_SCORE = 0.25
NMS_IOU = 0.45
#: int8 recipe (:mod:`genguard.detectors.quantize`): only convolutions are quantised, and
#: the detection head (``/model.22/``: box regression, DFL, class sigmoids) and the first
#: two convolutions stay float. Quantising the head's concatenation of pixel-scale box
#: coordinates with 0-1 class logits under one scale wiped out the class scores.
INT8_RECIPE = quantize.Recipe(
    "nudenet", op_types=("Conv",), exclude_prefixes=("/model.22/",), exclude_first_convs=2
)


def model_path() -> str:
    """Path of the 320n ONNX file that ships inside the ``nudenet`` package."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "NudeNet weights need the 'nudenet' package: pip install nudenet"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"
    if not path.is_file():
        raise ModelUnavailableError(
            f"NudeNet weights missing at {path}: pip install --force-reinstall nudenet"
        )
    return str(path)


def letterbox(frame: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, int]:
    """Pad to a square (bottom/right, black) and resize; returns CHW float32 and the side."""
    height, width = frame.shape[:2]
    side = max(height, width)
    if side != height or side != width:
        padded = np.zeros((side, side, 3), dtype=np.uint8)
        padded[:height, :width] = frame
    else:
        padded = frame
    resized = cv2.resize(padded[:, :, ::-1], (size, size), interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1).astype(np.float32) * (1.0 / 255.0), side


def postprocess(
    output: np.ndarray, width: int, height: int, side: int, size: int = INPUT_SIZE
) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    """Vectorised version of the wrapper's per-row loop: filter, rescale, clip, NMS."""
    rows = output.T  # (candidates, 4 + classes)
    class_scores = rows[:, 4:]
    best = class_scores.argmax(axis=1)
    best_score = class_scores[np.arange(len(rows)), best]
    keep = best_score >= CANDIDATE_MIN_SCORE
    if not keep.any():
        return []
    rows, best, best_score = rows[keep], best[keep], best_score[keep]
    scale = side / size
    cx, cy, w, h = (rows[:, i] * scale for i in range(4))
    x = np.clip(cx - w / 2, 0, width)
    y = np.clip(cy - h / 2, 0, height)
    w = np.minimum(w, width - x)
    h = np.minimum(h, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    indices = cv2.dnn.NMSBoxes(boxes.tolist(), best_score.tolist(), NMS_SCORE, NMS_IOU)
    return [
        (LABELS[int(best[i])], float(best_score[i]), _box(boxes[i]))
        for i in np.asarray(indices, dtype=int).reshape(-1)
    ]


def _box(row: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in row)
    return x, y, w, h


@register_detector("nudenet")
class NudeNetDetector:
    """Boxes with body-part labels (exposed/covered) and faces."""

    name = "nudenet"

    categories = ("sexual_explicit", "nudity", "suggestive", "face")
    weights = staticmethod(model_path)

    def __init__(
        self, path: str | None = None, *, threads: int | None = None, precision: str | None = None
    ) -> None:
        """``path``: another 320n file and/or ``?precision=fp32|int8`` (spec argument)."""
        requested = quantize.parse_precision(path, precision, self.name)
        source = quantize.model_argument(path) or model_path()
        self.precision = quantize.resolve_precision(INT8_RECIPE, requested, source)
        self._session = quantize.session(
            source, self.precision, INT8_RECIPE, _calibration_blob, threads
        )

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        if not frames:
            return []
        session = self._session.get()
        prepared = [letterbox(frame) for frame in frames]
        batch = np.stack([blob for blob, _ in prepared])
        (output,) = session.run(None, {session.get_inputs()[0].name: batch})
        results = []
        for index, frame in enumerate(frames):
            height, width = frame.shape[:2]
            detections = postprocess(output[index], width, height, prepared[index][1])
            results.append(detections_to_output(detections, frame_size=(width, height)))
        return results


def _calibration_blob(frame: np.ndarray) -> np.ndarray:
    return letterbox(frame)[0]


#: NudeNet's box confidences of 0.2-0.4 are mostly noise: (raw, calibrated) anchors,
#: linear in between.
NUDENET_CURVE: Curve = (
    (0.0, 0.0),
    (0.2, 0.1),
    (0.4, 0.45),
    (0.6, 0.75),
    (0.8, 0.92),
    (1.0, 1.0),
)


#: A body-part box covering up to this share of the frame is plausible as it is.
PLAUSIBLE_AREA = 0.3
#: At this share and beyond (the whole frame), a box counts at ``IMPLAUSIBLE_FACTOR``.
IMPLAUSIBLE_AREA = 0.8
IMPLAUSIBLE_FACTOR = 0.5


def plausibility(label: str, box: tuple[int, int, int, int], frame_size: tuple[int, int]) -> float:
    """How far a box's size fits its label: 1.0, down to 0.5 for a frame-filling body part.

    Why: on abstract art (colour wheels, lit spheres, radial gradients) NudeNet's misfires
    are large boxes: on 300 benign images (``bench/benign_fp.py``, dev split) most boxes
    scoring >= 0.3 for an exposed part covered over 30 % of the frame, many all of it,
    while a body part in a picture of a person rarely does. Faces are exempt (portraits
    fill the frame).
    """
    if label.startswith("FACE"):
        return 1.0
    width, height = frame_size
    area = box[2] * box[3] / max(1, width * height)
    if area <= PLAUSIBLE_AREA:
        return 1.0
    share = min(1.0, (area - PLAUSIBLE_AREA) / (IMPLAUSIBLE_AREA - PLAUSIBLE_AREA))
    return 1.0 - share * (1.0 - IMPLAUSIBLE_FACTOR)


def detections_to_output(
    detections: Sequence[tuple[str, float, tuple[int, int, int, int]]],
    curve: Curve = NUDENET_CURVE,
    frame_size: tuple[int, int] | None = None,
) -> DetectorOutput:
    """Boxes as regions (raw confidences), and calibrated category scores.

    A box contributes ``calibrated(confidence) * weight(label) * plausibility`` to its
    label's category (:data:`genguard.taxonomy.NUDENET_LABELS`, :func:`plausibility`
    when the frame size is known); a category takes its strongest box. Every category
    the backend covers is reported, 0.0 when nothing was seen.
    """
    regions = []
    raw: dict[str, float] = {}
    scores = dict.fromkeys(NudeNetDetector.categories, 0.0)
    for label, score, box in detections:
        category, weight = NUDENET_LABELS[label]
        regions.append(
            Region(box=box, label=label, category=category, score=score, backend="nudenet")
        )
        raw[label] = max(raw.get(label, 0.0), score)
        fit = plausibility(label, box, frame_size) if frame_size else 1.0
        scores[category] = max(scores[category], calibrate(score, curve) * weight * fit)
    return DetectorOutput(backend="nudenet", raw=raw, regions=regions, scores=scores)
