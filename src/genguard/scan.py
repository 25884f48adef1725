"""``genguard scan`` to JSONL: one record per input, in order, resumable.

This is a writer on the local engine (:mod:`genguard.engines.local`), not a pipeline of
its own: the folder walk, decoding, tolerant checking and records are the engine's, so
a JSONL scan and a Parquet scan give the same verdicts. What is added here is what a
JSONL file allows: records appended as they are made (a killed scan loses at most the
line being written) and ``--resume``, which skips paths already in the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from genguard.engines.local import run_local
from genguard.engines.records import (
    RECORD_SCHEMA,
    Loaded,
    ScanSummary,
    check_tolerant,
    decision_record,
    error_record,
    load_tolerant,
    record_path,
)
from genguard.engines.sources import IMAGE_EXTENSIONS, Sample, ScanItem, walk
from genguard.guard import Guard

__all__ = [
    "IMAGE_EXTENSIONS",
    "RECORD_SCHEMA",
    "JsonlRecordWriter",
    "Loaded",
    "ScanItem",
    "ScanSummary",
    "check_tolerant",
    "decision_record",
    "error_record",
    "load_tolerant",
    "read_done_paths",
    "record_path",
    "scan",
    "scan_to_file",
    "truncate_torn_tail",
    "walk",
]


class JsonlRecordWriter:
    """Scan records as JSON lines on ``sink``, flushed after every batch."""

    def __init__(
        self, sink: TextIO, on_record: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.sink = sink
        self.on_record = on_record

    def write_records(self, samples: Sequence[Sample], records: list[dict[str, Any]]) -> None:
        for record in records:
            self.sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            if self.on_record is not None:
                self.on_record(record)
        self.sink.flush()


def scan(
    guard: Guard,
    items: Iterable[ScanItem],
    sink: TextIO,
    *,
    batch_size: int = 16,
    workers: int = 2,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> ScanSummary:
    """Scan ``items`` with ``guard``, writing one JSON line per item to ``sink`` in order."""
    samples = (Sample(id=item.path, path=item.path, error=item.error) for item in items)
    return run_local(
        samples,
        lambda: guard,
        JsonlRecordWriter(sink, on_record),
        batch_size=batch_size,
        decode_threads=workers,
    )


def scan_to_file(
    guard: Guard,
    paths: Sequence[str | Path],
    out: Path,
    *,
    resume: bool = False,
    batch_size: int = 8,
    workers: int = 2,
    on_start: Callable[[int], None] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> ScanSummary:
    """Walk ``paths`` and scan them into the JSONL file ``out`` (appending with ``resume``).

    ``on_start(n)`` is told how many inputs will be scanned (after resume skips its own).
    """
    done = read_done_paths(out) if resume else set()
    items = [item for item in walk(paths) if record_path(item.path) not in done]
    if resume:
        truncate_torn_tail(out)
    if on_start is not None:
        on_start(len(items))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a" if resume else "w", encoding="utf-8") as sink:
        summary = scan(
            guard, items, sink, batch_size=batch_size, workers=workers, on_record=on_record
        )
    summary.skipped_resumed = len(done)
    return summary


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


def truncate_torn_tail(output: Path) -> None:
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
