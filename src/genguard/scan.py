"""Batch scanning of files and folders: one JSONL record per input, nothing lost.

The scan walks its inputs (recursively, following directory symlinks but never around a
loop), decodes images on a thread pool while the models run on the previous batch, writes
records in input order, and can resume: paths already present in the output are skipped.
A bad file is an error record with a specific ``error_code``; the scan goes on.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from genguard.content import LoadedImage
from genguard.decision import Decision
from genguard.errors import ContentError
from genguard.guard import Guard

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".avif"}
)
RECORD_SCHEMA = "genguard.scan/1"


@dataclass(frozen=True)
class ScanItem:
    """One input of a scan: a path, or a path that could not even be listed."""

    path: str
    error: ContentError | None = None


@dataclass
class ScanSummary:
    total: int = 0
    skipped_resumed: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def scanned(self) -> int:
        return sum(self.actions.values()) + sum(self.errors.values())

    @property
    def images_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds > 0 else 0.0


def walk(paths: Sequence[str | Path]) -> Iterator[ScanItem]:
    """Expand files and folders into scan items, in a stable, sorted order.

    Explicit paths are always scanned (a non-image file gets an error record); inside
    folders only files with image extensions are taken. Directory symlinks are followed,
    but a directory already visited (a loop) becomes an error record, not a hang.
    """
    visited: set[tuple[int, int]] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk_dir(path, visited)
        else:
            yield ScanItem(str(path))


def _walk_dir(folder: Path, visited: set[tuple[int, int]]) -> Iterator[ScanItem]:
    try:
        stat = folder.stat()
    except OSError as exc:
        yield ScanItem(
            str(folder), ContentError(f"cannot open folder: {exc.strerror}", code="unreadable")
        )
        return
    key = (stat.st_dev, stat.st_ino)
    if key in visited:
        yield ScanItem(
            str(folder),
            ContentError("directory symlink loop (already scanned)", code="symlink_loop"),
        )
        return
    visited.add(key)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        yield ScanItem(
            str(folder), ContentError(f"cannot list folder: {exc.strerror}", code="unreadable")
        )
        return
    for entry in entries:
        yield from _walk_entry(Path(entry.path), entry, visited)


def _walk_entry(
    path: Path, entry: os.DirEntry[str], visited: set[tuple[int, int]]
) -> Iterator[ScanItem]:
    try:
        is_dir = entry.is_dir()
    except OSError:
        is_dir = False
    if is_dir:
        yield from _walk_dir(path, visited)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        yield ScanItem(str(path))


def read_done_paths(output: Path) -> set[str]:
    """Paths that already have a record in ``output`` (for ``--resume``).

    A torn last line (the previous run was killed mid-write) is ignored: that path is
    scanned again.
    """
    done: set[str] = set()
    if not output.exists():
        return done
    with output.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                done.add(record["path"])
    return done


def _truncate_torn_tail(output: Path) -> None:
    """Drop a partial last line so appended records start on a fresh line."""
    if not output.exists() or output.stat().st_size == 0:
        return
    with output.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.seek(data.rfind(b"\n") + 1)
        handle.truncate()


def record_path(path: str) -> str:
    """The path as it is written in a record: valid UTF-8 whatever the file system holds.

    POSIX names are bytes; one that is not UTF-8 arrives as a string with surrogate
    escapes, which neither JSON files nor Parquet can store. Such bytes are written as
    ``\\xff`` escapes, so the record stays readable and ``--resume`` still matches it.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def decision_record(path: str, decision: Decision) -> dict[str, Any]:
    data = decision.to_dict()
    return {
        "schema": RECORD_SCHEMA,
        "path": record_path(path),
        "action": data["action"],
        "categories": data["categories"],
        "regions": data["regions"],
        "reasons": data["reasons"],
        "hard_rule": data["hard_rule"],
        "policy_id": data["policy_id"],
        "sha256": data["sha256"],
        "frames": data["frames"],
        "error": None,
        "error_code": None,
    }


def error_record(path: str, error: ContentError, policy_id: str) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "path": record_path(path),
        "action": None,
        "categories": {},
        "regions": [],
        "reasons": [],
        "hard_rule": None,
        "policy_id": policy_id,
        "sha256": None,
        "frames": 0,
        "error": str(error),
        "error_code": error.code,
    }


Loaded = LoadedImage | ContentError


def load_tolerant(guard: Guard, source: str | bytes) -> Loaded:
    """Decode for analysis; every failure becomes a ContentError, never an exception.

    A decoder bug (an exception that is not a ContentError) must cost one record, not
    the scan. Shared by the JSONL scan and the scan engines.
    """
    try:
        return guard.load(source)
    except ContentError as exc:
        return exc
    except Exception as exc:
        return ContentError(
            f"unexpected decoder failure: {type(exc).__name__}: {exc}", code="corrupt"
        )


def _decode(guard: Guard, item: ScanItem) -> Loaded:
    return item.error if item.error is not None else load_tolerant(guard, item.path)


def _batched(items: Iterable[ScanItem], size: int) -> Iterator[list[ScanItem]]:
    batch: list[ScanItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def scan(
    guard: Guard,
    items: Iterable[ScanItem],
    sink: TextIO,
    *,
    batch_size: int = 16,
    workers: int = 2,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> ScanSummary:
    """Scan ``items`` with ``guard``, writing one JSON line per item to ``sink`` in order.

    Decoding of batch n+1 overlaps inference on batch n (a two-stage pipeline).
    """
    summary = ScanSummary()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: tuple[list[ScanItem], list[Future[Loaded]]] | None = None
        for batch in _batched(items, batch_size):
            futures = [pool.submit(_decode, guard, item) for item in batch]
            if pending is not None:
                _finish_batch(guard, *pending, sink, summary, on_record)
            pending = (batch, futures)
        if pending is not None:
            _finish_batch(guard, *pending, sink, summary, on_record)
    summary.seconds = time.perf_counter() - started
    return summary


def _finish_batch(
    guard: Guard,
    batch: list[ScanItem],
    futures: list[Future[Loaded]],
    sink: TextIO,
    summary: ScanSummary,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    loaded = [future.result() for future in futures]
    images = [x for x in loaded if isinstance(x, LoadedImage)]
    decisions = iter(check_tolerant(guard, images))
    for item, result in zip(batch, loaded, strict=True):
        outcome = result if isinstance(result, ContentError) else next(decisions)
        if isinstance(outcome, ContentError):
            record = error_record(item.path, outcome, guard.policy_id)
            summary.errors[outcome.code] += 1
        else:
            record = decision_record(item.path, outcome)
            summary.actions[record["action"]] += 1
        summary.total += 1
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        if on_record is not None:
            on_record(record)
    sink.flush()


def check_tolerant(guard: Guard, images: Sequence[LoadedImage]) -> list[Decision | ContentError]:
    """Check a batch; if the batch fails, retry one by one so only the culprit errors."""
    if not images:
        return []
    try:
        return list(guard.check_loaded(images))
    except Exception:
        results: list[Decision | ContentError] = []
        for image in images:
            try:
                results.append(guard.check_loaded([image])[0])
            except Exception as exc:
                results.append(
                    ContentError(
                        f"detector failed: {type(exc).__name__}: {exc}", code="detector_error"
                    )
                )
        return results
