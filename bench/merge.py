"""Benchmark: streaming merge vs the naive "load both, combine, save" approach.

Builds two synthetic checkpoints with the real SD 1.x single-file layout (fp16, about
``--size-mb`` each), then runs each approach in its own child process and reads that
child's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time, so one
approach's allocations cannot inflate the other's numbers. Both compute the same
float32 expression, so the outputs must be bit-identical; the bench checks that.

    python bench/merge.py                 # ~1 GB checkpoints (SD 1.x layout, fp16)
    python bench/merge.py --size-mb 128   # quick run

Target (issue 6): streaming peak memory <= 1/4 of naive, at equal or better speed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHA = 0.3


def child_naive(a: Path, b: Path, out: Path) -> None:
    """The usual script: both state dicts in memory, a third dict for the result."""
    from safetensors.numpy import load_file, save_file

    sa, sb = load_file(str(a)), load_file(str(b))
    merged = {}
    for key, ta in sa.items():
        if ta.dtype.kind == "f":
            mixed = np.float32(1 - ALPHA) * ta.astype(np.float32)
            mixed += np.float32(ALPHA) * sb[key].astype(np.float32)
            merged[key] = mixed.astype(ta.dtype)
        else:
            merged[key] = ta
    save_file(merged, str(out))


def child_streaming(a: Path, b: Path, out: Path, hash_sources: bool) -> None:
    """genguard's engine: one tensor at a time, header precomputed."""
    from genguard.merge import merge, parse_config

    cfg = parse_config(
        {"method": "weighted_sum", "models": [str(a), str(b)], "parameters": {"alpha": ALPHA}}
    )
    merge(cfg, out, hash_sources=hash_sources)


def run_child(mode: str, a: Path, b: Path, out: Path) -> dict[str, float]:
    """Run one approach in a fresh interpreter; returns its seconds and peak RSS (MiB)."""
    cmd = [sys.executable, __file__, "--child", mode, str(a), str(b), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def outputs_identical(x: Path, y: Path) -> bool:
    """Compare two checkpoints tensor by tensor (streamed, so the check stays cheap)."""
    from genguard.merge.safetensors_io import SafetensorsReader

    with SafetensorsReader(x) as rx, SafetensorsReader(y) as ry:
        if set(rx.tensors) != set(ry.tensors):
            return False
        return all(np.array_equal(rx.read_raw(k), ry.read_raw(k)) for k in rx.tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="size of each checkpoint")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (temp dir)")
    args = parser.parse_args()

    from genguard.merge.synthetic import (
        layout_bytes,
        sd1_layout_for_size,
        write_synthetic_checkpoint,
    )

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        layout = sd1_layout_for_size(args.size_mb)
        t0 = time.perf_counter()
        a = write_synthetic_checkpoint(work / "a.safetensors", layout, seed=1)
        b = write_synthetic_checkpoint(work / "b.safetensors", layout, seed=2)
        print(
            f"synthetic SD 1.x checkpoints: {len(layout) + 1} tensors, "
            f"{layout_bytes(layout) / 2**20:.0f} MiB each (fp16), built in "
            f"{time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        rows = {
            "naive (load all, combine, save)": run_child("naive", a, b, work / "naive.st"),
            "genguard streaming": run_child("streaming-nohash", a, b, work / "stream.st"),
            "genguard streaming + SHA-256": run_child("streaming", a, b, work / "stream2.st"),
        }
        same = outputs_identical(work / "naive.st", work / "stream.st")
    base = rows["naive (load all, combine, save)"]
    print(f"\n{'approach':<34}{'seconds':>9}{'peak RSS MiB':>14}{'mem ratio':>11}{'speed':>8}")
    for name, r in rows.items():
        print(
            f"{name:<34}{r['seconds']:>9.2f}{r['peak_mib']:>14.0f}"
            f"{r['peak_mib'] / base['peak_mib']:>11.3f}{base['seconds'] / r['seconds']:>7.2f}x"
        )
    print(f"\noutputs bit-identical: {same}  (mem ratio = peak / naive peak; speed = naive / it)")


def child_main(argv: list[str]) -> None:
    """Entry point inside the child: run one approach, print JSON with time and peak RSS."""
    mode, a, b, out = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    start = time.perf_counter()
    if mode == "naive":
        child_naive(a, b, out)
    else:
        child_streaming(a, b, out, hash_sources=mode == "streaming")
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
