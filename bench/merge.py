"""Benchmark: streaming merge vs the naive "load both, combine, save" approach.

Builds two synthetic checkpoints with the real SD 1.x single-file layout (fp16, about
``--size-mb`` each), then runs each approach in its own child process and reads that
child's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time, so one
approach's allocations cannot inflate the other's numbers. Both compute the same
float32 expression, so the outputs must be bit-identical; the bench checks that.

    python bench/merge.py                 # ~1 GB checkpoints (SD 1.x layout, fp16)
    python bench/merge.py --size-mb 128   # quick run

Target (issue 6): streaming peak memory <= 1/4 of naive, at equal or better speed.

    python bench/merge.py --methods                # every method at SD 1.5's largest tensor
    python bench/merge.py --methods --rows 4096    # quick run

``--methods`` (issue 17) runs every built-in merge method on one tensor of the SD 1.5
token-embedding shape (49408 x 768 float32, 145 MiB; the largest tensor of SD 1.5) with
three fine-tunes (plus the base for the task-vector methods; two models for the
two-model methods), as the engine calls them (``owned`` arrays), and reports:

* peak working memory: ``tracemalloc``'s peak during the call. numpy reports every data
  buffer it allocates or frees to tracemalloc, so this is exactly the bytes the method
  held at once on top of its sources, unaffected by what the allocator keeps mapped, by
  the page cache, or by the interpreter. Peak RSS cannot be reset between methods in
  one process, and torch's allocator statistics do not see numpy (the methods' arrays).
* peak / bound: (sources x tensor + that peak) / ((sources + 2) x tensor), the engine's
  documented bound. Above 1.0 the bench exits with status 1.
* seconds (best of ``--repeat``, measured without tracemalloc) and the ratio to an
  anchor: a naive implementation written here from the same definitions, materialising
  every intermediate (full float64 copies, full sorts, whole-tensor masks and random
  draws). It draws the same random streams, so its result must match: the largest
  absolute difference is printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
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
    parser.add_argument("--methods", action="store_true", help="per-method memory and time")
    parser.add_argument("--rows", type=int, default=49408, help="--methods: tensor rows")
    parser.add_argument("--cols", type=int, default=768, help="--methods: tensor columns")
    parser.add_argument("--repeat", type=int, default=2, help="--methods: timed runs (best)")
    parser.add_argument("--only", nargs="*", default=None, help="--methods: these methods")
    args = parser.parse_args()
    if args.methods:
        sys.exit(methods_bench((args.rows, args.cols), args.repeat, args.only))

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


# --- per-method memory and time (issue 17) --------------------------------------------------

KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SEED = 5
Arrays = list[np.ndarray]


def _rng(index: int) -> np.random.Generator:
    """genguard's documented seeding: default_rng([seed, crc32(key), model index])."""
    return np.random.default_rng([SEED, zlib.crc32(KEY.encode()), index])


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)


def _consensus(weighted: Arrays, weights: list[float], normalize: bool) -> np.ndarray:
    stack = np.stack(weighted)
    sign = np.sign(stack.sum(axis=0))
    agree = (np.sign(stack) == sign) & (stack != 0)
    total = (stack * agree).sum(axis=0)
    if not normalize:
        return total
    divisor = (np.asarray(weights, np.float32)[:, None, None] * agree).sum(axis=0)
    return total / np.where(divisor == 0, 1, divisor)


def _trim_top(d: np.ndarray, density: float) -> np.ndarray:
    k = int(density * d.size)
    keep = np.zeros(d.size, bool)
    keep[np.argsort(-np.abs(d.ravel()), kind="stable")[:k]] = True
    return np.where(keep.reshape(d.shape), d, 0)


def _dare(d: np.ndarray, density: float, index: int) -> np.ndarray:
    keep = _rng(index).random(d.size, dtype=np.float32).reshape(d.shape) < density
    return np.where(keep, d / np.float32(density), 0)


def _della(d: np.ndarray, density: float, eps: float, index: int) -> np.ndarray:
    rows = _rows(d)
    ranks = np.argsort(np.argsort(np.abs(rows), axis=1), axis=1)
    probs = density - eps + 2 * eps * ranks / (rows.shape[1] - 1)
    keep = _rng(index).random(rows.shape, dtype=np.float32) < probs
    masked = np.where(keep, rows, 0)
    masked = masked * (np.abs(rows).sum(dtype=np.float64) / np.abs(masked).sum(dtype=np.float64))
    return masked.reshape(d.shape).astype(np.float32)


def _breadcrumbs(d: np.ndarray, density: float, gamma: float) -> np.ndarray:
    n = d.size
    target = int(density * n)
    bottom = max(0, n - target - int(gamma * n))
    keep = np.zeros(n, bool)
    keep[np.argsort(np.abs(d.ravel()), kind="stable")[bottom : bottom + target]] = True
    return np.where(keep.reshape(d.shape), d, 0)


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The textbook formula on normalised float64 copies (genguard's slerp before)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ua, ub = a64 / np.sqrt(np.sum(a64 * a64)), b64 / np.sqrt(np.sum(b64 * b64))
    omega = np.arccos(np.clip(np.sum(ua * ub), -1, 1))
    return (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)


def _model_stock(ms: Arrays, base: np.ndarray) -> np.ndarray:
    offsets = [m.astype(np.float64).ravel() - base.astype(np.float64).ravel() for m in ms]
    norms = [np.sqrt(np.sum(o * o)) for o in offsets]  # no BLAS: see genguard's _dot64
    cos = np.mean(
        [
            np.sum(offsets[i] * offsets[j]) / max(norms[i] * norms[j], 1e-6)
            for i in range(len(ms))
            for j in range(i + 1, len(ms))
        ]
    )
    t = len(ms) * cos / (1 + (len(ms) - 1) * cos)
    return t * (sum(ms) / len(ms)) + (1 - t) * base


def _deltas(ms: Arrays, base: np.ndarray) -> Arrays:
    return [m - base for m in ms]


#: name -> anchor(models, base) at the method's default parameters (weights 1).
ANCHORS: dict[str, Callable[[Arrays, np.ndarray], np.ndarray]] = {
    "weighted_sum": lambda ms, _b: 0.5 * ms[0] + 0.5 * ms[1],
    "linear": lambda ms, _b: sum(ms) / len(ms),
    "add_difference": lambda ms, b: ms[0] + (ms[1] - b),
    "slerp": lambda ms, _b: _slerp(ms[0], ms[1], 0.5),
    "task_arithmetic": lambda ms, b: b + sum(_deltas(ms, b)),
    "ties": lambda ms, b: (
        b + _consensus([_trim_top(d, 0.2) for d in _deltas(ms, b)], [1.0] * len(ms), True)
    ),
    "dare_linear": lambda ms, b: b + sum(_dare(d, 0.5, i) for i, d in enumerate(_deltas(ms, b))),
    "dare_ties": lambda ms, b: (
        b
        + _consensus(
            [_dare(d, 0.5, i) for i, d in enumerate(_deltas(ms, b))], [1.0] * len(ms), True
        )
    ),
    "model_stock": _model_stock,
    "della": lambda ms, b: (
        b
        + _consensus(
            [_della(d, 0.5, 0.15, i) for i, d in enumerate(_deltas(ms, b))], [1.0] * len(ms), True
        )
    ),
    "della_linear": lambda ms, b: (
        b + sum(_della(d, 0.5, 0.15, i) for i, d in enumerate(_deltas(ms, b)))
    ),
    "breadcrumbs": lambda ms, b: b + sum(_breadcrumbs(d, 0.9, 0.01) for d in _deltas(ms, b)),
    "breadcrumbs_ties": lambda ms, b: (
        b + _consensus([_breadcrumbs(d, 0.9, 0.01) for d in _deltas(ms, b)], [1.0] * len(ms), False)
    ),
}


def _inputs(shape: tuple[int, int], count: int) -> tuple[Arrays, np.ndarray]:
    """A base embedding and fine-tunes sharing part of their update (cosines ~0.5)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    shared = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.002)
    models = [
        base + shared + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.002)
        for _ in range(count)
    ]
    return models, base


def _run_method(name: str, models: Arrays, base: np.ndarray, traced: bool) -> tuple:
    """One engine-style call on fresh copies; returns (result, seconds, peak bytes)."""
    from genguard.merge.methods import MERGE_METHODS, TensorContext

    method = MERGE_METHODS.get(name)
    ctx = TensorContext(
        KEY,
        [m.copy() for m in models],
        base.copy() if method.needs_base else None,
        [dict(method.model_params) for _ in models],
        dict(method.params),
        seed=SEED,
        owned=True,
    )
    if traced:
        tracemalloc.start()
        tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        result = method.fn(ctx)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    return result, seconds, peak


def methods_bench(shape: tuple[int, int], repeat: int, only: list[str] | None) -> int:
    """The per-method table; returns the exit status (1 if a method broke the bound)."""
    from genguard.merge.methods import MERGE_METHODS

    names = only or list(ANCHORS)
    tensor_bytes = shape[0] * shape[1] * 4
    models, base = _inputs(shape, 3)
    print(
        f"tensor {shape[0]} x {shape[1]} float32 ({tensor_bytes / 2**20:.0f} MiB); "
        f"bound = (sources + 2) x tensor; peak = tracemalloc peak during the call",
        flush=True,
    )
    header = (
        f"{'method':<17}{'sources':>8}{'extra/tensor':>13}{'peak/bound':>11}"
        f"{'seconds':>9}{'anchor s':>9}{'time/anchor':>12}{'max |diff|':>12}"
    )
    print(header)
    failed = []
    for name in names:
        method = MERGE_METHODS.get(name)
        ms = models[: method.max_models or 3]
        sources = len(ms) + int(method.needs_base)
        result, _, peak = _run_method(name, ms, base, traced=True)
        seconds = min(_run_method(name, ms, base, traced=False)[1] for _ in range(repeat))
        start = time.perf_counter()
        anchor = ANCHORS[name](ms, base)
        anchor_seconds = time.perf_counter() - start
        diff = float(np.max(np.abs(result.astype(np.float64) - anchor)))
        ratio = (sources * tensor_bytes + peak) / ((sources + 2) * tensor_bytes)
        print(
            f"{name:<17}{sources:>8}{peak / tensor_bytes:>13.2f}{ratio:>11.3f}"
            f"{seconds:>9.2f}{anchor_seconds:>9.2f}{seconds / anchor_seconds:>12.2f}"
            f"{diff:>12.1e}",
            flush=True,
        )
        if ratio > 1.0:
            failed.append(f"{name} ({ratio:.3f})")
        del result, anchor
    if failed:
        print(f"\nFAIL: over the (sources + 2) x tensor bound: {', '.join(failed)}")
        return 1
    print("\nall methods within (sources + 2) x the tensor")
    return 0


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
