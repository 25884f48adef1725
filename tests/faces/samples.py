"""Benign face photos that ship inside installed packages, and edited copies of them.

Faces: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain) and
matplotlib's ``grace_hopper.jpg`` (US Navy, public domain). Nothing is downloaded or
committed. The edits are what a re-upload or a deepfake pipeline does to a photo:
crop, recompress, resize, mirror, tilt, drop colour, convert to CMYK, rotate via EXIF.
Shared by ``tests/faces`` and ``bench/faces.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).convert("RGB")


def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return Image.open(path).convert("RGB")


def face_free() -> dict[str, Image.Image]:
    """Photos without a human face: coffee cup, cat, rocket, bricks, camera-free scenes."""
    import skimage.data

    images = {}
    for name in ("coffee", "chelsea", "rocket", "brick", "page", "text", "hubble_deep_field"):
        images[name] = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return images


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _crop(image: Image.Image) -> Image.Image:
    """Keep the central 80 % (the face stays, the frame changes)."""
    w, h = image.size
    return image.crop((w // 10, h // 10, w - w // 10, h - h // 10))


def _exif_rotated(image: Image.Image) -> bytes:
    """Pixels stored turned 90 degrees with an EXIF tag saying how to turn them back."""
    turned = image.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation 8: the viewer turns the pixels 90 degrees back
    data = encode(turned, quality=95, exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert shown is not None and shown.size == image.size
    return data


#: Edit name -> encoded file bytes of the edited photo.
AUGMENTATIONS: dict[str, Callable[[Image.Image], bytes]] = {
    "original": lambda im: encode(im, "PNG"),
    "crop": lambda im: encode(_crop(im), "PNG"),
    "jpeg_q40": lambda im: encode(im, quality=40),
    "resize_half": lambda im: encode(im.resize((im.width // 2, im.height // 2)), "PNG"),
    "flip": lambda im: encode(ImageOps.mirror(im), "PNG"),
    "rotate_plus5": lambda im: encode(im.rotate(5, resample=Image.Resampling.BILINEAR), "PNG"),
    "rotate_minus5": lambda im: encode(im.rotate(-5, resample=Image.Resampling.BILINEAR), "PNG"),
    "grey": lambda im: encode(im.convert("L"), "PNG"),
    "cmyk": lambda im: encode(im.convert("CMYK"), quality=90),
    "exif_rotated": _exif_rotated,
}


def side_by_side(*images: Image.Image, height: int = 400) -> Image.Image:
    """Several photos pasted in one row at a common height (a group photo)."""
    scaled = [im.resize((round(im.width * height / im.height), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in scaled), height), "white")
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas


def face_grid(face: Image.Image, rows: int, cols: int, tile: int = 160) -> np.ndarray:
    """A ``rows x cols`` grid of one face: a crowd of identical faces (bounded-cost test)."""
    small = face.resize((tile, tile))
    canvas = Image.new("RGB", (cols * tile, rows * tile), "white")
    for r in range(rows):
        for c in range(cols):
            canvas.paste(small, (c * tile, r * tile))
    return np.asarray(canvas)
