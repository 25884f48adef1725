"""Output writers: Parquet (one row per sample, fixed schema) or JSONL.

Why a fixed schema: every batch (and every Ray worker) must produce the same column
types, even a batch made only of error rows where every score is null; a schema
inferred per batch would make the file unreadable as one table.

Rows are written as they arrive (one Parquet row group per ``row_group_rows`` rows), so
a scan that is interrupted still leaves a readable file with everything scanned before:
the writer is closed in a ``finally`` by the engines. (A process killed with SIGKILL
cannot write the Parquet footer; JSONL output survives even that.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from genguard.engines.rows import SCORE_CATEGORIES, sample_row
from genguard.errors import MissingExtraError


def _pa() -> Any:
    try:
        import pyarrow as pa
    except ImportError as exc:
        raise MissingExtraError("pyarrow", "parquet", "Parquet output") from exc
    return pa


@lru_cache(maxsize=1)
def row_schema() -> Any:
    """The pyarrow schema of an output row."""
    pa = _pa()
    return pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("key", pa.string()),
            ("action", pa.string()),
            *[(f"score_{name}", pa.float64()) for name in SCORE_CATEGORIES],
            ("categories", pa.string()),
            ("reasons", pa.list_(pa.string())),
            ("hard_rule", pa.string()),
            ("regions", pa.string()),
            ("sha256", pa.string()),
            ("frames", pa.int32()),
            ("error", pa.string()),
            ("error_code", pa.string()),
            ("policy_id", pa.string()),
        ]
    )


def flatten(samples: Sequence[Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [sample_row(s.id, s.key, r) for s, r in zip(samples, records, strict=True)]


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    return _pa().Table.from_pylist(rows, schema=row_schema())


class RowWriter(Protocol):
    def write_records(self, samples: Sequence[Any], records: list[dict[str, Any]]) -> None: ...

    def write_rows(self, rows: list[dict[str, Any]]) -> None: ...

    def write_table(self, table: Any) -> None: ...

    def close(self) -> None: ...


class ParquetRowWriter:
    """Appends rows to one Parquet file, a row group at a time."""

    def __init__(self, path: Path, row_group_rows: int = 4096) -> None:
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(str(path), row_schema(), compression="zstd")
        self._pending: list[Any] = []
        self._pending_rows = 0
        self.row_group_rows = row_group_rows

    def write_records(self, samples: Sequence[Any], records: list[dict[str, Any]]) -> None:
        """Scan records flattened into rows (one per sample)."""
        self.write_rows(flatten(samples, records))

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.write_table(rows_to_table(rows))

    def write_table(self, table: Any) -> None:
        self._pending.append(table.cast(row_schema()))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(_pa().concat_tables(self._pending))
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


class JsonlRowWriter:
    """One JSON object per line, flushed per batch (survives a killed process)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("w", encoding="utf-8")

    def write_records(self, samples: Sequence[Any], records: list[dict[str, Any]]) -> None:
        """Scan records flattened into rows (one per sample)."""
        self.write_rows(flatten(samples, records))

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def write_table(self, table: Any) -> None:
        self.write_rows(table.to_pylist())

    def close(self) -> None:
        self._handle.close()


def open_writer(out: Path) -> RowWriter:
    """Parquet for ``.parquet``/``.pq``, JSONL otherwise."""
    if out.suffix.lower() in (".parquet", ".pq"):
        return ParquetRowWriter(out)
    return JsonlRowWriter(out)
