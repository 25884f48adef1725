"""Write the censored copy of a video with PyAV, keeping every frame's timestamp.

Why PyAV and not OpenCV's ``VideoWriter``: OpenCV writes a constant frame rate, so a
variable-frame-rate source would drift out of sync with its audio and with the segment
times in the JSONL report. Here each output frame gets the source frame's presentation
time. H.264 (libx264) when the FFmpeg build has it, MPEG-4 part 2 otherwise.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from genguard.errors import ConfigError, ContentError
from genguard.video.decode import _av

#: Output time base: fine enough for any real frame rate (29.97 fps = 1001 ticks), and
#: below MPEG-4 part 2's 65535 limit on the time base denominator.
TIME_BASE = Fraction(1, 30000)
CODECS = ("libx264", "mpeg4")


class VideoWriter:
    """Encodes RGB frames at given times (seconds) into ``path`` (container from suffix)."""

    def __init__(self, path: Path, *, width: int, height: int, rate: float | None) -> None:
        if width <= 0 or height <= 0:
            raise ContentError(f"cannot write a {width}x{height} video", code="corrupt")
        av = _av()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(path), mode="w")
        except Exception as exc:
            raise ConfigError(f"cannot write {path}: {exc}") from exc
        # yuv420p needs even sizes; odd ones are padded by one edge pixel.
        self.width, self.height = width + width % 2, height + height % 2
        self._stream = self._add_stream(rate)
        self._last_pts = -1
        self.frames = 0

    def _add_stream(self, rate: float | None) -> Any:
        available = _av().codecs_available
        codec = next((c for c in CODECS if c in available), None)
        if codec is None:
            raise ConfigError("this FFmpeg build has neither libx264 nor mpeg4 encoders")
        stream = self._container.add_stream(
            codec, rate=Fraction(rate or 30).limit_denominator(1001)
        )
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "20"}
        else:
            stream.codec_context.bit_rate = 4_000_000
        return stream

    def write(self, rgb: np.ndarray, time: float) -> None:
        """Encode one frame shown at ``time`` seconds (times must increase)."""
        av = _av()
        if rgb.shape[1] != self.width or rgb.shape[0] != self.height:
            pad = ((0, self.height - rgb.shape[0]), (0, self.width - rgb.shape[1]), (0, 0))
            rgb = np.pad(rgb, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        pts = max(self._last_pts + 1, round(time / TIME_BASE))
        frame.pts, frame.time_base = pts, TIME_BASE
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container (an unclosed MP4 is unreadable)."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def copy_audio(video_only: Path, source: Path, destination: Path) -> str | None:
    """Mux ``source``'s first audio stream (copied, not re-encoded) with ``video_only``.

    Why a second pass: screening decodes only the video stream, and the censored frames
    are written with a delay (they wait for decisions); copying audio packets afterwards
    keeps the screening loop simple and the audio bit-exact. Returns ``None`` on success,
    or why the audio could not be copied (the video-only file is then kept as is).
    """
    av = _av()
    try:
        with av.open(str(source)) as src, av.open(str(video_only)) as vid:
            if not src.streams.audio:
                return "the source has no audio"
            with av.open(str(destination), mode="w") as out:
                v_in, a_in = vid.streams.video[0], src.streams.audio[0]
                v_out = out.add_stream_from_template(v_in)
                a_out = out.add_stream_from_template(a_in)
                _interleave(out, [(vid.demux(v_in), v_out), (src.demux(a_in), a_out)])
    except Exception as exc:  # an audio codec the container refuses, a broken stream...
        destination.unlink(missing_ok=True)
        return f"audio not copied: {exc}"
    return None


def _interleave(out: Any, inputs: list[tuple[Any, Any]]) -> None:
    """Write packets of several demuxers in timestamp order (what muxers expect)."""
    heads: list[Any] = [_next_packet(packets) for packets, _ in inputs]
    while any(h is not None for h in heads):
        index = min(
            (i for i, h in enumerate(heads) if h is not None),
            key=lambda i: float(heads[i].dts * heads[i].time_base),
        )
        packet = heads[index]
        packet.stream = inputs[index][1]
        out.mux(packet)
        heads[index] = _next_packet(inputs[index][0])


def _next_packet(packets: Any) -> Any:
    """The next packet with a timestamp (skips the empty flush packets demux yields)."""
    for packet in packets:
        if packet.dts is not None and packet.size:
            return packet
    return None
