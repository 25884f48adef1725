"""Generated benign test videos and a Guard whose fake detector flags solid grey shots.

A solid grey shot of level 245 gets a synthetic nudity region (-> censor under
``standard``), one of level 25 a synthetic explicit region (-> block); sample photos
never average to those grey levels (checked in test_pipeline), so they stay allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.decision import Region
from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.video.synthetic import Shot, write_video
from tests.conftest import FakeDetector, nudity_region

CENSOR_LEVEL = 245
BLOCK_LEVEL = 25
SIZE = (320, 240)
FPS = 30.0

SHOTS = (
    Shot("static", 1.5, "astronaut"),
    Shot("pan", 2.0, "coffee"),
    Shot("solid", 1.0, level=CENSOR_LEVEL),
    Shot("zoom", 1.5, "chelsea"),
    Shot("solid", 0.5, level=BLOCK_LEVEL),
    Shot("static", 1.0, "rocket"),
)


def explicit_region() -> Region:
    return Region(
        box=(40, 40, 80, 60),
        label="FEMALE_GENITALIA_EXPOSED",
        category="sexual_explicit",
        score=0.9,
        backend="fake",
    )


def fake_guard() -> tuple[Guard, FakeDetector]:
    detector = FakeDetector(
        {
            CENSOR_LEVEL // 10 * 10: [nudity_region(box=(100, 60, 120, 100))],
            BLOCK_LEVEL // 10 * 10: [explicit_region()],
        }
    )
    return Guard(load_policy("standard"), [detector]), detector


@pytest.fixture
def guard() -> Guard:
    return fake_guard()[0]


@pytest.fixture(scope="session")
def shot_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """A 7.5 s, 30 fps, 320x240 MP4 (OpenCV mp4v) with six shots; returns (path, bounds)."""
    path = tmp_path_factory.mktemp("video") / "shots.mp4"
    bounds = write_video(path, SHOTS, size=SIZE, fps=FPS)
    return path, bounds
