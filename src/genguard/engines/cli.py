"""The one call ``genguard scan`` makes for ``--format`` / ``--engine`` / Parquet output.

The default case (a folder, the local engine, ``--out x.jsonl``, ``--resume``) writes
scan records with :func:`genguard.scan.scan_to_file`; everything else goes through
:func:`engine_scan`, which turns CLI option values into a
:func:`genguard.engines.run_scan` call. Both run on the local (or Ray) engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genguard.engines import GuardFactory, ScanOptions, SourceOptions, run_scan
from genguard.engines.records import ScanSummary
from genguard.errors import ConfigError
from genguard.guard import DEFAULT_BACKENDS


def needs_engine(fmt: str, engine: str, out: Path) -> bool:
    """True when ``genguard scan`` must use :func:`engine_scan` rather than its JSONL scan."""
    return fmt != "folder" or engine != "local" or out.suffix.lower() in ("", ".parquet", ".pq")


def engine_scan(
    paths: Sequence[str | Path],
    *,
    out: Path,
    fmt: str = "folder",
    engine: str = "local",
    policy: str = "standard",
    backends: Sequence[str] | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    workers: int = 2,
    cpus_per_worker: float = 1.0,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    image_column: str = "image",
    id_column: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ScanSummary:
    """Run a scan from ``genguard scan`` option values; returns the tallies to print."""
    if resume:
        raise ConfigError(
            "--resume works with JSONL output of the local folder scan only; "
            "Parquet and Ray scans start over (their output is rewritten)"
        )
    if not out.suffix and engine != "ray":
        raise ConfigError(f"--out {out}: give a .parquet or .jsonl file (directories: Ray only)")
    factory = GuardFactory(
        policy=policy, backends=tuple(backends or DEFAULT_BACKENDS), threads=threads
    )
    options = ScanOptions(
        batch_size=batch_size,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        ray_address=ray_address,
        num_cpus=num_cpus,
        progress=progress,
    )
    source = SourceOptions(image_column=image_column, id_column=id_column)
    return run_scan(
        list(paths),
        out=out,
        fmt=fmt,
        engine=engine,
        guard_factory=factory,
        options=options,
        source=source,
    )
