"""The local engine: one process, decoding the next batch while the models run.

The same two-stage pipeline as :func:`genguard.scan.scan`, over any source (folders,
tar shards, Parquet) and writing rows (Parquet or JSONL). It is the default engine:
on one machine it has no cluster to start and no objects to move between processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from genguard.engines.parquet_out import RowWriter
from genguard.engines.rows import BatchChecker, Loaded, rows_for
from genguard.engines.sources import Sample
from genguard.guard import Guard
from genguard.scan import ScanSummary


def batched(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def count_rows(summary: ScanSummary, rows: list[dict[str, Any]]) -> None:
    """Tally actions and error codes of written rows into ``summary``."""
    for row in rows:
        summary.total += 1
        if row["error_code"]:
            summary.errors[row["error_code"]] += 1
        else:
            summary.actions[row["action"]] += 1


def run_local(
    samples: Iterable[Sample],
    guard_factory: Callable[[], Guard],
    writer: RowWriter,
    *,
    batch_size: int = 8,
    decode_threads: int = 2,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> ScanSummary:
    """Scan ``samples`` in order, writing one row per sample; returns the tallies."""
    summary = ScanSummary()
    started = time.perf_counter()
    checker = BatchChecker(guard_factory, decode_threads=decode_threads)
    with ThreadPoolExecutor(max_workers=1) as stage:
        pending: tuple[list[Sample], Future[list[Loaded]]] | None = None
        for batch in batched(samples, batch_size):
            future = stage.submit(checker.decode, batch)
            if pending is not None:
                _finish(checker, *pending, writer, summary, on_rows)
            pending = (batch, future)
        if pending is not None:
            _finish(checker, *pending, writer, summary, on_rows)
    summary.seconds = time.perf_counter() - started
    return summary


def _finish(
    checker: BatchChecker,
    batch: list[Sample],
    future: Future[list[Loaded]],
    writer: RowWriter,
    summary: ScanSummary,
    on_rows: Callable[[list[dict[str, Any]]], None] | None,
) -> None:
    rows = rows_for(checker.guard, batch, future.result())
    writer.write_rows(rows)
    count_rows(summary, rows)
    if on_rows is not None:
        on_rows(rows)
