"""Safe loading and validation of images.

Everything that reaches a detector passes through :func:`load_image`, so the rules for
hostile input live in one place: a size check *before* pixels are decoded (decompression
bombs), specific errors for empty, truncated and non-image files, EXIF orientation applied,
every mode (16-bit, CMYK, palette, alpha, greyscale) turned into 8-bit RGB, and animated
images expanded into frames (up to a limit) so that the worst frame can decide.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genguard.cancel import checkpoint
from genguard.errors import ContentError

#: Default refusal limit: 64 megapixels is larger than any generator output or camera photo
#: a service normally receives, and small enough that decoding stays under ~200 MB of RAM.
DEFAULT_MAX_PIXELS = 64_000_000
#: Default number of frames examined in an animated image (evenly spaced over the animation).
DEFAULT_MAX_FRAMES = 16
#: Default largest file read into memory.
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
#: Default decode budget: canvas pixels decoded in all, over every frame that must be
#: decoded. Animated GIF/PNG/WebP frames are composited in order, so reaching the last
#: frame decodes every frame before it: a 23 KB GIF of 1,000 frames at 8000x8000 asks for
#: 64 billion pixels (minutes of CPU) while each frame alone passes ``max_pixels``. 320 MP
#: (five full 64 MP images, or 1,200 frames at 512x512) decodes in a few seconds.
DEFAULT_MAX_DECODE_PIXELS = 320_000_000
#: Formats whose frames can only be reached by decoding every earlier frame.
SEQUENTIAL_FORMATS = frozenset({"GIF", "PNG", "WEBP", "FLI", "APNG"})

# Pillow's process-wide settings are left alone (an application embedding genguard keeps
# its own). Our pixel limit is checked from the header with a clear error; above twice
# Pillow's own limit (~179 MP by default) Pillow refuses first, and that refusal becomes
# the same too_many_pixels error (raise PIL.Image.MAX_IMAGE_PIXELS to go beyond).

ImageSource = str | os.PathLike[str] | bytes | bytearray | BinaryIO | Image.Image | np.ndarray


@dataclass(frozen=True)
class LoadLimits:
    """Limits applied while loading; the policy's ``[image]`` table can change them."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Pixels decoded in all (frames x canvas), checked from the header before decoding.
    max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
    #: Decode only as many pixels as detectors need: frames are shrunk so that their
    #: longest side is at most this (JPEGs are decoded at reduced scale directly, which is
    #: 3x faster). ``None`` keeps full resolution (needed to censor and save).
    analysis_side: int | None = None


@dataclass
class LoadedImage:
    """A decoded, validated image: one or more RGB frames plus what we learned loading it."""

    frames: list[np.ndarray]
    source_format: str | None = None
    source_mode: str | None = None
    sha256: str | None = None
    name: str | None = None
    n_frames_total: int = 1
    notes: list[str] = field(default_factory=list)
    #: (width, height) of the full-resolution image when frames were shrunk for analysis.
    original_size: tuple[int, int] | None = None

    @property
    def rgb(self) -> np.ndarray:
        """The first (or only) frame, HxWx3 uint8."""
        return self.frames[0]

    @property
    def width(self) -> int:
        return int(self.frames[0].shape[1])

    @property
    def height(self) -> int:
        return int(self.frames[0].shape[0])

    @property
    def is_animated(self) -> bool:
        return len(self.frames) > 1

    @property
    def full_size(self) -> tuple[int, int]:
        """(width, height) of the image as decoded at full resolution."""
        return self.original_size or (self.width, self.height)

    @property
    def is_reduced(self) -> bool:
        return self.full_size != (self.width, self.height)


def read_source_bytes(source: ImageSource, limits: LoadLimits) -> tuple[bytes, str | None]:
    """Read raw bytes from a path, bytes or file object, with specific errors."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), None
    if isinstance(source, str | os.PathLike):
        return _read_path(Path(source), limits), str(source)
    if hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise ContentError("file object must be opened in binary mode", code="wrong_type")
        return _check_size(bytes(data), limits), getattr(source, "name", None)
    raise ContentError(
        f"cannot load an image from {type(source).__name__}: pass a path, bytes, a binary file, "
        "a PIL image or a HxWx3 uint8 array",
        code="wrong_type",
    )


def _read_path(path: Path, limits: LoadLimits) -> bytes:
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ContentError(f"{path} is a directory, not an image", code="not_a_file")
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or device would block the reader forever: refuse before opening.
            raise ContentError(f"{path} is not a regular file", code="not_a_file")
        size = info.st_size
        if size > limits.max_bytes:
            raise ContentError(
                f"file is {size} bytes, above the {limits.max_bytes}-byte limit", code="too_large"
            )
        return _check_size(path.read_bytes(), limits)
    except ContentError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ContentError(f"symlink loop at {path}", code="symlink_loop") from exc
        if exc.errno == errno.ENOENT:
            raise ContentError(f"no such file: {path}", code="not_found") from exc
        if exc.errno == errno.EACCES:
            raise ContentError(f"permission denied: {path}", code="unreadable") from exc
        raise ContentError(f"cannot read {path}: {exc.strerror or exc}", code="unreadable") from exc


def _check_size(data: bytes, limits: LoadLimits) -> bytes:
    if not data:
        raise ContentError("empty file (0 bytes)", code="empty_file")
    if len(data) > limits.max_bytes:
        raise ContentError(f"data is above the {limits.max_bytes}-byte limit", code="too_large")
    return data


def load_image(source: ImageSource, limits: LoadLimits | None = None) -> LoadedImage:
    """Decode ``source`` into validated RGB frames or raise :class:`ContentError`.

    Error codes: ``empty_file``, ``not_an_image``, ``truncated``, ``too_many_pixels``,
    ``too_large``, ``not_found``, ``unreadable``, ``symlink_loop``, ``not_a_file``,
    ``wrong_type``, ``corrupt``.
    """
    limits = limits or LoadLimits()
    if isinstance(source, np.ndarray):
        return LoadedImage(frames=[_array_to_rgb(source, limits)], source_format="ndarray")
    if isinstance(source, Image.Image):
        _check_pixels(source.size, limits)
        return LoadedImage(
            frames=[_to_rgb(source)], source_format=source.format, source_mode=source.mode
        )
    data, name = read_source_bytes(source, limits)
    loaded = decode_bytes(data, limits)
    loaded.name = name
    return loaded


def decode_bytes(data: bytes, limits: LoadLimits | None = None) -> LoadedImage:
    """Decode encoded image bytes (PNG, JPEG, WebP, GIF, TIFF, BMP...) into RGB frames."""
    limits = limits or LoadLimits()
    _check_size(data, limits)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.size, limits)
            canvas = _check_decode_budget(img, limits)
            with decode_memory().hold(canvas):
                frames, total, original_size = _decode_frames(img, limits)
    except ContentError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refused before telling us the size: report its pixel count our way.
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        count = pixels.group(1) if pixels else "too many"
        raise ContentError(
            f"image is {count} pixels, above the limit of {limits.max_pixels} (and of "
            "Pillow's own bomb check)",
            code="too_many_pixels",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ContentError(
            "not an image (unrecognised format); check the file is not mislabelled",
            code="not_an_image",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        code = "truncated" if "truncated" in text or isinstance(exc, EOFError) else "corrupt"
        raise ContentError(f"cannot decode image: {text or type(exc).__name__}", code=code) from exc
    return LoadedImage(
        frames=frames,
        source_format=img.format,
        source_mode=img.mode,
        sha256=digest,
        n_frames_total=total,
        original_size=original_size,
    )


def _check_pixels(size: tuple[int, int], limits: LoadLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ContentError(f"image has no pixels ({width}x{height})", code="corrupt")
    if width * height > limits.max_pixels:
        raise ContentError(
            f"image is {width}x{height} = {width * height} pixels, above the limit of "
            f"{limits.max_pixels} (raise image.max_pixels in the policy to accept it)",
            code="too_many_pixels",
        )


def frames_to_decode(img: Image.Image, max_frames: int) -> tuple[int, int]:
    """(frames in the file, frames that sampling ``max_frames`` of them must decode).

    Counting frames reads only the headers (milliseconds even for 1,000 frames).
    """
    total = int(getattr(img, "n_frames", 1) or 1)
    if total <= 1:
        return total, 1
    indices = _frame_indices(total, max_frames)
    if (img.format or "").upper() in SEQUENTIAL_FORMATS:
        return total, indices[-1] + 1
    return total, len(indices)


def _check_decode_budget(img: Image.Image, limits: LoadLimits) -> int:
    """Refuse, from the header, images whose frames would cost more than the budget.

    Returns the canvas size in pixels: what one decode holds in memory at a time.
    """
    total, decoded = frames_to_decode(img, limits.max_frames)
    width, height = img.size
    cost = decoded * width * height
    if cost > limits.max_decode_pixels:
        raise ContentError(
            f"{total} frames of {width}x{height}: decoding them costs {cost:,} pixels, above "
            f"the decode budget of {limits.max_decode_pixels:,}",
            code="too_many_pixels",
        )
    return width * height


class DecodeMemory:
    """A process-wide bound on canvas pixels being decoded at once (memory, not CPU).

    Why: one 64 MP PNG needs ~1 GB while it decodes (Pillow's buffer, the RGB array and
    the converted copies); eight workers decoding such images at once would need 8 GB.
    Decodes wait here until their canvas fits under ``pixels``; one image larger than
    the whole bound waits until it decodes alone. Waiting honours cancellation, so a
    request that timed out leaves the line. ``pixels = 0`` means no bound (the default
    for the library and the CLI; the gateway sets one from ``server.decode_pixels``).
    """

    def __init__(self, pixels: int = 0) -> None:
        self.pixels = max(0, pixels)
        self._in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if not self.pixels:
            yield
            return
        need = min(pixels, self.pixels)
        with self._cond:
            while self._in_use and self._in_use + need > self.pixels:
                self._cond.wait(timeout=0.05)
                checkpoint()
            self._in_use += need
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= need
                self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self._in_use


_decode_memory = DecodeMemory()


def decode_memory() -> DecodeMemory:
    """The process-wide :class:`DecodeMemory` (unbounded until configured)."""
    return _decode_memory


def bound_decode_memory(pixels: int) -> DecodeMemory:
    """Bound the canvas pixels decoded at once in this process (0: no bound)."""
    global _decode_memory
    _decode_memory = DecodeMemory(pixels)
    return _decode_memory


def _decode_frames(
    img: Image.Image, limits: LoadLimits
) -> tuple[list[np.ndarray], int, tuple[int, int]]:
    """Decode (sampled) frames; returns them, the frame count and the full upright size."""
    total = int(getattr(img, "n_frames", 1) or 1)
    side = limits.analysis_side
    full_size = img.size
    if total <= 1:
        if side and img.format == "JPEG":
            img.draft("RGB", (side, side))  # DCT-domain downscale: decode fewer pixels
        img.load()
        decoded = img.size
        upright = ImageOps.exif_transpose(img) or img
        if upright.size != decoded:  # EXIF orientations 5-8 swap width and height
            full_size = (full_size[1], full_size[0])
        return [_shrink(_to_rgb(upright), side)], 1, full_size
    frames = []
    for index in _frame_indices(total, limits.max_frames):
        checkpoint()  # a timed-out request stops here, not after every frame
        img.seek(index)
        img.load()
        frames.append(_shrink(_to_rgb(img), side))
    return frames, total, full_size


def _shrink(rgb: np.ndarray, side: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    if not side or max(height, width) <= side:
        return rgb
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _frame_indices(total: int, max_frames: int) -> list[int]:
    """Evenly spaced frame indices, always including the first and the last."""
    if total <= max_frames:
        return list(range(total))
    if max_frames <= 1:
        return [0]
    return sorted({round(i * (total - 1) / (max_frames - 1)) for i in range(max_frames)})


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        grey = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255)
        return np.ascontiguousarray(np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2))
    if (mode == "P" and "transparency" in img.info) or mode in ("LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, limits: LoadLimits) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ContentError(
            f"array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}", code="wrong_type"
        )
    _check_pixels((arr.shape[1], arr.shape[0]), limits)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 4:
        return _to_rgb(Image.fromarray(arr, "RGBA"))
    return np.ascontiguousarray(arr)


def save_like(
    image: np.ndarray, destination: str | os.PathLike[str], source_format: str | None
) -> None:
    """Save an RGB array keeping the source's format when the destination does not say.

    Why: censoring and blocking must keep size *and* format, so a pipeline that expects a
    JPEG keeps getting a JPEG.
    """
    dest = Path(destination)
    fmt = Image.registered_extensions().get(dest.suffix.lower()) or source_format or "PNG"
    pil = Image.fromarray(image)
    params: dict[str, object] = {}
    if fmt == "JPEG":
        params["quality"] = 92
    if fmt == "GIF":
        pil = pil.convert("P", palette=Image.Palette.ADAPTIVE)
    pil.save(dest, format=fmt, **params)
