"""The censored copy keeps every frame and timestamp, flattens regions, hides blocked shots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genguard.video import screen_video
from genguard.video.synthetic import Shot, shot_frames, write_vfr_video
from tests.video.conftest import BLOCK_LEVEL, CENSOR_LEVEL, fake_guard

pytest.importorskip("av", reason="video screening needs PyAV (genguard[video])")

SIZE = (320, 240)
X, Y, W, H = 100, 60, 120, 100  # the fake detector's nudity box


def read_frames(path: Path) -> tuple[list[np.ndarray], list[float]]:
    import av

    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


@pytest.fixture(scope="module")
def censored(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("censor")
    source = folder / "source.mp4"
    shots = [
        (Shot("static", 0.5, "astronaut"), 30),
        (Shot("solid", 1.0, level=CENSOR_LEVEL, texture=10), 20),
        (Shot("solid", 0.5, level=BLOCK_LEVEL), 30),
    ]
    bounds = write_vfr_video(source, shots, size=SIZE)
    out = folder / "safe.mp4"
    report = screen_video(fake_guard()[0], source, censor_to=out)
    return source, out, report, bounds, [s for s, _ in shots]


def test_every_frame_and_timestamp_is_kept(censored) -> None:
    source, out, report, _, _ = censored
    assert report.complete and report.censored_output == str(out)
    assert [s.action.value for s in report.segments] == ["allow", "censor", "block"]
    src_frames, src_times = read_frames(source)
    out_frames, out_times = read_frames(out)
    assert len(out_frames) == len(src_frames) == report.frames == 15 + 20 + 15
    assert out_times == pytest.approx(src_times, abs=2e-3)  # variable frame rate survives
    assert out_frames[0].shape == src_frames[0].shape


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_regions_are_censored_and_the_rest_is_untouched(censored) -> None:
    source, out, _, _, shots = censored
    src_frames, _ = read_frames(source)
    out_frames, _ = read_frames(out)
    pattern = next(iter(shot_frames(shots[1], SIZE, 1)))[:, :, 0].astype(np.float32)
    inside = np.s_[Y : Y + H, X : X + W]
    outside = np.s_[:, : X - 20]
    for index in range(15, 35):  # the textured shot
        frame = out_frames[index][:, :, 0].astype(np.float32)
        # the 4 px checkerboard is gone inside the box (pixelated), kept outside it
        assert correlation(frame[inside], pattern[inside]) < 0.3, index
        assert correlation(frame[outside], pattern[outside]) > 0.8, index
    for index in range(15):  # allowed shot: only re-encoding loss
        diff = np.abs(out_frames[index].astype(np.int16) - src_frames[index].astype(np.int16))
        assert diff.mean() < 6


def test_blocked_shot_is_replaced_by_the_placeholder(censored) -> None:
    _, out, report, _, _ = censored
    out_frames, _ = read_frames(out)
    for frame in out_frames[35:]:
        assert abs(float(np.median(frame)) - 128) < 6  # neutral grey, not level 25
    assert report.action.value == "block"


def write_with_audio(path: Path, seconds: float = 2.0) -> None:
    """A video with a quiet AAC sine tone (PyAV), grey frames fading up."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        for i in range(round(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 40 + i, np.uint8), "rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in video.encode(frame):
                out.mux(packet)
        tone = (0.1 * np.sin(np.arange(1024) / 10)).astype(np.float32)[None, :]
        for i in range(round(seconds * 44100 / 1024)):
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 44100, i * 1024
            for packet in audio.encode(chunk):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)


def test_audio_is_copied_into_the_censored_copy(tmp_path: Path) -> None:
    import av

    source, out = tmp_path / "talk.mp4", tmp_path / "talk.safe.mp4"
    write_with_audio(source)
    report = screen_video(fake_guard()[0], source, censor_to=out)
    assert report.audio_note is None and report.complete
    with av.open(str(source)) as src, av.open(str(out)) as dst:
        assert [s.type for s in dst.streams] == ["video", "audio"]
        src_audio = [p.pts for p in src.demux(audio=0) if p.size]
        dst_audio = [p.pts for p in dst.demux(audio=0) if p.size]
    assert dst_audio == src_audio  # every audio packet, bit-exact timestamps
    with av.open(str(out)) as dst:
        assert sum(1 for _ in dst.decode(video=0)) == report.frames == 60
    assert not list(tmp_path.glob("*.video-only*"))  # the temporary file is gone
