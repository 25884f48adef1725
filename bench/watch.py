"""``genguard watch`` vs the naive polling loop a user writes today, side by side.

Anchor (naive): every second, re-list the folder and ``guard.check_image`` each path not
seen before, one at a time; no completeness check, no state, no action. genguard:
:class:`genguard.watch.Watcher` (watchdog events, close-after-write, batches, store,
quarantine mode). Both use the same Guard and write one JSONL row per file.

Three phases per side, each in a fresh folder:

* latency: files written one at a time (``--gap`` s apart, the watcher idle when each
  arrives); latency = time the row is written - time the writer closed the file;
* burst: N small PNGs written as fast as possible; throughput = N / (last row - first
  write), and peak pending count;
* slow writers: files written in two halves 1.2 s apart (a front-end encoding a large
  image); counts files judged while incomplete (an error row, or a verdict on bytes that
  are not the final file) and files never judged.

The detector is a no-op by default (``--detector fake``: measures the watcher, not the
models); ``--detector real`` uses NudeNet + OpenNSFW.

    python bench/watch.py [--images 1000] [--latency-files 40] [--detector fake|real]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genguard.detectors.base import DetectorOutput
from genguard.engines.records import decision_record, error_record
from genguard.engines.sources import walk
from genguard.errors import ContentError
from genguard.guard import Guard
from genguard.policy import load_policy
from genguard.store import open_store
from genguard.watch import Timing, Watcher, resolve_options
from genguard.watch.state import WatchState

Record = dict[str, Any]
OnRecord = Callable[[Record], None]


class NoopDetector:
    """Finds nothing: the bench measures the watcher's own cost, not a model's."""

    name = "noop"
    categories = ("nudity",)

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        return [DetectorOutput(backend=self.name) for _ in frames]


def build_guard(kind: str) -> Guard:
    if kind == "real":
        return Guard.from_policy("standard")
    return Guard(load_policy("standard"), [NoopDetector()])


def png(seed: int, side: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class Rows:
    """Rows with the time each arrived, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, float] = {}
        self.records: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        with self.lock:
            self.at.setdefault(record["path"], time.time())
            self.records.setdefault(record["path"], record)

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.at) >= count:
                    return True
            time.sleep(0.01)
        return False


# -- the two sides ---------------------------------------------------------------------


class NaivePoller:
    """The anchor: re-list every second, check each new path once, in order."""

    def __init__(self, guard: Guard, root: Path, on_record: OnRecord, interval: float = 1.0):
        self.guard, self.root, self.on_record, self.interval = guard, root, on_record, interval
        self.stop_requested = threading.Event()

    def run(self, started: threading.Event) -> None:
        seen: set[str] = set()
        started.set()
        while not self.stop_requested.is_set():
            for item in walk([self.root]):
                if item.path in seen:
                    continue
                seen.add(item.path)
                try:
                    record = decision_record(item.path, self.guard.check_image(item.path))
                except ContentError as exc:
                    record = error_record(item.path, exc, self.guard.policy_id)
                self.on_record(record)
            self.stop_requested.wait(self.interval)

    def stop(self) -> None:
        self.stop_requested.set()


def start_side(side: str, guard: Guard, root: Path, work: Path, rows: Rows) -> Callable[[], Any]:
    """Start one side in a thread; return a function that stops it (and its stats)."""
    started = threading.Event()
    runner: Any
    peak = [0]
    if side == "naive":
        runner = NaivePoller(guard, root, rows.add)
        target: Callable[[], Any] = lambda: runner.run(started)  # noqa: E731
    else:
        options = resolve_options(
            root,
            quarantine=work / f"{root.name}-quarantine",
            log=work / f"{root.name}.jsonl",
            mode="quarantine",
            timing=Timing(),
        )
        store = open_store(work / f"{root.name}.db")
        runner = Watcher(
            guard,
            WatchState(store),
            options,
            on_record=rows.add,
            on_progress=lambda _done, pending: peak.__setitem__(0, max(peak[0], pending)),
        )
        target = lambda: runner.run(started=started)  # noqa: E731
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    started.wait(30)

    def stop() -> int:
        runner.stop()
        thread.join(30)
        return peak[0]

    return stop


# -- phases ----------------------------------------------------------------------------


def latency_phase(side: str, guard: Guard, work: Path, files: int, gap: float) -> dict[str, float]:
    root = work / f"{side}-latency"
    root.mkdir()
    rows = Rows()
    stop = start_side(side, guard, root, work, rows)
    closed: dict[str, float] = {}
    for i in range(files):
        path = root / f"{i:05d}.png"
        path.write_bytes(png(i, 128))
        closed[str(path)] = time.time()
        time.sleep(gap)
    rows.wait(files, 30)
    stop()
    waits = sorted(rows.at[p] - t for p, t in closed.items() if p in rows.at)
    return {
        "median_ms": statistics.median(waits) * 1000,
        "p95_ms": waits[int(0.95 * (len(waits) - 1))] * 1000,
        "rows": len(waits),
    }


def burst_phase(side: str, guard: Guard, work: Path, count: int) -> dict[str, float]:
    root = work / f"{side}-burst"
    root.mkdir()
    payloads = [png(i, 48) for i in range(count)]
    rows = Rows()
    stop = start_side(side, guard, root, work, rows)
    began = time.time()
    for i, data in enumerate(payloads):
        (root / f"{i:05d}.png").write_bytes(data)
    written = time.time() - began
    rows.wait(count, 600)
    peak = stop()
    last = max(rows.at.values(), default=began)
    return {
        "files_per_s": len(rows.at) / max(1e-9, last - began),
        "seconds": last - began,
        "write_seconds": written,
        "rows": len(rows.at),
        "peak_pending": peak,
    }


def slow_writer_phase(side: str, guard: Guard, work: Path, files: int) -> dict[str, float]:
    root = work / f"{side}-slow"
    root.mkdir()
    rows = Rows()
    stop = start_side(side, guard, root, work, rows)
    payloads = {str(root / f"{i:03d}.png"): png(1000 + i, 256) for i in range(files)}
    handles = {path: open(path, "wb") for path in payloads}  # noqa: SIM115
    for path, data in payloads.items():
        handles[path].write(data[: len(data) // 2])
        handles[path].flush()
    time.sleep(1.2)  # longer than the anchor's poll interval: it always sees half files
    for path, data in payloads.items():
        handles[path].write(data[len(data) // 2 :])
        handles[path].close()
    rows.wait(files, 20)
    time.sleep(1.5)
    stop()
    final = {path: hashlib.sha256(data).hexdigest() for path, data in payloads.items()}
    torn = sum(
        1
        for path, record in rows.records.items()
        if record["error_code"] is not None or record["sha256"] != final[path]
    )
    return {"judged_incomplete": torn, "never_judged": files - len(rows.records)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--latency-files", type=int, default=40)
    parser.add_argument("--slow-files", type=int, default=10)
    parser.add_argument(
        "--gap", type=float, default=0.25, help="seconds between files in the latency phase"
    )
    parser.add_argument("--detector", choices=("fake", "real"), default="fake")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    guard = build_guard(args.detector)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for side in ("naive", "genguard"):
            results[side] = {
                "latency": latency_phase(side, guard, work, args.latency_files, args.gap),
                "burst": burst_phase(side, guard, work, args.images),
                "slow": slow_writer_phase(side, guard, work, args.slow_files),
            }
            print(side, json.dumps(results[side]), file=sys.stderr, flush=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    naive, ours = results["naive"], results["genguard"]
    rows = [
        ("latency median (ms)", "latency", "median_ms", "{:.0f}"),
        ("latency p95 (ms)", "latency", "p95_ms", "{:.0f}"),
        (f"burst of {args.images}: files/s", "burst", "files_per_s", "{:.1f}"),
        (f"burst of {args.images}: seconds", "burst", "seconds", "{:.1f}"),
        (f"slow writers ({args.slow_files}): judged incomplete", "slow", "judged_incomplete", "{}"),
        (f"slow writers ({args.slow_files}): never judged", "slow", "never_judged", "{}"),
    ]
    print(f"detector: {args.detector}")
    print(f"{'':44} {'naive poll 1 s':>15} {'genguard watch':>15} {'ratio':>8}")
    for label, phase, key, fmt in rows:
        a, b = naive[phase][key], ours[phase][key]
        ratio = f"{a / b:.1f}x" if key.endswith("ms") and b else ""
        if key == "files_per_s" and a:
            ratio = f"{b / a:.2f}x"
        print(f"{label:44} {fmt.format(a):>15} {fmt.format(b):>15} {ratio:>8}")
    print(
        "ratio: latency = naive / genguard (higher is better for genguard); files/s = "
        "genguard / naive"
    )


if __name__ == "__main__":
    sys.exit(main())
