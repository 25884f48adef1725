"""One publish step: the Guard censors what the verdict censored and marks shown images."""

from __future__ import annotations

import numpy as np
import pytest

from genguard.actions.publish import WatermarkSettings
from genguard.content import load_image
from genguard.decision import Action, Decision, Region
from genguard.guard import Guard
from genguard.policy import load_policy
from tests.conftest import FakeDetector, nudity_region

pytest.importorskip("genguard.provenance.watermark")


def noisy(seed: int = 0, size: tuple[int, int] = (256, 320)) -> np.ndarray:
    """Mid-grey noise (mean ~100, so FakeDetector's level-100 plan applies)."""
    rng = np.random.default_rng(seed)
    return rng.integers(96, 106, size=(*size, 3), dtype=np.uint8)


def face_region(box=(200, 150, 60, 60)) -> Region:
    return Region(box=box, label="FACE_FEMALE", category="face", score=0.9, backend="fake")


def guard_with(regions: list[Region], watermark: WatermarkSettings | None = None) -> Guard:
    detector = FakeDetector(regions_by_level={100: regions})
    return Guard(load_policy("standard"), [detector], watermark=watermark)


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero((before != after).any(axis=2))
    if rows.size == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def test_the_decision_says_what_the_verdict_censored() -> None:
    guard = guard_with([nudity_region(), face_region()])
    decision = guard.check_image(load_image(noisy()))
    assert decision.action is Action.CENSOR
    assert decision.censored == ["nudity"]
    assert Decision.from_dict(decision.to_dict()).censored == ["nudity"]
    allowed = guard_with([face_region()]).check_image(load_image(noisy()))
    assert allowed.action is Action.ALLOW and allowed.censored == []


def test_publish_censors_only_the_censored_categories_regions() -> None:
    image = load_image(noisy())
    guard = guard_with([nudity_region(box=(20, 30, 60, 50)), face_region()])
    decision = guard.check_image(image)
    published = guard.publish(image, decision)
    box = changed_box(image.rgb, published.pixels)
    assert box is not None
    x0, y0, x1, y1 = box
    assert x0 >= 10 and y0 >= 20  # grown by the 10% margin only
    assert x1 < 100 and y1 < 100  # the nudity box (plus margin), never the face at x>=200
    assert published.shown and published.watermarked is False


def test_a_censor_decision_without_categories_fails_closed() -> None:
    """A hand-built or old-format censor Decision censors every region rather than none."""
    image = load_image(noisy())
    region = nudity_region(box=(40, 40, 50, 50))
    decision = Decision(Action.CENSOR, {"nudity": 0.9}, "p", regions=[region])
    published = guard_with([]).publish(image, decision)
    assert changed_box(image.rgb, published.pixels) is not None


def test_shown_images_are_marked_unless_the_caller_did_not_make_them() -> None:
    from genguard.provenance.watermark import detect_watermark

    settings = WatermarkSettings(payload=0x0BADCAFE)
    guard = guard_with([nudity_region()], watermark=settings)
    image = load_image(noisy())
    decision = guard.check_image(image)
    marked = guard.publish(image, decision)
    assert marked.watermarked and detect_watermark(marked.pixels).payload == 0x0BADCAFE
    assert "watermark embedded: payload 0x0badcafe" in decision.notes
    uploaded = guard.publish(image, guard.check_image(image), mark=False)
    assert uploaded.watermarked is False and not detect_watermark(uploaded.pixels).found
    blocked = Decision(Action.BLOCK, {}, "p")
    placeholder = guard.publish(image, blocked)
    assert not placeholder.shown and placeholder.watermarked is False
    assert placeholder.pixels.shape == image.rgb.shape


def test_too_small_to_mark_is_a_note_not_a_failure() -> None:
    guard = guard_with([], watermark=WatermarkSettings(payload=1))
    small = load_image(noisy(size=(64, 64)))
    decision = guard.check_image(small)
    published = guard.publish(small, decision)
    assert published.watermarked is False and published.note.startswith("not watermarked")
    assert np.array_equal(published.pixels, small.rgb)


def test_text_payloads_hash_like_the_gateway_config() -> None:
    from genguard.provenance.watermark import text_payload

    assert WatermarkSettings.from_payload("acme-images").payload == text_payload("acme-images")
    assert WatermarkSettings.from_payload(7, key=3).key == 3


def test_publishing_many_frames_under_one_decision_notes_the_mark_once() -> None:
    guard = guard_with([], watermark=WatermarkSettings(payload=5))
    image = load_image(noisy())
    decision = guard.check_image(image)
    for _ in range(3):  # e.g. the frames of a video segment
        assert guard.publish(image, decision).watermarked
    assert decision.notes.count("watermark embedded: payload 0x00000005") == 1


def test_a_small_image_whose_mark_does_not_read_back_is_not_called_watermarked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under 512 px the mark is read back once; a miss is a note, never a false claim."""
    import genguard.provenance.watermark as wm

    guard = guard_with([], watermark=WatermarkSettings(payload=7))
    small = load_image(noisy(size=(300, 300)))
    good = guard.publish(small, guard.check_image(small))
    assert good.watermarked and wm.detect_watermark(good.pixels).payload == 7

    def never_found(*_args: object, **_kwargs: object) -> wm.WatermarkResult:
        return wm.WatermarkResult(False, None, 0.0, reason="payload failed error check")

    monkeypatch.setattr(wm, "detect_watermark", never_found)
    decision = guard.check_image(small)
    missed = guard.publish(small, decision)
    assert missed.watermarked is False
    assert "does not read back on this 300x300 image" in (missed.note or "")
    assert any("does not read back" in note for note in decision.notes)
    large = load_image(noisy(size=(640, 512)))  # not re-read: claimed as embedded
    assert guard.publish(large, guard.check_image(large)).watermarked
