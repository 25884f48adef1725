"""`genguard video` end to end through a local Typer app (the lead registers it for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genguard.errors import ContentError
from genguard.video import cli as video_cli
from genguard.video.synthetic import Shot, write_vfr_video
from tests.video.conftest import CENSOR_LEVEL, fake_guard

pytest.importorskip("av", reason="video screening needs PyAV (genguard[video])")

runner = CliRunner()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setattr(video_cli, "build_guard", lambda *_args: fake_guard()[0])
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so that `video` is a subcommand as in genguard
        pass

    video_cli.register(app)
    return app


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_has_segments_then_a_summary(app: typer.Typer, shot_video, tmp_path: Path) -> None:
    clip, bounds = shot_video
    out = tmp_path / "clip.jsonl"
    result = runner.invoke(app, ["video", str(clip), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = records(out)
    segments = [r for r in rows if r["record"] == "segment"]
    assert [r["action"] for r in segments] == ["allow", "censor", "allow", "block", "allow"]
    assert segments[1]["start"] == pytest.approx(bounds[2][0], abs=1e-3)
    assert all(r["policy_id"] == rows[0]["policy_id"] and r["error"] is None for r in segments)
    summary = rows[-1]
    assert summary["record"] == "summary" and summary["complete"] is True
    assert summary["action"] == "block" and summary["frames"] == 225
    assert summary["analysed_frames"] < summary["frames"] / 3
    assert "censor" in result.output  # the segments table


def test_censor_writes_a_playable_copy(app: typer.Typer, shot_video, tmp_path: Path) -> None:
    import av

    clip, _ = shot_video
    safe = tmp_path / "clip.safe.mp4"
    result = runner.invoke(app, ["video", str(clip), "--censor", "-o", str(safe), "--no-progress"])
    assert result.exit_code == 0, result.output
    with av.open(str(safe)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 225


def test_truncated_video_writes_partial_results_then_fails(
    app: typer.Typer, tmp_path: Path
) -> None:
    full = tmp_path / "full.mkv"
    write_vfr_video(
        full,
        [
            (Shot("static", 1.0), 30),
            (Shot("solid", 1.0, level=CENSOR_LEVEL), 30),
            (Shot("static", 1.0, "coffee"), 30),
        ],
    )
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    out = tmp_path / "cut.jsonl"
    result = runner.invoke(app, ["video", str(cut), "--out", str(out), "--no-progress"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ContentError) and result.exception.code == "truncated"
    rows = records(out)
    assert [r["record"] for r in rows] == ["segment", "segment", "error", "summary"]
    assert rows[1]["action"] == "censor"
    assert rows[2]["error_code"] == "truncated" and rows[2]["at"] == rows[1]["end"]
    assert rows[3]["complete"] is False


def test_unopenable_video_gets_an_error_record(app: typer.Typer, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = tmp_path / "empty.jsonl"
    result = runner.invoke(app, ["video", str(empty), "--out", str(out), "--no-progress"])
    assert isinstance(result.exception, ContentError)
    assert records(out) == [
        {
            "schema": "genguard.video/1",
            "record": "error",
            "path": str(empty),
            "action": None,
            "at": None,
            "policy_id": fake_guard()[0].policy_id,
            "error": f"{empty} is empty (0 bytes)",
            "error_code": "empty_file",
        }
    ]
