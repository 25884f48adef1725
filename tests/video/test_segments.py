"""Spans merge into segments by action; recall compares a gated run with a reference."""

from __future__ import annotations

from genguard.decision import Action, Decision
from genguard.video.segments import Segment, SegmentBuilder, Span, segment_recall


def decision(action: Action, nudity: float = 0.0, reason: str | None = None) -> Decision:
    return Decision(
        action=action,
        categories={"nudity": nudity},
        policy_id="p",
        reasons=[reason] if reason else [],
    )


def test_spans_with_the_same_action_merge_and_scores_take_the_maximum() -> None:
    closed: list[Segment] = []
    builder = SegmentBuilder(closed.append)
    builder.add(Span(decision(Action.ALLOW, 0.1), 0, 9, 0.0, 0.0))
    builder.add(Span(decision(Action.ALLOW, 0.3), 10, 19, 1.0, 1.0))
    assert closed == []  # still open: a later span may extend it
    builder.add(Span(decision(Action.CENSOR, 0.9, "r1"), 20, 24, 2.0, 2.0))
    assert [s.action for s in closed] == [Action.ALLOW]
    builder.add(Span(decision(Action.CENSOR, 0.7, "r2"), 25, 29, 2.5, 2.5))
    segments = builder.finish(3.0)
    assert [(s.start, s.end, s.start_frame, s.end_frame) for s in segments] == [
        (0.0, 2.0, 0, 19),
        (2.0, 3.0, 20, 29),
    ]
    assert segments[0].categories["nudity"] == 0.3
    assert segments[1].categories["nudity"] == 0.9
    assert segments[1].reasons == ["r1", "r2"]
    assert segments[1].analysed_frames == 2 and segments[1].frames == 10


def segment(action: Action, start: float, end: float) -> Segment:
    return Segment(0, action, start, end, int(start * 10), int(end * 10) - 1)


def test_recall_counts_flagged_reference_segments_found_with_the_same_action() -> None:
    reference = [
        segment(Action.ALLOW, 0, 1),
        segment(Action.CENSOR, 1, 2),
        segment(Action.ALLOW, 2, 3),
        segment(Action.BLOCK, 3, 4),
    ]
    late = [
        segment(Action.ALLOW, 0, 1.5),
        segment(Action.CENSOR, 1.5, 2),
        segment(Action.ALLOW, 2, 4),
    ]
    recall, delay = segment_recall(reference, late)
    assert recall == 0.5
    assert delay == 0.5
    assert segment_recall(reference, reference) == (1.0, 0.0)
    assert segment_recall([segment(Action.ALLOW, 0, 1)], []) == (1.0, 0.0)
