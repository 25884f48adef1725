"""The local engine: one process, decoding the next batch while the models run.

Every scan on one machine runs here (``genguard scan`` of a folder to JSONL with
``--resume``, tar shards or Parquet to Parquet, the Python API): sources give samples,
the engine turns each batch into scan records in input order, and a writer stores them
(JSONL records, or flat rows in Parquet/JSONL). On one machine it has no cluster to start
and no objects to move between processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from genguard.engines.records import Loaded, ScanSummary
from genguard.engines.rows import BatchChecker
from genguard.engines.sources import Sample
from genguard.guard import Guard


class RecordWriter(Protocol):
    """Where a batch's records go (in input order), flushed before the next batch."""

    def write_records(self, samples: Sequence[Sample], records: list[dict[str, Any]]) -> None: ...


def batched(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_local(
    samples: Iterable[Sample],
    guard_factory: Callable[[], Guard],
    writer: RecordWriter,
    *,
    batch_size: int = 8,
    decode_threads: int = 2,
    on_records: Callable[[list[dict[str, Any]]], None] | None = None,
) -> ScanSummary:
    """Scan ``samples`` in order, writing one record per sample; returns the tallies.

    Decoding of batch n+1 (on ``decode_threads`` threads) overlaps inference on batch n.
    """
    summary = ScanSummary()
    started = time.perf_counter()
    checker = BatchChecker(guard_factory, decode_threads=decode_threads)
    try:
        with ThreadPoolExecutor(max_workers=1) as stage:
            pending: tuple[list[Sample], Future[list[Loaded]]] | None = None
            for batch in batched(samples, batch_size):
                future = stage.submit(checker.decode, batch)
                if pending is not None:
                    _finish(checker, *pending, writer, summary, on_records)
                pending = (batch, future)
            if pending is not None:
                _finish(checker, *pending, writer, summary, on_records)
    finally:
        checker.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _finish(
    checker: BatchChecker,
    batch: list[Sample],
    future: Future[list[Loaded]],
    writer: RecordWriter,
    summary: ScanSummary,
    on_records: Callable[[list[dict[str, Any]]], None] | None,
) -> None:
    records = checker.records(batch, future.result())
    writer.write_records(batch, records)
    summary.count(records)
    if on_records is not None:
        on_records(records)
