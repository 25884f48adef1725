"""Video screening throughput and recall: gated screening vs checking every frame.

For each resolution (480p, 720p, 1080p) a benign test video is generated with OpenCV
(mp4v) or PyAV (H.264): shots of scikit-image sample photos (static, slow pans, zooms)
of 2-8 s with hard cuts, plus a few "flagged" shots (a textured solid grey that the
stand-in GreyLevelDetector maps to a synthetic nudity region). Then, side by side:

* ``decode only``: PyAV decoding every frame, nothing else (the ceiling);
* ``gated, stand-in detector``: the full pipeline with a zero-cost detector: decode +
  gate + segments; its recall of flagged segments is measured against
* ``every frame, stand-in``: the same detector on every frame (the reference timeline);
* ``gated, real models``: NudeNet + OpenNSFW on the analysed frames only;
* ``every frame, real models``: the naive approach, on the first seconds only (it runs at
  model speed, ~10 frames/s on 2 cores, so the full video would take minutes).

Effective frames/s = video frames screened / wall seconds, decoding included.

    python bench/video.py [--seconds 60] [--resolutions 480,720,1080] [--codec mp4v|h264]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.video import GateConfig, VideoOptions, screen_video, segment_recall
from genguard.video.decode import VideoReader
from genguard.video.synthetic import GreyLevelDetector, Shot, write_vfr_video, write_video

FLAG_LEVEL = 245
SIZES = {480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
console = Console()


def shot_plan(seconds: float, seed: int = 0) -> list[Shot]:
    """Shots of 2-8 s drawn 40% static, 35% pan, 15% zoom, 10% flagged (1-3 s), and every
    5th shot flagged; the seed-0 plan for 60 s is pan-heavy (9 pans in 16 shots), a hard
    case for the gate."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    total = 0.0
    while total < seconds:
        draw = rng.random()
        if draw < 0.10 or len(shots) % 5 == 3:
            shot = Shot("solid", float(rng.uniform(1, 3)), level=FLAG_LEVEL, texture=10)
        else:
            kind = "static" if draw < 0.5 else "pan" if draw < 0.85 else "zoom"
            shot = Shot(kind, float(rng.uniform(2, 8)), photo=PHOTOS[len(shots) % len(PHOTOS)])
        shots.append(shot)
        total += shot.seconds
    return shots


def make_video(folder: Path, height: int, shots: list[Shot], codec: str, name: str) -> Path:
    size = SIZES[height]
    if codec == "h264":
        path = folder / f"{name}_{height}p_h264.mp4"
        write_vfr_video(path, [(s, 30.0) for s in shots], size=size, codec="libx264")
    else:
        path = folder / f"{name}_{height}p_mp4v.mp4"
        write_video(path, shots, size=size, fps=30.0)
    return path


def decode_only(path: Path, threads: int | None) -> dict:
    if threads is None:
        threads = 1 if (os.cpu_count() or 1) <= 2 else 0
    started = time.perf_counter()
    with VideoReader(path, threads=threads) as reader:
        frames = sum(1 for _ in reader.frames())
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "analysed": 0}


def run(guard: Guard, path: Path, options: VideoOptions) -> dict:
    report = screen_video(guard, path, options=options)
    assert report.complete, report.error
    return {
        "frames": report.frames,
        "seconds": report.seconds,
        "fps": report.frames_per_second,
        "analysed": report.analysed,
        "segments": report.segments,
    }


def bench_resolution(folder: Path, height: int, args: argparse.Namespace, real: Guard | None):
    shots = shot_plan(args.seconds)
    path = make_video(folder, height, shots, args.codec, "full")
    options = VideoOptions(decode_threads=args.decode_threads)
    every = replace(options, gate=GateConfig(every_frame=True))
    stand_in = Guard(load_policy("standard"), [GreyLevelDetector([FLAG_LEVEL])])
    rows = {"decode only": decode_only(path, args.decode_threads)}
    rows["every frame, stand-in"] = run(stand_in, path, every)
    rows["gated, stand-in"] = run(stand_in, path, options)
    recall, delay = segment_recall(
        rows["every frame, stand-in"]["segments"], rows["gated, stand-in"]["segments"]
    )
    flagged = sum(s.flagged for s in rows["every frame, stand-in"]["segments"])
    if real is not None:
        rows["gated, real models"] = run(real, path, options)
        prefix = make_video(folder, height, shot_plan(args.prefix_seconds, seed=1), args.codec, "p")
        rows["every frame, real models"] = run(real, prefix, every)
    return rows, {"recall": recall, "worst_delay_s": delay, "flagged_segments": flagged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="video length")
    parser.add_argument("--prefix-seconds", type=float, default=4.0)
    parser.add_argument("--resolutions", default="480,720,1080")
    parser.add_argument("--codec", choices=["mp4v", "h264"], default="mp4v")
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--no-real", action="store_true", help="skip the real models")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    real = None if args.no_real else Guard.from_policy("standard")
    if real is not None:
        real.check_loaded([])  # models load lazily; load them outside the timings
        from genguard.content import LoadedImage

        real.check_loaded([LoadedImage(frames=[np.zeros((64, 64, 3), np.uint8)])])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for height in (int(h) for h in args.resolutions.split(",")):
            with console.status(f"{height}p: generating and screening"):
                rows, quality = bench_resolution(Path(tmp), height, args, real)
            print_table(height, args, rows, quality)
            results[f"{height}p"] = {
                "rows": {
                    k: {x: v[x] for x in ("frames", "seconds", "fps", "analysed")}
                    for k, v in rows.items()
                },
                **quality,
            }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(height: int, args: argparse.Namespace, rows: dict, quality: dict) -> None:
    table = Table(title=f"{height}p {args.codec}, {args.seconds:.0f} s at 30 fps")
    for column in ("run", "frames", "analysed", "seconds", "effective frames/s"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, row in rows.items():
        table.add_row(
            name,
            str(row["frames"]),
            str(row["analysed"]),
            f"{row['seconds']:.2f}",
            f"{row['fps']:.0f}",
        )
    table.caption = (
        f"recall of flagged segments (gated vs every frame): {quality['recall']:.2f} "
        f"over {quality['flagged_segments']} segments; worst start delay "
        f"{quality['worst_delay_s']:.3f} s"
    )
    console.print(table)


if __name__ == "__main__":
    main()
