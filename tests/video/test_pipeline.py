"""Gated screening finds every flagged shot that checking every frame finds, on time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genguard.decision import Action
from genguard.video import GateConfig, VideoOptions, screen_video, segment_recall
from genguard.video.pipeline import frame_array
from genguard.video.synthetic import PHOTOS, Shot, shot_frames, write_vfr_video, write_video
from tests.video.conftest import BLOCK_LEVEL, CENSOR_LEVEL, FPS, SHOTS, SIZE, fake_guard

pytest.importorskip("av", reason="video screening needs PyAV (genguard[video])")

FRAME = 1 / FPS


def test_sample_photos_never_look_like_the_flagged_grey_levels() -> None:
    """Guards the fixture: otherwise a photo shot could be 'flagged' by the fake detector."""
    flagged = {CENSOR_LEVEL // 10, BLOCK_LEVEL // 10}
    for photo in PHOTOS[:4]:
        for kind in ("static", "pan", "zoom"):
            levels = {int(f.mean()) // 10 for f in shot_frames(Shot(kind, 1, photo), SIZE, 15)}
            assert not levels & flagged, (photo, kind)


def test_gated_run_matches_every_frame_run_with_far_fewer_model_frames(shot_video) -> None:
    path, _ = shot_video
    guard, detector = fake_guard()
    gated = screen_video(guard, path)
    assert gated.complete and gated.frames == round(sum(s.seconds for s in SHOTS) * FPS)
    assert sum(detector.calls) == gated.analysed
    reference = screen_video(guard, path, options=VideoOptions(gate=GateConfig(every_frame=True)))
    assert reference.analysed == reference.frames == gated.frames

    assert [s.action for s in gated.segments] == [
        Action.ALLOW,
        Action.CENSOR,
        Action.ALLOW,
        Action.BLOCK,
        Action.ALLOW,
    ]
    assert segment_recall(reference.segments, gated.segments) == (1.0, 0.0)
    assert np.array_equal(frame_array(gated), frame_array(reference))
    assert gated.analysed < 0.35 * gated.frames
    assert gated.cuts >= 4


def test_segment_times_come_from_shot_boundaries_and_tile_the_video(shot_video) -> None:
    path, bounds = shot_video
    report = screen_video(fake_guard()[0], path)
    censored = next(s for s in report.segments if s.action is Action.CENSOR)
    blocked = next(s for s in report.segments if s.action is Action.BLOCK)
    assert censored.start == pytest.approx(bounds[2][0], abs=1e-3)
    assert censored.end == pytest.approx(bounds[2][1], abs=1e-3)
    assert blocked.start == pytest.approx(bounds[4][0], abs=1e-3)
    assert blocked.end == pytest.approx(bounds[4][1], abs=1e-3)
    assert report.segments[0].start == 0.0
    assert report.segments[-1].end == pytest.approx(bounds[-1][1], abs=1e-3)
    for before, after in zip(report.segments, report.segments[1:], strict=False):
        assert before.end == after.start and before.end_frame + 1 == after.start_frame
    record = censored.to_record(str(path), "pid")
    assert record["categories"]["nudity"] == pytest.approx(0.9)
    assert record["reasons"] and record["regions"][0]["category"] == "nudity"


def test_variable_frame_rate_timestamps_come_from_pts(tmp_path: Path) -> None:
    """Shots at 30, 10 and 60 fps: frame counting at a nominal rate would be wrong here."""
    path = tmp_path / "vfr.mp4"
    bounds = write_vfr_video(
        path,
        [
            (Shot("static", 2.0, "astronaut"), 30),
            (Shot("solid", 1.5, level=CENSOR_LEVEL), 10),
            (Shot("pan", 1.0, "chelsea"), 60),
            (Shot("solid", 0.5, level=BLOCK_LEVEL), 24),
        ],
    )
    report = screen_video(fake_guard()[0], path)
    assert report.complete and report.frames == 60 + 15 + 60 + 12
    flagged = [(s.action, s.start, s.end) for s in report.segments if s.flagged]
    assert [a for a, _, _ in flagged] == [Action.CENSOR, Action.BLOCK]
    assert flagged[0][1:] == pytest.approx(bounds[1], abs=1e-3)
    assert flagged[1][1:] == pytest.approx(bounds[3], abs=1e-3)
    # 15 frames lasting 1.5 s: a timeline counted at any one nominal rate cannot say so
    censored = next(s for s in report.segments if s.action is Action.CENSOR)
    assert censored.frames == 15 and censored.end - censored.start == pytest.approx(1.5)


def test_lowres_decoding_maps_regions_back_to_full_resolution(tmp_path: Path) -> None:
    """A 960x540 MPEG-4 video is decoded at 480x270; boxes are reported at 960x540."""
    path = tmp_path / "large.mp4"
    write_video(path, [Shot("solid", 0.3, level=CENSOR_LEVEL)], size=(960, 540), fps=10)
    report = screen_video(fake_guard()[0], path)
    region = report.segments[0].regions[0][1]
    assert region.box == (200, 120, 240, 200)  # fake box (100, 60, 120, 100) x 2
    full = screen_video(fake_guard()[0], path, options=VideoOptions(lowres=False))
    # full decode: shrunk 960 -> 640 for analysis, so boxes scale by 1.5
    assert full.segments[0].regions[0][1].box == (150, 90, 180, 150)


@pytest.mark.slow
def test_real_models_allow_benign_shots_and_see_only_gated_frames(real_guard, tmp_path) -> None:
    path = tmp_path / "benign.mp4"
    write_video(path, [Shot("static", 1.0, "coffee"), Shot("pan", 1.0, "chelsea")], fps=15)
    report = screen_video(real_guard, path)
    assert report.complete and report.action is Action.ALLOW
    assert 2 <= report.analysed < report.frames == 30
