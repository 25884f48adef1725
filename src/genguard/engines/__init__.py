"""Scan engines: the same scan over folders, WebDataset shards or Parquet, locally or on Ray.

>>> from genguard.engines import run_scan
>>> summary = run_scan(["shards/"], fmt="webdataset", engine="ray", out=Path("scores.parquet"))

One row per sample (id, path, key, ``score_<category>``, action, error, error_code,
policy_id...): see :mod:`genguard.engines.parquet_out`. The local engine is the default;
Ray is an optional extra (``pip install 'genguard[ray]'``). See ``docs/scale.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from genguard.engines.parquet_out import open_writer, row_schema
from genguard.engines.records import ScanSummary
from genguard.engines.rows import SCORE_CATEGORIES, GuardFactory
from genguard.engines.sources import (
    FORMATS,
    Format,
    Sample,
    SourceOptions,
    check_format,
    iter_samples,
    list_units,
)
from genguard.errors import ConfigError
from genguard.guard import Guard
from genguard.progress import Progress, progress_bar

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")

__all__ = [
    "ENGINES",
    "FORMATS",
    "SCORE_CATEGORIES",
    "Engine",
    "Format",
    "GuardFactory",
    "Sample",
    "ScanOptions",
    "SourceOptions",
    "read_rows",
    "row_schema",
    "run_scan",
]


@dataclass(frozen=True)
class ScanOptions:
    """Engine knobs. ``workers``: decode threads (local) or detector actors (Ray)."""

    batch_size: int = 8
    workers: int = 2
    cpus_per_worker: float = 1.0
    ray_address: str | None = None
    num_cpus: int | None = None
    max_retries: int = 3
    ray_readers: bool = False
    progress: bool = True


def run_scan(
    paths: Sequence[str | Path],
    *,
    out: Path,
    fmt: str = "folder",
    engine: str = "local",
    guard_factory: Callable[[], Guard] | None = None,
    options: ScanOptions | None = None,
    source: SourceOptions | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> ScanSummary:
    """Scan images from ``paths`` and write one row per sample to ``out``.

    ``out`` ending in ``.parquet`` (or ``.pq``) is a Parquet file, anything else JSONL;
    with the Ray engine, an ``out`` without a suffix is a directory of Parquet part
    files written by the workers. ``guard_factory`` builds the Guard in each worker
    (default: ``GuardFactory()``, the standard policy with NudeNet + OpenNSFW).
    Bad inputs (corrupt images, shards, Parquet files) become error rows; a
    :class:`ConfigError` is raised only for unusable *arguments*. ``on_rows(n)`` is
    called as each batch of ``n`` rows is written (progress, benchmarks).
    """
    fmt_checked = check_format(fmt)
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    options = options or ScanOptions()
    source = source or SourceOptions()
    factory = guard_factory or GuardFactory()
    if engine == "ray":
        return _run_ray(paths, fmt_checked, factory, out, options, source, on_rows)
    return _run_local(paths, fmt_checked, factory, out, options, source, on_rows)


def _run_local(
    paths: Sequence[str | Path],
    fmt: Format,
    factory: Callable[[], Guard],
    out: Path,
    options: ScanOptions,
    source: SourceOptions,
    on_rows: Callable[[int], None] | None,
) -> ScanSummary:
    from genguard.engines.local import run_local

    total = _total(paths, fmt)
    writer = open_writer(out)
    try:
        with progress_bar(options.progress) as bar:
            task = bar.add_task("scanning (local)", total=total)
            return run_local(
                iter_samples(paths, fmt, source),
                factory,
                writer,
                batch_size=options.batch_size,
                decode_threads=options.workers,
                on_records=lambda rows: _advance(bar, task, len(rows), on_rows),
            )
    finally:
        writer.close()


def _run_ray(
    paths: Sequence[str | Path],
    fmt: Format,
    factory: Callable[[], Guard],
    out: Path,
    options: ScanOptions,
    source: SourceOptions,
    on_rows: Callable[[int], None] | None,
) -> ScanSummary:
    from genguard.engines.ray_engine import RayOptions, run_ray

    if isinstance(factory, GuardFactory) and factory.threads is None:
        per_model = options.cpus_per_worker / max(1, len(factory.backends))
        factory = replace(factory, threads=max(1, round(per_model)))
    ray_options = RayOptions(
        address=options.ray_address,
        num_cpus=options.num_cpus,
        workers=options.workers,
        cpus_per_worker=options.cpus_per_worker,
        batch_size=options.batch_size,
        max_retries=options.max_retries,
        ray_readers=options.ray_readers,
    )
    if not out.suffix:
        return run_ray(paths, fmt, factory, None, source=source, options=ray_options, out_dir=out)
    total = None if ray_options.ray_readers else _total(paths, fmt)
    writer = open_writer(out)
    try:
        with progress_bar(options.progress) as bar:
            task = bar.add_task("scanning (ray)", total=total)
            return run_ray(
                paths,
                fmt,
                factory,
                writer,
                source=source,
                options=ray_options,
                on_rows=lambda table: _advance(bar, task, table.num_rows, on_rows),
            )
    finally:
        writer.close()


def _advance(bar: Progress, task: Any, count: int, on_rows: Callable[[int], None] | None) -> None:
    bar.advance(task, count)
    if on_rows is not None:
        on_rows(count)


def _total(paths: Sequence[str | Path], fmt: Format) -> int | None:
    """Sample count for the progress bar when it is cheap to know (folders, Parquet)."""
    if any("://" in str(p) for p in paths):
        return None
    if fmt == "folder":
        return len(list_units(paths, fmt))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total = 0
        for unit in list_units(paths, fmt):
            try:
                total += pq.ParquetFile(str(unit)).metadata.num_rows
            except Exception:
                total += 1  # the file's error row
        return total
    return None  # tar shards: counting means reading them


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Read a scan output back (Parquet file or directory, or JSONL) as a list of rows."""
    if out.is_dir() or out.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(str(out)).to_pylist()
    import json

    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
