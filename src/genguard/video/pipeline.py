"""Screen a video: decode, gate, run the models on changed frames only, build segments.

The loop is single-pass and streaming: frames are decoded in order, the gate picks the
frames the models must see (cuts, content changes, a periodic refresh), those are
batched through :meth:`Guard.check_loaded`, and every other frame carries the decision
of the last analysed frame. Segments are emitted as soon as their decisions are known,
so a crash or a truncated file still leaves every segment before it on disk.

Censoring (``censor_to``) writes every frame: allowed frames unchanged, censored frames
with the carried regions pixelated/blurred, review/block frames replaced by a placeholder.
Frames wait in a bounded buffer until the decision of the frame they carry is known.
"""

from __future__ import annotations

import os
import time as clock
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genguard.content import LoadedImage
from genguard.decision import Action, Decision
from genguard.errors import ContentError
from genguard.guard import Guard
from genguard.video.decode import DecodedFrame, VideoInfo, VideoReader
from genguard.video.gating import Gate, GateConfig, GateReason
from genguard.video.segments import SEGMENT_SCHEMA, Segment, SegmentBuilder, Span, worst_action

#: Decoding below this longest side would starve the detectors (NudeNet sees 320 px).
MIN_ANALYSIS_SIDE = 400
#: Progress callbacks fire every this many frames (a rich update per frame costs more
#: than decoding a 480p frame).
PROGRESS_EVERY = 64


@dataclass(frozen=True)
class VideoOptions:
    """How to screen. Defaults favour throughput with no missed shot."""

    gate: GateConfig = field(default_factory=GateConfig)
    #: Analysed frames per model call.
    batch_size: int = 8
    #: Decoder threads (0: FFmpeg decides; 1: none). ``None``: 1 on machines with 2 cores
    #: or fewer (measured faster there: frame threads cost more than they overlap), else 0.
    decode_threads: int | None = None
    #: Decode at reduced resolution when the codec allows it (never when censoring).
    lowres: bool = True
    #: Censoring holds at most this many decoded frames waiting for a decision.
    max_buffered_frames: int = 48


@dataclass
class VideoReport:
    """Outcome of screening one video: segments, counts, timing, and any error."""

    path: str
    policy_id: str
    info: VideoInfo | None = None
    segments: list[Segment] = field(default_factory=list)
    frames: int = 0
    analysed: int = 0
    cuts: int = 0
    end_time: float = 0.0
    seconds: float = 0.0
    error: ContentError | None = None
    censored_output: str | None = None
    #: Packets the decoder rejected and skipped (the screening went on after them).
    bad_packets: int = 0
    #: Why the source's audio is not in the censored copy (None: copied, or no audio).
    audio_note: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None

    @property
    def action(self) -> Action:
        return worst_action(self.segments)

    @property
    def frames_per_second(self) -> float:
        """Effective throughput: video frames screened per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary_record(self) -> dict[str, Any]:
        return {
            "schema": SEGMENT_SCHEMA,
            "record": "summary",
            "path": self.path,
            "action": self.action.value if self.segments else None,
            "complete": self.complete,
            "segments": len(self.segments),
            "frames": self.frames,
            "analysed_frames": self.analysed,
            "cuts": self.cuts,
            "bad_packets": self.bad_packets,
            "duration": round(self.end_time, 4),
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 1),
            "video": self.info.to_dict() if self.info else None,
            "censored_output": self.censored_output,
            "audio_note": self.audio_note,
            "policy_id": self.policy_id,
            "error": str(self.error) if self.error else None,
            "error_code": self.error.code if self.error else None,
        }


def error_record(path: str, error: ContentError, policy_id: str, at: float | None) -> dict:
    """The JSONL record of a video (or the rest of one) that could not be screened."""
    return {
        "schema": SEGMENT_SCHEMA,
        "record": "error",
        "path": path,
        "action": None,
        "at": None if at is None else round(at, 4),
        "policy_id": policy_id,
        "error": str(error),
        "error_code": error.code,
    }


@dataclass
class _Probe:
    """An analysed frame: its analysis image until the models ran, then its decision."""

    image: LoadedImage | None
    decision: Decision | None = None


@dataclass
class _OpenSpan:
    probe: _Probe
    first: int
    last: int
    start: float
    analysed_time: float


class _Screening:
    """State of one screening pass (see module docstring)."""

    def __init__(
        self,
        guard: Guard,
        reader: VideoReader,
        options: VideoOptions,
        report: VideoReport,
        on_segment: Callable[[Segment], None] | None,
        writer: Any | None,
    ) -> None:
        self.guard = guard
        self.reader = reader
        self.options = options
        self.report = report
        self.gate = Gate(options.gate)
        self.builder = SegmentBuilder(on_segment)
        self.writer = writer
        self._pending: list[_Probe] = []
        self._spans: deque[_OpenSpan] = deque()
        self._buffer: deque[tuple[np.ndarray, float, _Probe]] = deque()
        self._last_time = 0.0
        self._last_interval: float | None = None

    def feed(self, frame: DecodedFrame) -> None:
        """Gate one frame, queue it for analysis or let it carry, and flush when due."""
        reason = self.gate.observe(frame.thumbnail(), frame.time)
        if reason is GateReason.CARRY and self._spans:
            span = self._spans[-1]
            span.last = frame.index
        else:
            probe = _Probe(self._analysis_image(frame))
            self._pending.append(probe)
            self._spans.append(_OpenSpan(probe, frame.index, frame.index, frame.time, frame.time))
        if self.writer is not None:
            self._buffer.append((frame.rgb(), frame.time, self._spans[-1].probe))
        self._track_time(frame)
        if len(self._pending) >= self.options.batch_size or (
            len(self._buffer) >= self.options.max_buffered_frames
        ):
            self.flush()

    def _track_time(self, frame: DecodedFrame) -> None:
        if self.report.frames:
            self._last_interval = frame.time - self._last_time
        self._last_time = frame.time
        self.report.frames += 1
        duration = frame.duration or self._last_interval or self._nominal_interval()
        self.report.end_time = frame.time + duration

    def _nominal_interval(self) -> float:
        rate = self.reader.info.average_rate
        return 1.0 / rate if rate else 1 / 30

    def _analysis_image(self, frame: DecodedFrame) -> LoadedImage:
        """The frame at analysis size, remembering the full size so regions map back."""
        rgb = frame.rgb()
        side = self.guard.analysis_side
        height, width = rgb.shape[:2]
        if side and max(height, width) > side:
            scale = side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        info = self.reader.info
        full = (info.width, info.height) if info.width and info.height else (width, height)
        return LoadedImage(frames=[rgb], source_format="video", original_size=full)

    def flush(self) -> None:
        """Run the models on the pending frames, then release what their decisions settle."""
        if self._pending:
            images = [p.image for p in self._pending if p.image is not None]
            decisions = self.guard.check_loaded(images)
            for probe, decision in zip(self._pending, decisions, strict=True):
                probe.decision = decision
                probe.image = None
            self.report.analysed += len(self._pending)
            self._pending = []
        self._release_spans(final=False)
        self._write_ready()

    def _release_spans(self, *, final: bool) -> None:
        # The newest span stays open (more carried frames may join it) until the end.
        while self._spans and (final or len(self._spans) > 1):
            span = self._spans[0]
            if span.probe.decision is None:
                return
            self._spans.popleft()
            self.builder.add(
                Span(span.probe.decision, span.first, span.last, span.start, span.analysed_time)
            )

    def _write_ready(self) -> None:
        if self.writer is None:
            return
        while self._buffer and self._buffer[0][2].decision is not None:
            rgb, time, probe = self._buffer.popleft()
            assert probe.decision is not None
            pixels = self.guard.apply(LoadedImage(frames=[rgb]), probe.decision)
            self.writer.write(pixels, time)

    def finish(self) -> None:
        """Flush everything and close the last segment at the end of the last frame."""
        self.flush()
        self._release_spans(final=True)
        self._write_ready()
        self.report.segments = self.builder.finish(self.report.end_time)
        self.report.cuts = self.gate.cuts


def screen_video(
    guard: Guard,
    path: str | os.PathLike[str],
    *,
    options: VideoOptions | None = None,
    on_segment: Callable[[Segment], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    censor_to: str | os.PathLike[str] | None = None,
) -> VideoReport:
    """Screen ``path`` with ``guard``; returns the report (segments in time order).

    Raises :class:`ContentError` when the file cannot be opened at all (``empty_file``,
    ``not_a_video``, ``no_video_stream``, ``truncated``...). A failure *during* decoding
    does not raise: the segments decoded so far are kept (and already passed to
    ``on_segment``) and ``report.error`` says what happened and where.
    """
    options = options or VideoOptions()
    started = clock.perf_counter()
    report = VideoReport(path=str(path), policy_id=guard.policy_id)
    lowres = None if options.lowres and censor_to is None else 0
    threads = options.decode_threads
    if threads is None:
        threads = 1 if (os.cpu_count() or 1) <= 2 else 0
    with VideoReader(path, lowres=lowres, min_side=MIN_ANALYSIS_SIDE, threads=threads) as reader:
        report.info = reader.info
        writer = _open_writer(censor_to, reader.info)
        screening = _Screening(guard, reader, options, report, on_segment, writer)
        try:
            _decode_all(reader, screening, report, on_progress)
        finally:
            screening.finish()
            if writer is not None:
                writer.close()
                report.censored_output = str(censor_to)
                if reader.info.has_audio:
                    report.audio_note = _add_audio(Path(path), Path(str(censor_to)))
        report.bad_packets = reader.bad_packets
        # A file cut short usually also ends in a half packet: "truncated" says more.
        if report.error is None:
            report.error = _completeness_error(report)
        if report.error is None and reader.bad_packets:
            report.error = _bad_packets_error(reader)
    report.seconds = clock.perf_counter() - started
    return report


def _decode_all(
    reader: VideoReader,
    screening: _Screening,
    report: VideoReport,
    on_progress: Callable[[int], None] | None,
) -> None:
    try:
        for frame in reader.frames():
            screening.feed(frame)
            if on_progress is not None and report.frames % PROGRESS_EVERY == 0:
                on_progress(PROGRESS_EVERY)
    except ContentError as exc:
        report.error = ContentError(
            f"{exc} (after {report.frames} frames, at {report.end_time:.3f} s)", code=exc.code
        )
    if on_progress is not None:
        on_progress(report.frames % PROGRESS_EVERY)
    if report.frames == 0 and report.error is None:
        raise ContentError(f"{report.path}: the video stream has no frames", code="no_frames")


def _bad_packets_error(reader: VideoReader) -> ContentError:
    return ContentError(
        f"{reader.bad_packets} corrupt packet(s) skipped, the first at "
        f"{reader.first_bad_time or 0.0:.3f} s ({reader.last_decode_error}); the frames "
        "around them carry the last decision",
        code="corrupt",
    )


def _completeness_error(report: VideoReport) -> ContentError | None:
    """A decoder that stops early without an error still leaves a short timeline: say so.

    The timeline ending before the container's declared duration means truncation. A
    frame count below the index's is truncation only when no packet was rejected (a
    corrupt packet in the middle also costs frames, but the timeline still reaches the
    end).
    """
    info = report.info
    if info is None:
        return None
    interval = 1 / info.average_rate if info.average_rate else 1 / 30
    if info.duration and info.duration - report.end_time > max(0.5, 3 * interval):
        return ContentError(
            f"truncated video: decoded up to {report.end_time:.3f} s of {info.duration:.3f} s",
            code="truncated",
        )
    if not report.bad_packets and info.frame_count and report.frames < info.frame_count - 2:
        return ContentError(
            f"truncated video: decoded {report.frames} of {info.frame_count} frames "
            f"(up to {report.end_time:.3f} s)",
            code="truncated",
        )
    return None


def _add_audio(source: Path, censored: Path) -> str | None:
    """Re-mux the source's audio into the censored copy (video first written alone)."""
    from genguard.video.writer import copy_audio

    video_only = censored.with_name(censored.stem + ".video-only" + censored.suffix)
    censored.replace(video_only)
    note = copy_audio(video_only, source, censored)
    if note is None:
        video_only.unlink()
    else:
        video_only.replace(censored)
    return note


def _open_writer(censor_to: str | os.PathLike[str] | None, info: VideoInfo) -> Any | None:
    if censor_to is None:
        return None
    from genguard.video.writer import VideoWriter

    return VideoWriter(
        Path(censor_to), width=info.width, height=info.height, rate=info.average_rate
    )


def frame_array(report: VideoReport) -> np.ndarray:
    """Per-frame action severities (0 allow .. 3 block): handy to compare two runs."""
    severities = np.zeros(report.frames, dtype=np.int8)
    for segment in report.segments:
        severities[segment.start_frame : segment.end_frame + 1] = segment.action.severity
    return severities
