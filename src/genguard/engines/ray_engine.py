"""The Ray Data engine: the same scan, spread over the cores of one machine or a cluster.

Pipeline (Ray Data's streaming executor, so memory stays bounded by back-pressure: a
stage that runs ahead is paused until the next one drains its queue):

1. **units**: a folder's files (rows of paths), or one row per tar shard / Parquet file;
2. **expand** (shards, Parquet): a generator task per unit yields sample rows (id, key,
   encoded bytes, or an error) in small blocks; a failed task is retried
   (``max_retries``), a corrupt shard becomes error rows, not a failure;
3. **check**: ``map_batches`` with a callable class: an actor pool of ``workers`` actors,
   each building its Guard once (one model load per actor) and checking batches of
   ``batch_size`` samples; an actor that dies is restarted and its batch retried
   (``max_restarts`` / ``max_task_retries``);
4. **write**: rows stream back to the driver, which appends them to one Parquet (or
   JSONL) file with a progress bar; or, when ``out`` is a directory, workers write
   Parquet part files themselves (``Dataset.write_parquet``, for very large scans).

Remote inputs (``s3://``, ``gs://``...) are read with Ray's own readers
(``read_binary_files`` for folders, ``read_parquet`` for tables).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genguard.engines.parquet_out import RowWriter, rows_to_table
from genguard.engines.records import ScanSummary
from genguard.engines.rows import BatchChecker
from genguard.engines.sources import Format, Sample, SourceOptions, expand_unit, list_units
from genguard.errors import MissingExtraError
from genguard.guard import Guard

#: CPUs reserved by the reading/expanding stages. Zero on purpose: the detector actors
#: are sized to take every CPU (``workers x cpus_per_worker``), and a read task waiting
#: for a free CPU while the actors wait for its output is a deadlock. Reading tar members
#: and Parquet pages is I/O and memcpy; decoding happens in the actors.
READ_CPUS = 0.0
#: Batches an actor works on at once (threads: onnxruntime and decoders release the GIL).
ACTOR_CONCURRENCY = 2
#: Samples per block produced by the expand stage: small enough that a shard of large
#: images does not make one huge block, large enough to amortise per-block overhead.
EXPAND_BLOCK_ROWS = 64


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. ``address=None`` starts a local Ray with ``num_cpus`` CPUs."""

    address: str | None = None
    num_cpus: int | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    batch_size: int = 8
    decode_threads: int = 2
    max_retries: int = 3
    object_store_memory: int | None = None
    #: Use Ray's readers (read_binary_files / read_parquet) even for local paths.
    ray_readers: bool = False


def ray_modules() -> tuple[Any, Any]:
    """Import Ray lazily: it is an optional extra (``pip install 'genguard[ray]'``)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError("ray", "ray", "the Ray engine") from exc
    return ray, ray.data


def _sample_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("key", pa.string()),
            ("data", pa.binary()),
            ("error", pa.string()),
            ("error_code", pa.string()),
        ]
    )


def samples_table(samples: Sequence[Sample]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist([s.to_row() for s in samples], schema=_sample_schema())


def expand_units(batch: Any, fmt: Format, options: SourceOptions) -> Iterator[Any]:
    """Ray Data generator UDF: unit rows (shard / Parquet paths) -> sample blocks."""
    for unit in batch.column("unit").to_pylist():
        chunk: list[Sample] = []
        for sample in expand_unit(str(unit), fmt, options):
            chunk.append(sample)
            if len(chunk) >= EXPAND_BLOCK_ROWS:
                yield samples_table(chunk)
                chunk = []
        if chunk:
            yield samples_table(chunk)


class GuardActor:
    """Ray Data callable class: one Guard per actor, built once in ``__init__``."""

    def __init__(self, guard_factory: Callable[[], Guard], decode_threads: int = 2) -> None:
        self.checker = BatchChecker(guard_factory, decode_threads=decode_threads)

    def __call__(self, batch: Any) -> Any:
        samples = [Sample.from_row(row) for row in batch.to_pylist()]
        return rows_to_table(self.checker(samples))


def _binary_files_to_samples(batch: Any) -> Any:
    rows = [
        Sample(id=str(p), path=str(p), data=bytes(b))
        for p, b in zip(
            batch.column("path").to_pylist(), batch.column("bytes").to_pylist(), strict=True
        )
    ]
    return samples_table(rows)


def _parquet_rows_to_samples(batch: Any, options: SourceOptions) -> Any:
    from genguard.engines.sources import _parquet_sample

    images = batch.column(options.image_column).to_pylist()
    ids = batch.column(options.id_column).to_pylist() if options.id_column else None
    paths = batch.column("path").to_pylist() if "path" in batch.column_names else None
    samples = []
    for index, value in enumerate(images):
        source = paths[index] if paths else "parquet"
        sample_id = str(ids[index]) if ids else f"{source}#{index}"
        samples.append(_parquet_sample(source, str(index), sample_id, value))
    return samples_table(samples)


def uses_ray_readers(paths: Sequence[str | Path], fmt: Format, options: RayOptions) -> bool:
    """Ray's own readers for remote URIs (or on request); shards always expand in tasks."""
    wanted = options.ray_readers or any("://" in str(p) for p in paths)
    return wanted and fmt in ("folder", "parquet")


def actor_cpus(ray: Any, options: RayOptions, readers: bool) -> float:
    """CPUs reserved per detector actor, so that the read stage can still be scheduled.

    Ray's file readers start with a file-listing task that needs one whole CPU; if the
    actors reserve every CPU of a small cluster, that task never runs and the scan
    hangs. The reservation is a scheduling token: an actor still uses the threads its
    models use.
    """
    total = float(ray.cluster_resources().get("CPU", 0.0))
    budget = total - 1.0 if readers else total
    workers = max(1, options.workers)
    if budget <= 0:
        return min(options.cpus_per_worker, max(0.01, total / (workers + 1)))
    return min(options.cpus_per_worker, budget / workers)


def build_dataset(
    paths: Sequence[str | Path], fmt: Format, source: SourceOptions, options: RayOptions
) -> Any:
    """The Ray dataset of sample rows for ``paths``."""
    _, data = ray_modules()
    if uses_ray_readers(paths, fmt, options) and fmt == "folder":
        ds = data.read_binary_files([str(p) for p in paths], include_paths=True, num_cpus=READ_CPUS)
        return ds.map_batches(_binary_files_to_samples, batch_format="pyarrow", num_cpus=READ_CPUS)
    if uses_ray_readers(paths, fmt, options):
        columns = [source.image_column] + ([source.id_column] if source.id_column else [])
        ds = data.read_parquet(
            [str(p) for p in paths], include_paths=True, num_cpus=READ_CPUS
        ).select_columns([*columns, "path"])
        return ds.map_batches(
            _parquet_rows_to_samples,
            fn_kwargs={"options": source},
            batch_format="pyarrow",
            num_cpus=READ_CPUS,
        )
    units = list_units(paths, fmt)
    if fmt == "folder":
        # Blocks of a few batches each, so that every actor gets work early on.
        blocks = max(1, min(-(-len(units) // max(1, options.batch_size)), 2000))
        rows = [sample.to_row() for sample in units]  # type: ignore[union-attr]
        return data.from_items(rows, override_num_blocks=blocks)
    ds = data.from_items([{"unit": str(u)} for u in units], override_num_blocks=len(units) or 1)
    return ds.map_batches(
        expand_units,
        fn_kwargs={"fmt": fmt, "options": source},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=READ_CPUS,
        max_retries=options.max_retries,
    )


def run_ray(
    paths: Sequence[str | Path],
    fmt: Format,
    guard_factory: Callable[[], Guard],
    writer: RowWriter | None,
    *,
    source: SourceOptions | None = None,
    options: RayOptions | None = None,
    out_dir: Path | None = None,
    on_rows: Callable[[Any], None] | None = None,
) -> ScanSummary:
    """Scan on Ray; rows go to ``writer`` (driver-side) or to ``out_dir`` part files."""
    options = options or RayOptions()
    source = source or SourceOptions()
    ray, data = ray_modules()
    started_here = _init_ray(ray, options)
    started = time.perf_counter()
    try:
        context = data.DataContext.get_current()
        context.enable_progress_bars = False  # genguard draws its own
        context.print_on_execution_start = False
        with warnings.catch_warnings():
            # Ray 2.5x deprecates passing max_restarts/max_task_retries as remote args but
            # has no named parameter for them yet.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = _pipeline(ray, data, paths, fmt, guard_factory, source, options)
        summary = _collect(ds, writer, out_dir, on_rows)
    finally:
        if started_here:
            ray.shutdown()
    summary.seconds = time.perf_counter() - started
    return summary


def _pipeline(
    ray: Any,
    data: Any,
    paths: Sequence[str | Path],
    fmt: Format,
    guard_factory: Callable[[], Guard],
    source: SourceOptions,
    options: RayOptions,
) -> Any:
    """Samples -> detector actor pool -> rows (lazy: nothing runs until consumed)."""
    return build_dataset(paths, fmt, source, options).map_batches(
        GuardActor,
        fn_constructor_kwargs={
            "guard_factory": guard_factory,
            "decode_threads": options.decode_threads,
        },
        batch_size=options.batch_size,
        batch_format="pyarrow",
        compute=data.ActorPoolStrategy(size=max(1, options.workers)),
        num_cpus=actor_cpus(ray, options, uses_ray_readers(paths, fmt, options)),
        max_restarts=options.max_retries,
        max_task_retries=options.max_retries,
        # Two batches in flight per actor: one decodes while the other is in the
        # models (the local engine's overlap, inside each actor).
        max_concurrency=ACTOR_CONCURRENCY,
    )


def _init_ray(ray: Any, options: RayOptions) -> bool:
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if options.address:
        kwargs["address"] = options.address
    else:
        kwargs["num_cpus"] = options.num_cpus
        if options.object_store_memory:
            kwargs["object_store_memory"] = options.object_store_memory
    ray.init(**kwargs)
    return True


def _collect(
    ds: Any, writer: RowWriter | None, out_dir: Path | None, on_rows: Callable[[Any], None] | None
) -> ScanSummary:
    summary = ScanSummary()
    if out_dir is not None:
        import pyarrow.parquet as pq

        ds.write_parquet(str(out_dir))
        # Tally from the written files (two small columns), not by re-running the models.
        written = pq.read_table(str(out_dir), columns=["action", "error_code"])
        for action, code in zip(
            written.column("action").to_pylist(),
            written.column("error_code").to_pylist(),
            strict=True,
        ):
            _tally(summary, action, code, 1)
        return summary
    assert writer is not None
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        writer.write_table(table)
        for action, code in zip(
            table.column("action").to_pylist(), table.column("error_code").to_pylist(), strict=True
        ):
            _tally(summary, action, code, 1)
        if on_rows is not None:
            on_rows(table)
    return summary


def _tally(summary: ScanSummary, action: str | None, code: str | None, count: int) -> None:
    summary.total += count
    if code:
        summary.errors[code] += count
    elif action:
        summary.actions[action] += count
