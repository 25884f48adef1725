"""Dataset scan throughput: Ray engine vs local engine vs the naive loop, side by side.

* ``naive``: for each image, ``Guard.check_image(path)`` (decode + both models, one
  image per model call), what a user writes first;
* ``local``: ``genguard.engines.run_scan(engine="local")``: batches, decoding on a thread
  pool while the models run on the previous batch, rows to Parquet;
* ``ray xN``: ``run_scan(engine="ray")`` with N detector actors on a local Ray started
  with the machine's CPUs (Ray's start-up is reported apart; actor start-up and model
  loads are inside the timing, as they are for the local engine).

Real models (NudeNet + OpenNSFW, CPU), benign generated JPEGs (scikit-image samples,
random crops and rescales). Each run is its own subprocess, so peak RSS is its own.

    python bench/dataset_scan.py [--images 300] [--size 1024] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def make_images(folder: Path, count: int, size: int) -> None:
    """Benign JPEGs: random crops, flips and rescales of scikit-image's sample photos."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB")
        for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
    ]
    for index in range(count):
        image = sources[index % len(sources)]
        scale = size / max(image.size) * rng.uniform(0.8, 1.2)
        variant = image.resize((int(image.width * scale), int(image.height * scale)))
        if rng.random() < 0.5:
            variant = variant.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        variant.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
        (folder / f"img{index:05d}.jpg").write_bytes(buffer.getvalue())


def run_naive(folder: Path) -> dict:
    from genguard.guard import Guard

    paths = sorted(folder.glob("*.jpg"))
    started = time.perf_counter()
    guard = Guard.from_policy("standard")
    first = guard.check_image(paths[0])
    first_done = time.perf_counter()
    flagged = sum(guard.check_image(p).action.value != "allow" for p in paths[1:])
    flagged += first.action.value != "allow"
    end = time.perf_counter()
    return {
        "seconds": end - started,
        "steady_images_per_s": (len(paths) - 1) / (end - first_done),
        "flagged": flagged,
        "images": len(paths),
    }


def run_engine(folder: Path, engine: str, workers: int, batch_size: int) -> dict:
    from genguard.engines import GuardFactory, ScanOptions, run_scan

    result: dict = {}
    if engine == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        result["ray_start_s"] = time.perf_counter() - started
    # threads=None: local shares the cores between the two models; Ray gives each model
    # of an actor its share of the actor's CPU (one thread here); actors share the cores.
    factory = GuardFactory()
    out = folder.parent / f"{engine}-{workers}.parquet"
    options = ScanOptions(batch_size=batch_size, workers=workers, progress=False)
    arrivals: list[tuple[float, int]] = []
    started = time.perf_counter()
    summary = run_scan(
        [folder],
        out=out,
        engine=engine,
        guard_factory=factory,
        options=options,
        on_rows=lambda n: arrivals.append((time.perf_counter(), n)),
    )
    end = time.perf_counter()
    # Steady state: from the first batch out (models loaded, actors up) to the last.
    first_time, first_rows = arrivals[0]
    steady = (summary.total - first_rows) / (end - first_time) if end > first_time else 0.0
    result.update(
        seconds=end - started,
        steady_images_per_s=steady,
        images=summary.total,
        flagged=summary.total - summary.actions.get("allow", 0),
        errors=sum(summary.errors.values()),
    )
    return result


def child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.child == "naive":
        result = run_naive(folder)
    else:
        engine, _, workers = args.child.partition(":")
        result = run_engine(folder, engine, int(workers or args.local_workers), args.batch_size)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(run: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        run,
        "--folder",
        str(folder),
        "--batch-size",
        str(args.batch_size),
        "--local-workers",
        str(args.local_workers),
    ]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024, help="longest side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="Ray actor counts to compare")
    parser.add_argument("--local-workers", type=int, default=2, help="local decode threads")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs = ([] if args.skip_naive else ["naive"]) + ["local"]
    runs += [f"ray:{n}" for n in args.workers.split(",")]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        with console.status(f"generating {args.images} images"):
            make_images(folder, args.images, args.size)
        for run in runs:
            with console.status(f"running {run}"):
                results[run] = measure(run, folder, args)
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    table = Table(title=f"dataset scan: {args.images} JPEGs, {args.size} px, {cores} cores")
    columns = ("run", "images", "seconds", "images/s", "steady", "per core", "vs local", "RSS MB")
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    local = results["local"]["steady_images_per_s"]
    for name, r in results.items():
        rate, steady = r["images"] / r["seconds"], r["steady_images_per_s"]
        table.add_row(
            name.replace("ray:", "ray x"),
            str(r["images"]),
            f"{r['seconds']:.1f}",
            f"{rate:.1f}",
            f"{steady:.1f}",
            f"{steady / cores:.2f}",
            f"{steady / local:.2f}x",
            f"{r['peak_rss_mb']:.0f}",
        )
    starts = [f"{n}: {r['ray_start_s']:.1f} s" for n, r in results.items() if "ray_start_s" in r]
    table.caption = (
        "images/s: whole run incl. model loads / actor start; steady: after the first batch; "
        "per core and vs local use steady; RSS: the driver process only (Ray actors are "
        "separate processes). Ray start (not timed): " + ", ".join(starts)
    )
    console.print(table)


if __name__ == "__main__":
    main()
