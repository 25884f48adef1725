"""Where scan samples come from: folders, WebDataset tar shards, Parquet tables.

Each source yields :class:`Sample` objects: an id, where it came from, and either the
encoded image bytes, a path to read, or the :class:`ContentError` that makes it
unusable. A source never raises for bad *data*: a corrupt shard, a truncated tar, a
Parquet file that cannot be read or a row without an image become error samples (and so
error rows in the output), and the scan goes on. Nothing is silently dropped.

Folders are walked recursively in a stable, sorted order (directory symlinks followed,
loops reported). Sources are split into *units* (a folder's files, one shard, one Parquet
file) so that the Ray engine can expand units on its workers, in parallel, close to the data.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genguard.content import DEFAULT_MAX_BYTES
from genguard.errors import ConfigError, ContentError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".avif"}
)


@dataclass(frozen=True)
class ScanItem:
    """One input of a scan: a path, or a path that could not even be listed."""

    path: str
    error: ContentError | None = None


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


Format = Literal["folder", "webdataset", "parquet"]
FORMATS: tuple[str, ...] = ("folder", "webdataset", "parquet")
#: WebDataset image members, by preference when a sample has several.
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "avif", "bmp", "tif", "tiff", "gif", "jfif")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class SourceOptions:
    """Per-format options: Parquet column names, and the largest member read."""

    image_column: str = "image"
    id_column: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Parquet rows read at a time (bounds memory on tables of large images).
    parquet_batch_rows: int = 256


@dataclass
class Sample:
    """One image to scan, or the reason it cannot be scanned."""

    id: str
    path: str
    key: str | None = None
    data: bytes | None = None
    error: ContentError | None = None

    def to_row(self) -> dict[str, Any]:
        """Plain columns, so that samples can travel through Ray Data blocks."""
        return {
            "id": self.id,
            "path": self.path,
            "key": self.key,
            "data": self.data,
            "error": str(self.error) if self.error else None,
            "error_code": self.error.code if self.error else None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        error = None
        if row.get("error_code"):
            error = ContentError(str(row.get("error") or ""), code=str(row["error_code"]))
        data = row.get("data")
        return cls(
            id=str(row["id"]),
            path=str(row["path"]),
            key=None if row.get("key") is None else str(row["key"]),
            data=bytes(data) if data is not None else None,
            error=error,
        )


def check_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


# -- units ------------------------------------------------------------------------------


def list_units(paths: Sequence[str | Path], fmt: Format) -> list[Sample] | list[str]:
    """Folder: one Sample per file (walked like ``genguard scan``). Others: file paths of
    shards / Parquet files (folders searched recursively, sorted)."""
    if not paths:
        raise ConfigError("give at least one file or folder to scan")
    if fmt == "folder":
        return [
            Sample(id=item.path, path=item.path, error=item.error) for item in walk(list(paths))
        ]
    suffixes = SHARD_SUFFIXES if fmt == "webdataset" else (".parquet", ".pq")
    return _files_with_suffix(paths, suffixes)


def _files_with_suffix(paths: Sequence[str | Path], suffixes: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.name.lower().endswith(suffixes)
            )
        else:
            found.append(str(path))  # explicit files are always taken (errors if unusable)
    return found


def expand_unit(unit: str, fmt: Format, options: SourceOptions) -> Iterator[Sample]:
    """The samples of one shard or Parquet file."""
    if fmt == "webdataset":
        return shard_samples(unit, options)
    if fmt == "parquet":
        return parquet_samples(unit, options)
    raise ConfigError(f"format {fmt!r} has no units to expand")


def iter_samples(
    paths: Sequence[str | Path], fmt: Format, options: SourceOptions | None = None
) -> Iterator[Sample]:
    """Every sample of the inputs, in a stable order (for the local engine)."""
    options = options or SourceOptions()
    units = list_units(paths, fmt)
    if fmt == "folder":
        yield from units  # type: ignore[misc]
        return
    for unit in units:
        yield from expand_unit(str(unit), fmt, options)


# -- WebDataset tar shards --------------------------------------------------------------


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset convention: ``dir/sample001.seg.jpg`` -> key ``dir/sample001``,
    suffix ``seg.jpg`` (everything after the first dot of the base name)."""
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def shard_samples(shard: str, options: SourceOptions | None = None) -> Iterator[Sample]:
    """Samples of one tar shard, grouped by key; the image member chosen by extension.

    A shard that cannot be opened, or that breaks part way (truncated download, bad
    header), yields the samples completed before the damage and then one error sample
    for the shard (``<shard>#error``), so the loss is visible and counted.
    """
    options = options or SourceOptions()
    try:
        size = os.stat(shard).st_size
    except OSError as exc:
        yield _shard_error(shard, f"cannot open shard: {exc.strerror}", "not_found")
        return
    if size == 0:
        yield _shard_error(shard, "empty shard (0 bytes)", "empty_file")
        return
    current_key: str | None = None
    members: dict[str, bytes | ContentError] = {}
    try:
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = split_member_name(member.name)
                if key != current_key:
                    if current_key is not None:
                        yield _shard_sample(shard, current_key, members)
                    current_key, members = key, {}
                members[suffix] = _read_member(archive, member, options)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # The sample being read when the shard broke may be incomplete: report it as part
        # of the shard error rather than scoring half a sample.
        where = f" in sample {current_key!r}" if current_key else ""
        code = "truncated" if _looks_truncated(exc) else "corrupt_shard"
        yield _shard_error(shard, f"shard unreadable{where}: {exc}", code)
        return
    if current_key is not None:
        yield _shard_sample(shard, current_key, members)


def _looks_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or "unexpected end" in text or "truncated" in text


def _read_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, options: SourceOptions
) -> bytes | ContentError:
    if member.size > options.max_bytes:
        return ContentError(
            f"member {member.name} is {member.size} bytes, above {options.max_bytes}",
            code="too_large",
        )
    handle = archive.extractfile(member)
    if handle is None:
        return ContentError(f"member {member.name} cannot be read", code="corrupt_shard")
    data = handle.read()
    if len(data) != member.size:
        raise EOFError(f"member {member.name} is truncated ({len(data)} of {member.size} bytes)")
    return data


def _shard_sample(shard: str, key: str, members: dict[str, bytes | ContentError]) -> Sample:
    sample_id = f"{shard}#{key}"
    suffix = next((s for s in IMAGE_SUFFIXES if s in members), None)
    if suffix is None:  # e.g. "seg.jpg", or an unusual image suffix: take the last part
        suffix = next((s for s in members if "." + s.rpartition(".")[2] in IMAGE_EXTENSIONS), None)
    if suffix is None:
        found = ", ".join(sorted(members)) or "nothing"
        return Sample(
            sample_id,
            shard,
            key,
            error=ContentError(f"sample has no image member (found: {found})", code="no_image"),
        )
    payload = members[suffix]
    if isinstance(payload, ContentError):
        return Sample(sample_id, shard, key, error=payload)
    return Sample(sample_id, shard, key, data=payload)


def _shard_error(shard: str, message: str, code: str) -> Sample:
    return Sample(f"{shard}#error", shard, None, error=ContentError(message, code=code))


# -- Parquet ----------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        from genguard.errors import MissingExtraError

        raise MissingExtraError("pyarrow", "parquet", "Parquet input and output") from exc
    return pq


def parquet_samples(path: str, options: SourceOptions | None = None) -> Iterator[Sample]:
    """Samples of one Parquet file: ``image_column`` holds bytes, a path, or a struct
    with ``bytes``/``path`` fields (the Hugging Face ``datasets`` image layout)."""
    options = options or SourceOptions()
    pq = _pyarrow()
    try:
        table_file = pq.ParquetFile(path)
    except Exception as exc:  # missing, empty or not Parquet: one error row for the file
        code = "not_found" if isinstance(exc, FileNotFoundError) else "corrupt_parquet"
        yield Sample(f"{path}#error", path, None, error=ContentError(str(exc), code=code))
        return
    columns = _parquet_columns(table_file, path, options)
    row = 0
    try:
        for batch in table_file.iter_batches(
            batch_size=options.parquet_batch_rows, columns=columns
        ):
            images = batch.column(options.image_column).to_pylist()
            ids = batch.column(options.id_column).to_pylist() if options.id_column else None
            for offset, value in enumerate(images):
                sample_id = f"{path}#{row}" if ids is None else str(ids[offset])
                yield _parquet_sample(path, str(row), sample_id, value)
                row += 1
    except Exception as exc:
        message = f"Parquet file unreadable after {row} rows: {exc}"
        error = ContentError(message, code="corrupt_parquet")
        yield Sample(f"{path}#error", path, None, error=error)


def _parquet_columns(table_file: Any, path: str, options: SourceOptions) -> list[str]:
    names = table_file.schema_arrow.names
    wanted = [options.image_column] + ([options.id_column] if options.id_column else [])
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ConfigError(
            f"{path} has no column {', '.join(map(repr, missing))}; columns: {', '.join(names)} "
            "(choose with --image-column / --id-column)"
        )
    return wanted


def _parquet_sample(path: str, key: str, sample_id: str, value: Any) -> Sample:
    if isinstance(value, dict):  # {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if value is None:
        error = ContentError("row has no image (null)", code="missing_image")
        return Sample(sample_id, path, key, error=error)
    if isinstance(value, bytes | bytearray):
        return Sample(sample_id, path, key, data=bytes(value))
    image_path = Path(str(value))
    if not image_path.is_absolute() and not image_path.exists():
        image_path = Path(path).parent / image_path  # relative to the table's folder
    return Sample(sample_id, str(image_path), key)
