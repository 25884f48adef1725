"""Video screening: per-segment decisions with timestamps, and censored copies.

>>> from genguard import Guard
>>> from genguard.video import screen_video
>>> report = screen_video(Guard.from_policy("standard"), "clip.mp4")
>>> [(s.start, s.end, s.action.value) for s in report.segments]

Frames are decoded with PyAV, a cheap thumbnail gate decides which frames the models
see (cuts, content changes, a periodic refresh), and the others carry the last decision;
see ``docs/video.md``.
"""

from genguard.video.decode import VideoInfo, VideoReader
from genguard.video.gating import Gate, GateConfig, GateReason
from genguard.video.pipeline import VideoOptions, VideoReport, error_record, screen_video
from genguard.video.segments import Segment, segment_recall

__all__ = [
    "Gate",
    "GateConfig",
    "GateReason",
    "Segment",
    "VideoInfo",
    "VideoOptions",
    "VideoReader",
    "VideoReport",
    "error_record",
    "screen_video",
    "segment_recall",
]
