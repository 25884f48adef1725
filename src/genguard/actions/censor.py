"""Image actions: censor regions, or replace the whole image with a neutral placeholder.

Both keep the image's size (and the CLI keeps its format), so a pipeline downstream of
genguard never breaks on a changed shape. Censoring is one-way: the pixels under a
region are replaced, never hidden in a reversible way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw

from genguard.decision import Region

CensorStyle = Literal["pixelate", "blur", "box"]
#: Regions are grown by this fraction of their size on each side, so that detector boxes
#: that sit tight on a body part do not leave its edges visible.
REGION_MARGIN = 0.1


def censor_regions(
    rgb: np.ndarray, regions: Iterable[Region], style: CensorStyle = "pixelate"
) -> np.ndarray:
    """Return a copy of ``rgb`` with each region's box pixelated, blurred or filled."""
    out = rgb.copy()
    height, width = out.shape[:2]
    for region in regions:
        x0, y0, x1, y1 = _grown_box(region.box, width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        out[y0:y1, x0:x1] = _censor_patch(out[y0:y1, x0:x1], style)
    return out


def _grown_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, ...]:
    x, y, w, h = box
    dx, dy = int(w * REGION_MARGIN), int(h * REGION_MARGIN)
    return max(0, x - dx), max(0, y - dy), min(width, x + w + dx), min(height, y + h + dy)


def _censor_patch(patch: np.ndarray, style: CensorStyle) -> np.ndarray:
    h, w = patch.shape[:2]
    if style == "box":
        return np.zeros_like(patch)
    if style == "blur":
        # A kernel as large as half the region leaves no recognisable detail; then
        # pixelate lightly so that deconvolution has nothing smooth to invert.
        k = max(3, (max(h, w) // 2) | 1)
        blurred = cv2.GaussianBlur(patch, (k, k), 0)
        return _pixelate(blurred, blocks=24)
    return _pixelate(patch, blocks=8)


def _pixelate(patch: np.ndarray, blocks: int) -> np.ndarray:
    h, w = patch.shape[:2]
    small = cv2.resize(
        patch, (max(1, min(blocks, w)), max(1, min(blocks, h))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def placeholder(width: int, height: int, text: str = "blocked by policy") -> np.ndarray:
    """A neutral grey image of the same size, with a short label when there is room."""
    img = Image.new("RGB", (width, height), (128, 128, 128))
    if width >= 120 and height >= 40:
        draw = ImageDraw.Draw(img)
        box = draw.textbbox((0, 0), text)
        tw, th = box[2] - box[0], box[3] - box[1]
        draw.text(((width - tw) // 2, (height - th) // 2), text, fill=(220, 220, 220))
    return np.asarray(img, dtype=np.uint8).copy()
