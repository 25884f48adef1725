"""Segments: runs of consecutive frames that get the same action, with start/end times.

A video's verdict is not one action but a timeline: "allow 0-12.4 s, censor 12.4-15.0 s,
allow after". The pipeline hands this module *spans* (consecutive frames that share one
analysed frame's Decision); spans with the same action merge into one segment, whose
scores are the maximum over its analysed frames (the worst frame decides, as for
animated images). A segment's end is the start of the next segment, or the end of the
last frame, so segments tile the decoded timeline without gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genguard.decision import Action, Decision, Region

SEGMENT_SCHEMA = "genguard.video/1"
#: Regions listed per segment in records (evidence, not a full track; keeps JSONL small).
MAX_SEGMENT_REGIONS = 20


@dataclass
class Span:
    """Consecutive frames ``first..last`` that carry the decision of one analysed frame."""

    decision: Decision
    first: int
    last: int
    start: float
    analysed_time: float


@dataclass
class Segment:
    """Frames ``start_frame..end_frame`` (inclusive), ``start`` to ``end`` seconds, one action."""

    index: int
    action: Action
    start: float
    end: float
    start_frame: int
    end_frame: int
    analysed_frames: int = 0
    categories: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    regions: list[tuple[float, Region]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    @property
    def flagged(self) -> bool:
        return self.action is not Action.ALLOW

    def absorb(self, span: Span) -> None:
        """Extend this segment by a span of the same action."""
        self.end_frame = span.last
        self.analysed_frames += 1
        for category, score in span.decision.categories.items():
            self.categories[category] = max(self.categories.get(category, 0.0), score)
        for reason in span.decision.reasons:
            if reason not in self.reasons:
                self.reasons.append(reason)
        room = MAX_SEGMENT_REGIONS - len(self.regions)
        self.regions.extend((span.analysed_time, r) for r in span.decision.regions[:room])

    def to_record(self, path: str, policy_id: str) -> dict[str, Any]:
        return {
            "schema": SEGMENT_SCHEMA,
            "record": "segment",
            "path": path,
            "segment": self.index,
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "frames": self.frames,
            "analysed_frames": self.analysed_frames,
            "action": self.action.value,
            "categories": {k: round(v, 4) for k, v in sorted(self.categories.items())},
            "reasons": list(self.reasons),
            "regions": [{"time": round(t, 4), **r.to_dict()} for t, r in self.regions],
            "policy_id": policy_id,
            "error": None,
            "error_code": None,
        }


class SegmentBuilder:
    """Merges spans (in frame order) into segments; calls ``on_segment`` as each closes."""

    def __init__(self, on_segment: Callable[[Segment], None] | None = None) -> None:
        self.segments: list[Segment] = []
        self._open: Segment | None = None
        self._on_segment = on_segment

    def add(self, span: Span) -> None:
        current = self._open
        if current is not None and current.action is span.decision.action:
            current.absorb(span)
            return
        if current is not None:
            current.end = span.start
            self._close(current)
        segment = Segment(
            index=len(self.segments),
            action=span.decision.action,
            start=span.start,
            end=span.start,
            start_frame=span.first,
            end_frame=span.first,
        )
        segment.absorb(span)
        self._open = segment

    def finish(self, end: float) -> list[Segment]:
        """Close the last segment at ``end`` seconds; returns all segments."""
        if self._open is not None:
            self._open.end = max(end, self._open.start)
            self._close(self._open)
            self._open = None
        return self.segments

    def _close(self, segment: Segment) -> None:
        self.segments.append(segment)
        if self._on_segment is not None:
            self._on_segment(segment)


def worst_action(segments: Iterable[Segment]) -> Action:
    return Action.worst(*(s.action for s in segments))


def segment_recall(
    reference: Sequence[Segment], candidate: Sequence[Segment]
) -> tuple[float, float]:
    """(recall, worst start delay in seconds) of ``candidate`` against ``reference``.

    A flagged reference segment is found when a candidate segment with the same action
    overlaps it in time. The delay is how late the matching candidate starts (0 when it
    starts on time or earlier), the latency a reviewer would see. Recall is 1.0 when the
    reference has no flagged segment.
    """
    flagged = [s for s in reference if s.flagged]
    if not flagged:
        return 1.0, 0.0
    found = 0
    worst_delay = 0.0
    for ref in flagged:
        matches = [
            c
            for c in candidate
            if c.action is ref.action and c.start < ref.end and c.end > ref.start
        ]
        if matches:
            found += 1
            worst_delay = max(worst_delay, max(0.0, min(c.start for c in matches) - ref.start))
    return found / len(flagged), worst_delay
