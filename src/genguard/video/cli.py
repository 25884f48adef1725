"""``genguard video``: per-segment decisions (JSONL) and censored copies of videos.

    genguard video clip.mp4 --policy standard --out clip.jsonl
    genguard video clip.mp4 --censor -o clip.safe.mp4

The JSONL holds one ``segment`` record per run of frames with the same action (start and
end in seconds from the container's timestamps), then one ``summary`` record; a video
that breaks mid-way keeps its segments and gets an ``error`` record, and the command
exits with code 2 after writing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

from genguard.errors import ContentError
from genguard.guard import DEFAULT_BACKENDS, Guard
from genguard.progress import progress_bar
from genguard.video.decode import VideoReader
from genguard.video.gating import GateConfig
from genguard.video.pipeline import VideoOptions, VideoReport, error_record, screen_video
from genguard.video.segments import Segment

console = Console()
ACTION_STYLE = {"allow": "green", "censor": "yellow", "review": "magenta", "block": "red"}


def build_guard(policy: str, backends: list[str] | None, threads: int | None) -> Guard:
    """Module-level so tests can swap in a Guard with a fake detector."""
    return Guard.from_policy(policy, backends=backends or DEFAULT_BACKENDS, threads=threads)


def video(
    clip: Annotated[Path, typer.Argument(help="video file (mp4, mkv, webm, mov, avi...)")],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="built-in profile or a policy .toml")
    ] = "standard",
    out: Annotated[
        Path | None, typer.Option("--out", help="JSONL of per-segment decisions")
    ] = None,
    censor: Annotated[
        bool, typer.Option("--censor", help="write a censored copy of the video")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="censored video path (default: CLIP.safe.mp4)"),
    ] = None,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="detector backend (repeatable)")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="threads per model")] = None,
    every_frame: Annotated[
        bool, typer.Option("--every-frame", help="analyse every frame (slow reference run)")
    ] = False,
    change_threshold: Annotated[
        float, typer.Option(help="grey-level change vs last analysed frame that re-analyses")
    ] = GateConfig.change_threshold,
    cut_threshold: Annotated[
        float, typer.Option(help="grey-level change vs previous frame that marks a cut")
    ] = GateConfig.cut_threshold,
    refresh: Annotated[
        float, typer.Option(help="analyse at least one frame every this many seconds")
    ] = GateConfig.refresh_seconds,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=64)] = 8,
    decode_threads: Annotated[
        int | None,
        typer.Option(help="decoder threads (0: FFmpeg decides, 1: none; default by cores)"),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Screen a video: segments with start/end times and actions; optionally censor it."""
    if output is not None:
        censor = True
    censor_to = (output or clip.with_suffix(".safe.mp4")) if censor else None
    options = VideoOptions(
        gate=GateConfig(
            change_threshold=change_threshold,
            cut_threshold=cut_threshold,
            refresh_seconds=refresh,
            every_frame=every_frame,
        ),
        batch_size=batch_size,
        decode_threads=decode_threads,
    )
    guard = build_guard(policy, backend, threads)
    sink = _open_sink(out)
    try:
        report = _run(guard, clip, options, censor_to, sink, progress)
    finally:
        if sink is not None:
            sink.close()
    print_report(report, out)
    if report.error is not None:
        raise report.error


def _open_sink(out: Path | None) -> TextIO | None:
    if out is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.open("w", encoding="utf-8")


def _write(sink: TextIO | None, record: dict[str, Any]) -> None:
    if sink is not None:
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        sink.flush()


def _run(
    guard: Guard,
    clip: Path,
    options: VideoOptions,
    censor_to: Path | None,
    sink: TextIO | None,
    progress: bool,
) -> VideoReport:
    """Screen with a progress bar; records are written as segments close."""

    def on_segment(segment: Segment) -> None:
        _write(sink, segment.to_record(str(clip), guard.policy_id))

    try:
        total = _frame_count(clip)
        with progress_bar(progress, unit="frames/s", decimals=0) as bar:
            task = bar.add_task("screening", total=total)
            report = screen_video(
                guard,
                clip,
                options=options,
                on_segment=on_segment,
                on_progress=lambda n: bar.advance(task, n),
                censor_to=censor_to,
            )
    except ContentError as exc:
        _write(sink, error_record(str(clip), exc, guard.policy_id, at=None))
        raise
    if report.error is not None:
        _write(sink, error_record(str(clip), report.error, guard.policy_id, report.end_time))
    _write(sink, report.summary_record())
    return report


def _frame_count(clip: Path) -> int | None:
    with VideoReader(clip) as reader:
        return reader.info.frame_count


def print_report(report: VideoReport, out: Path | None) -> None:
    """Segments table plus one line of throughput (the number that sizes hardware)."""
    table = Table(title=f"genguard video: {report.path} ({report.policy_id})")
    for column in ("#", "start", "end", "frames", "analysed", "action", "reasons"):
        table.add_column(column, justify="right" if column not in ("action", "reasons") else "left")
    for s in report.segments:
        style = ACTION_STYLE.get(s.action.value, "white")
        table.add_row(
            str(s.index),
            f"{s.start:.3f}",
            f"{s.end:.3f}",
            str(s.frames),
            str(s.analysed_frames),
            f"[{style}]{s.action.value}[/]",
            "; ".join(s.reasons)[:80],
        )
    table.caption = (
        f"{report.frames} frames, {report.analysed} analysed, {report.cuts} cuts, "
        f"{report.frames_per_second:.0f} frames/s"
        + (f" -> {out}" if out else "")
        + (f"; censored copy {report.censored_output}" if report.censored_output else "")
    )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``genguard video`` to the CLI."""
    app.command("video")(video)
