"""Unusable videos give specific ContentError codes; broken ones keep their segments."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import cv2
import pytest

from genguard.decision import Action
from genguard.errors import ContentError
from genguard.video import screen_video
from genguard.video.decode import mp4_is_truncated
from genguard.video.synthetic import Shot, write_vfr_video, write_video
from tests.video.conftest import CENSOR_LEVEL, fake_guard

pytest.importorskip("av", reason="video screening needs PyAV (genguard[video])")

THREE_SHOTS = [
    (Shot("static", 1.0, "astronaut"), 30),
    (Shot("solid", 1.0, level=CENSOR_LEVEL), 30),
    (Shot("static", 1.0, "coffee"), 30),
]


def code_of(path: Path) -> str:
    with pytest.raises(ContentError) as info:
        screen_video(fake_guard()[0], path)
    return info.value.code


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert code_of(path) == "empty_file"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert code_of(tmp_path / "nope.mp4") == "not_found"
    assert code_of(tmp_path) == "not_a_file"
    fifo = tmp_path / "live.mp4"
    os.mkfifo(fifo)
    assert code_of(fifo) == "not_a_file"  # refused before the decoder could block on it


def test_text_file_named_mp4_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    assert code_of(path) == "not_a_video"
    assert not mp4_is_truncated(path)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "voice.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\x00\x01" * 8000)
    with pytest.raises(ContentError, match="streams: audio") as info:
        screen_video(fake_guard()[0], path)
    assert info.value.code == "no_video_stream"


def test_empty_container_has_no_video_stream(tmp_path: Path) -> None:
    """OpenCV's writer released before any frame leaves an MP4 with no track at all."""
    path = tmp_path / "nothing.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 64))
    writer.release()
    assert path.stat().st_size > 0
    assert code_of(path) == "no_video_stream"


def test_mp4_cut_before_its_index_is_truncated(tmp_path: Path) -> None:
    """OpenCV writes the 'moov' index last: half a file has data but no index."""
    full = tmp_path / "full.mp4"
    write_video(full, [Shot("static", 1.0)])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert mp4_is_truncated(cut) and not mp4_is_truncated(full)
    assert code_of(cut) == "truncated"


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_truncated_stream_keeps_the_segments_before_the_cut(tmp_path: Path, suffix: str) -> None:
    """Index first (MKV, faststart MP4): frames up to the cut are screened and reported."""
    full = tmp_path / f"full{suffix}"
    write_vfr_video(full, THREE_SHOTS, faststart=True)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    seen = []
    report = screen_video(fake_guard()[0], cut, on_segment=seen.append)
    assert report.error is not None and report.error.code == "truncated"
    assert 30 < report.frames < 90
    assert [s.action for s in report.segments] == [Action.ALLOW, Action.CENSOR]
    assert report.segments[1].start == pytest.approx(1.0, abs=1e-3)
    assert report.segments[1].end == pytest.approx(report.end_time) and report.end_time < 2.0
    assert seen == report.segments  # every segment was emitted before the report returned


def test_corrupt_packets_are_skipped_and_the_rest_is_screened(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    write_vfr_video(full, THREE_SHOTS, faststart=True)
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = b"\x5a" * 3000
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    report = screen_video(fake_guard()[0], broken)
    assert report.error is not None and report.error.code == "corrupt"
    assert report.bad_packets > 0
    assert [s.action for s in report.segments] == [Action.ALLOW, Action.CENSOR, Action.ALLOW]
    assert report.segments[-1].end == pytest.approx(3.0, abs=1e-3)


def test_frames_larger_than_an_image_may_be_are_refused_from_the_header(
    tmp_path: Path, monkeypatch
) -> None:
    from genguard.video import decode

    path = tmp_path / "wide.mp4"
    write_video(path, [Shot("static", 0.2)], size=(320, 240), fps=10)
    monkeypatch.setattr(decode, "MAX_FRAME_PIXELS", 320 * 240 - 1)
    with pytest.raises(ContentError) as caught:
        decode.VideoReader(path)
    assert caught.value.code == "too_many_pixels" and "320x240" in str(caught.value)
    monkeypatch.setattr(decode, "MAX_FRAME_PIXELS", 320 * 240)
    decode.VideoReader(path).close()  # exactly at the limit: accepted
