"""Video decoding with PyAV: container timestamps, cheap luma thumbnails, specific errors.

Why PyAV rather than OpenCV's ``VideoCapture``: screening needs each frame's presentation
timestamp from the container (variable frame rate videos have no fixed frame interval),
direct access to the decoded luma plane (a 32x32 thumbnail costs a strided view, not an
RGB conversion), and the decoder's ``lowres`` option (MPEG-4 part 2, MJPEG and H.263
decoders can skip the high-frequency DCT work and emit half/quarter-size frames).

Every way a file can be unusable becomes a :class:`~genguard.errors.ContentError` with a
code: ``empty_file``, ``not_found``, ``not_a_file``, ``not_a_video``, ``no_video_stream``,
``no_frames``, ``truncated``, ``corrupt``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genguard.content import DEFAULT_MAX_PIXELS
from genguard.errors import ContentError, MissingExtraError

#: Largest frame decoded, as for still images: a tiny file may declare 16000x16000 frames.
MAX_FRAME_PIXELS = DEFAULT_MAX_PIXELS

#: Decoders that honour ffmpeg's ``lowres`` option (decode at 1/2, 1/4, 1/8 size).
LOWRES_DECODERS = frozenset({"mpeg4", "h263", "h263p", "mjpeg", "mpeg1video", "mpeg2video"})
#: Pixel formats whose first plane is 8-bit luma: thumbnails read it without conversion.
LUMA_FORMATS = frozenset(
    {
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv440p",
        "yuvj440p",
        "yuv411p",
        "yuv410p",
        "nv12",
        "nv21",
        "gray",
    }
)
#: A video with more undecodable packets than this is given up as corrupt.
MAX_BAD_PACKETS = 100
#: Side of the grey thumbnails compared by the gate.
THUMB_SIDE = 32


def check_frame_size(info: VideoInfo) -> None:
    """Refuse, from the stream header, frames larger than a still image may be."""
    pixels = info.width * info.height
    if pixels > MAX_FRAME_PIXELS:
        raise ContentError(
            f"{info.path}: frames are {info.width}x{info.height} = {pixels} pixels, above the "
            f"limit of {MAX_FRAME_PIXELS}",
            code="too_many_pixels",
        )


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency of video
        raise MissingExtraError("av", "video", "video screening") from exc
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video stream before decoding."""

    path: str
    width: int
    height: int
    codec: str
    time_base: Fraction
    start: float
    duration: float | None
    frame_count: int | None
    average_rate: float | None
    has_audio: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "duration": self.duration,
            "frame_count": self.frame_count,
            "average_rate": self.average_rate,
            "has_audio": self.has_audio,
        }


@dataclass
class DecodedFrame:
    """One decoded frame: index, presentation time (seconds from the stream's start)."""

    index: int
    time: float
    duration: float | None
    frame: Any  # av.VideoFrame; kept so RGB is only produced for frames that need it
    _rgb: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return int(self.frame.width)

    @property
    def height(self) -> int:
        return int(self.frame.height)

    def rgb(self) -> np.ndarray:
        """The frame as HxWx3 uint8 RGB (converted once, on demand)."""
        if self._rgb is None:
            self._rgb = self.frame.to_ndarray(format="rgb24")
        return self._rgb

    def thumbnail(self, side: int = THUMB_SIDE) -> np.ndarray:
        """A ``side`` x ``side`` float32 grey thumbnail, for change and cut detection.

        Why the luma plane with a strided view: an RGB conversion of a 480p frame costs
        more than decoding it; a strided view of the Y plane followed by a tiny area
        resize costs a few microseconds and keeps the gate from limiting throughput.
        """
        frame = self.frame
        if frame.format.name in LUMA_FORMATS:
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            luma = luma[: frame.height, : frame.width]
        else:
            luma = frame.to_ndarray(format="gray")
        step = max(1, min(luma.shape) // (side * 2))
        small = luma[::step, ::step]
        return cv2.resize(small, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def check_video_path(path: str | os.PathLike[str]) -> Path:
    """Refuse missing, empty and non-regular files with specific errors before ffmpeg sees them."""
    file = Path(path)
    if not file.exists():
        raise ContentError(f"no such file: {file}", code="not_found")
    if file.is_dir():
        raise ContentError(f"{file} is a directory, not a video", code="not_a_file")
    if not file.is_file():  # a FIFO or device would block the decoder forever
        raise ContentError(f"{file} is not a regular file", code="not_a_file")
    if file.stat().st_size == 0:
        raise ContentError(f"{file} is empty (0 bytes)", code="empty_file")
    return file


def content_error(exc: BaseException, *, opening: bool) -> ContentError:
    """Map an FFmpeg/PyAV failure to a ContentError with the most specific code we can."""
    text = str(exc)
    lowered = text.lower()
    if "moov atom not found" in lowered or "end of file" in lowered or "truncat" in lowered:
        code = "truncated"
    elif opening:
        code = "not_a_video"
    else:
        code = "corrupt"
    what = "cannot open video" if opening else "cannot decode video"
    return ContentError(f"{what}: {text or type(exc).__name__}", code=code)


class VideoReader:
    """Opens a video and yields its frames with container timestamps.

    ``lowres`` (0-3) asks decoders that support it for 1/2**lowres-size frames; others
    ignore it, so callers must read frame sizes from the frames, not from ``info``.
    ``lowres=None`` picks the smallest size whose longest side is still ``min_side``.
    ``threads`` is the decoder's thread count (0: ffmpeg's choice, 1: no threading).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lowres: int | None = 0,
        min_side: int = 400,
        threads: int = 0,
    ) -> None:
        self.path = check_video_path(path)
        av = _av()
        try:
            self._container = av.open(str(self.path), mode="r")
        except Exception as exc:
            error = content_error(exc, opening=True)
            if error.code == "not_a_video" and mp4_is_truncated(self.path):
                error = ContentError(
                    f"truncated MP4/MOV: {self.path} ends before its index ('moov' box), so "
                    "no frame can be located; re-download or re-export it",
                    code="truncated",
                )
            raise error from exc
        try:
            self._stream = self._pick_stream()
            self.info = self._read_info()
            check_frame_size(self.info)
            level = choose_lowres(self.info, min_side) if lowres is None else lowres
            self._configure(level, threads)
        except Exception:
            self._container.close()
            raise
        self.frames_decoded = 0
        self.bad_packets = 0
        self.first_bad_time: float | None = None
        self.last_decode_error = ""

    def _pick_stream(self) -> Any:
        streams = list(self._container.streams.video)
        if not streams:
            kinds = sorted({s.type for s in self._container.streams}) or ["none"]
            raise ContentError(
                f"{self.path} has no video stream (streams: {', '.join(kinds)})",
                code="no_video_stream",
            )
        stream = streams[0]
        if stream.codec_context is None or not stream.codec_context.name:
            raise ContentError(f"{self.path}: video codec not supported", code="not_a_video")
        return stream

    def _read_info(self) -> VideoInfo:
        stream = self._stream
        time_base = stream.time_base or Fraction(1, 1_000_000)
        start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        duration = None
        if stream.duration:
            duration = float(stream.duration * time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=str(self.path),
            width=int(stream.codec_context.width or 0),
            height=int(stream.codec_context.height or 0),
            codec=stream.codec_context.name,
            time_base=Fraction(time_base),
            start=start,
            duration=duration,
            frame_count=int(stream.frames) or None,
            average_rate=float(rate) if rate else None,
            has_audio=bool(self._container.streams.audio),
        )

    def _configure(self, lowres: int, threads: int) -> None:
        context = self._stream.codec_context
        if lowres > 0 and self.info.codec in LOWRES_DECODERS:
            context.options = {**dict(context.options or {}), "lowres": str(min(3, lowres))}
        if threads == 1:
            self._stream.thread_type = "NONE"
        else:
            self._stream.thread_type = "AUTO"
            context.thread_count = max(0, threads)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Iterator[DecodedFrame]:
        """Decoded frames in presentation order.

        Times come from each frame's PTS (so variable frame rate is right); a frame with
        no PTS, or one that goes backwards, is placed one nominal interval after the
        previous frame so that times never decrease.

        A packet the decoder rejects is skipped and counted in ``bad_packets`` (the
        decoder resynchronises at the next keyframe, so the rest of the video is still
        screened); a demuxing failure (the file ends or breaks) raises ContentError.
        """
        interval = 1.0 / self.info.average_rate if self.info.average_rate else 1 / 30
        previous: float | None = None
        for frame in self._decoded():
            time = self._frame_time(frame, previous, interval)
            duration = float(frame.duration * frame.time_base) if frame.duration else None
            yield DecodedFrame(self.frames_decoded, time, duration, frame)
            self.frames_decoded += 1
            previous = time

    def _decoded(self) -> Iterator[Any]:
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except Exception as exc:
                raise content_error(exc, opening=False) from exc
            try:
                frames = packet.decode()
            except Exception as exc:
                self._bad_packet(packet, exc)
                continue
            yield from frames

    def _bad_packet(self, packet: Any, exc: Exception) -> None:
        if self.first_bad_time is None and packet.pts is not None and packet.time_base:
            self.first_bad_time = float(packet.pts * packet.time_base) - self.info.start
        self.bad_packets += 1
        self.last_decode_error = str(exc)
        if self.bad_packets > MAX_BAD_PACKETS:
            raise ContentError(
                f"cannot decode video: more than {MAX_BAD_PACKETS} corrupt packets (last: {exc})",
                code="corrupt",
            ) from exc

    def _frame_time(self, frame: Any, previous: float | None, interval: float) -> float:
        if frame.pts is None or frame.time_base is None:
            return 0.0 if previous is None else previous + interval
        time = float(frame.pts * frame.time_base) - self.info.start
        if previous is not None and time <= previous:
            return previous + interval
        return time

    def lowres_scale(self, frame: DecodedFrame) -> float:
        """Full width over decoded width (1.0 unless the decoder honoured ``lowres``)."""
        return self.info.width / frame.width if frame.width and self.info.width else 1.0


def choose_lowres(info: VideoInfo, min_side: int) -> int:
    """The largest lowres level that keeps the longest side at least ``min_side`` pixels."""
    if info.codec not in LOWRES_DECODERS:
        return 0
    longest = max(info.width, info.height)
    level = 0
    while level < 3 and (longest >> (level + 1)) >= min_side:
        level += 1
    return level


def mp4_is_truncated(path: Path) -> bool:
    """True for an ISO-BMFF file (MP4/MOV) cut short: a top-level box runs past the end of
    the file, or there is media data but no ``moov`` index.

    Why: FFmpeg reports both as "invalid data", which would blame the format; an export
    or download that stopped early is the usual cause, and the fix is different.
    """
    size = path.stat().st_size
    seen: set[bytes] = set()
    with path.open("rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            if offset == 0 and kind != b"ftyp":
                return False  # not ISO-BMFF: nothing to say
            if not kind.isalnum():
                break
            seen.add(kind)
            if box_size == 0:  # "extends to the end of the file"
                return b"moov" not in seen
            if box_size < 8 or offset + box_size > size:
                return True
            offset += box_size
    return b"ftyp" in seen and b"moov" not in seen
