"""Benign synthetic test videos: shots of sample photos (static, pans, zooms) and solid greys.

Tests and benchmarks need videos with known shot boundaries and realistic motion, and
must never contain explicit imagery. Shots are built from scikit-image's bundled sample
photos (astronaut, coffee, chelsea...) or from a solid grey level, which the tests' fake
detector maps to a synthetic signal ("a shot of grey 105 gets a nudity region"), so
flagged segments exist without any explicit pixel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left")
ShotKind = Literal["static", "pan", "zoom", "solid"]


@dataclass(frozen=True)
class Shot:
    """One shot: ``seconds`` long; a photo (static, panning, zooming) or a solid grey."""

    kind: ShotKind
    seconds: float
    photo: str = "astronaut"
    level: int = 128
    #: Solid shots only: a 4-px checkerboard of +-texture grey levels around ``level``
    #: (same mean, so the same fake signal, but censoring visibly flattens it).
    texture: int = 0

    @property
    def flagged_level(self) -> int | None:
        return self.level if self.kind == "solid" else None


@lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data

        rgb = getattr(skimage.data, name)()
    except (ImportError, AttributeError):  # no scikit-image: a smooth benign gradient
        y, x = np.mgrid[0:512, 0:768]
        rgb = np.stack([(x // 3) % 256, (y // 2) % 256, ((x + y) // 5) % 256], axis=2)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3].astype(np.uint8))


def shot_frames(shot: Shot, size: tuple[int, int], count: int) -> Iterator[np.ndarray]:
    """``count`` RGB frames of ``size`` (w, h) for one shot; pans move ~0.5% width/frame."""
    width, height = size
    if shot.kind == "solid":
        frame = np.full((height, width, 3), shot.level, dtype=np.int16)
        if shot.texture:
            y, x = np.mgrid[0:height, 0:width]
            sign = np.where((x // 4 + y // 4) % 2 == 0, 1, -1)
            frame += (sign * shot.texture)[:, :, None].astype(np.int16)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        for _ in range(count):
            yield frame
        return
    # Scale the photo so that a 30% margin is left to pan over.
    photo = _photo(shot.photo)
    scale = max(width * 1.3 / photo.shape[1], height * 1.3 / photo.shape[0])
    big = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    max_x, max_y = big.shape[1] - width, big.shape[0] - height
    for i in range(count):
        t = i / max(1, count - 1)
        if shot.kind == "pan":
            x, y = round(max_x * t), round(max_y * t * 0.3)
            yield np.ascontiguousarray(big[y : y + height, x : x + width])
        elif shot.kind == "zoom":
            crop = 1.0 - 0.25 * t
            cw, ch = round(big.shape[1] * crop), round(big.shape[0] * crop)
            x0, y0 = (big.shape[1] - cw) // 2, (big.shape[0] - ch) // 2
            yield cv2.resize(big[y0 : y0 + ch, x0 : x0 + cw], (width, height))
        else:
            yield np.ascontiguousarray(big[max_y // 2 : max_y // 2 + height, :width])


def write_video(
    path: Path, shots: Sequence[Shot], *, size: tuple[int, int] = (320, 240), fps: float = 30.0
) -> list[tuple[float, float]]:
    """Write a constant-frame-rate MP4 (OpenCV, mp4v); returns each shot's (start, end) s."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    bounds, frame_index = [], 0
    for shot in shots:
        count = max(1, round(shot.seconds * fps))
        bounds.append((frame_index / fps, (frame_index + count) / fps))
        for frame in shot_frames(shot, size, count):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        frame_index += count
    writer.release()
    return bounds


def write_vfr_video(
    path: Path,
    shots: Sequence[tuple[Shot, float]],
    *,
    size: tuple[int, int] = (320, 240),
    codec: str = "mpeg4",
    faststart: bool = False,
) -> list[tuple[float, float]]:
    """Write a variable-frame-rate video with PyAV: each shot has its own frame rate.

    ``shots`` pairs each shot with its frame rate; returns each shot's (start, end) in
    seconds, computed from the timestamps written.
    """
    import av

    time_base = Fraction(1, 30000)
    options = {"movflags": "+faststart"} if faststart else {}
    container = av.open(str(path), mode="w", options=options)
    stream = container.add_stream(codec, rate=30)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    bounds, now = [], 0.0
    for shot, fps in shots:
        count = max(1, round(shot.seconds * fps))
        start = now
        for frame in shot_frames(shot, size, count):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = round(now / time_base), time_base
            video_frame.duration = ticks = round(1 / fps / time_base)
            for packet in stream.encode(video_frame):
                packet.duration = ticks  # else the last frame lasts 1/30 s whatever its rate
                container.mux(packet)
            now += 1.0 / fps
        bounds.append((start, now))
    for packet in stream.encode():
        packet.duration = ticks
        container.mux(packet)
    container.close()
    return bounds


class GreyLevelDetector:
    """A stand-in detector for benchmarks: a frame whose mean grey level falls in one of
    ``levels`` gets a synthetic nudity region; every other frame gets nothing.

    Why: recall of gated screening against every-frame screening must be measured on
    flagged shots, and flagged shots must not need explicit imagery. It costs next to
    nothing, so a run with it also measures the pipeline's own ceiling (decode + gate).
    """

    name = "grey-level"

    def __init__(self, levels: Sequence[int], box: tuple[int, int, int, int] = (8, 8, 64, 64)):
        self.buckets = {level // 10 for level in levels}
        self.box = box
        self.frames_seen = 0

    def detect(self, frames: Sequence[np.ndarray]) -> list:
        from genguard.decision import Region
        from genguard.detectors.base import DetectorOutput

        self.frames_seen += len(frames)
        outputs = []
        for frame in frames:
            flagged = int(frame.mean()) // 10 in self.buckets
            region = Region(self.box, "FEMALE_BREAST_EXPOSED", "nudity", 0.9, self.name)
            outputs.append(DetectorOutput(backend=self.name, regions=[region] if flagged else []))
        return outputs
