"""Streaming reader and writer for the safetensors format, in pure numpy.

Why not ``safetensors.numpy`` alone: numpy has no bfloat16, so ``safe_open(...,
framework="numpy")`` refuses BF16 checkpoints, and ``save_file`` needs every tensor in
memory at once. The format is simple enough to stream ourselves:

    8 bytes little-endian header length N | N bytes JSON header | raw tensor bytes

The JSON maps each key to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the start of the data section) plus an optional ``"__metadata__"`` dict of
strings. :class:`SafetensorsReader` parses and validates the header, then reads one tensor
at a time with ``readinto`` (no mmap, so the page cache never counts against our RSS).
:class:`SafetensorsWriter` precomputes the header from shapes and dtypes, writes tensor
bytes in order as they are produced, and rewrites the header at the end (it reserves
padding so metadata known only at the end, such as source hashes, still fits).

BF16 is handled by bit manipulation: widening puts the 16 bits in the high half of a
float32; narrowing rounds to nearest-even. Files written here load with the official
``safetensors`` library (the tests check this).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from genguard.errors import GenguardError

#: safetensors dtype name -> numpy dtype used to hold the raw bytes.
RAW_DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; see bf16_to_f32 / f32_to_bf16
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
    "F8_E4M3": np.dtype("u1"),  # raw bytes only: copied, never merged
    "F8_E5M2": np.dtype("u1"),
}
#: Float dtypes that merge methods can do arithmetic on.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
#: Short user-facing names for output dtypes.
DTYPE_ALIASES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # same limit as the reference implementation
_HEADER_RESERVE = 4096  # spare bytes for metadata filled in after the data is written


class SafetensorsFormatError(GenguardError):
    """A file is not a valid safetensors file (or not one at all)."""

    code = "bad_safetensors"


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a file, and what it is."""

    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offset of the first byte
    end: int

    @property
    def nbytes(self) -> int:
        """Size of the tensor's raw data."""
        return self.end - self.begin

    @property
    def is_float(self) -> bool:
        """Whether merge arithmetic applies to this tensor."""
        return self.dtype in FLOAT_DTYPES


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32: bf16 is the top half of an f32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """Narrow float32 to raw bfloat16 bits with round-to-nearest-even (NaN stays NaN)."""
    values = np.asarray(values, dtype=np.float32)
    u = np.ascontiguousarray(values).reshape(values.shape).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Convert a raw tensor as read from disk to float32 for arithmetic."""
    if dtype == "BF16":
        return bf16_to_f32(raw)
    if dtype not in FLOAT_DTYPES:
        raise SafetensorsFormatError(f"cannot do float arithmetic on a {dtype} tensor")
    return raw.astype(np.float32, copy=False)


def from_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Convert float32 results to the raw on-disk representation of ``dtype``."""
    if dtype == "BF16":
        return f32_to_bf16(values)
    if dtype not in FLOAT_DTYPES:
        raise SafetensorsFormatError(f"cannot store float results as {dtype}")
    return values.astype(RAW_DTYPES[dtype], copy=False)


def _describe_non_safetensors(head: bytes, path: Path) -> str:
    """Explain what a file that failed to parse probably is, so the user knows what to do."""
    if head.startswith(b"PK"):
        kind = "a zip archive (PyTorch .ckpt/.pt pickle?)"
    elif head[:1] == b"\x80":
        kind = "a Python pickle (.ckpt/.bin?)"
    elif head.startswith(b"GGUF"):
        kind = "a GGUF file"
    else:
        kind = "not a safetensors file"
    return (
        f"{path}: {kind}. Only .safetensors checkpoints are supported (pickle checkpoints "
        "can run code when loaded); convert it to safetensors first."
    )


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key written twice (json keeps the last one silently, so
    two readers of one file could see different tensors)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class SafetensorsReader:
    """Random access to the tensors of one safetensors file, one tensor at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SafetensorsFormatError(f"{self.path}: no such file")
        self._file: io.BufferedReader = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        try:
            self.tensors, self.metadata = self._parse_header()
        except BaseException:
            self._file.close()
            raise

    def _parse_header(self) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(8)
        if len(head) < 8:
            raise SafetensorsFormatError(_describe_non_safetensors(head, self.path))
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER_BYTES or n + 8 > size:
            raise SafetensorsFormatError(_describe_non_safetensors(head, self.path))
        try:
            header = json.loads(self._file.read(n), object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            raise SafetensorsFormatError(
                f"{self.path}: the header names {exc.args[0]!r} twice (which one is meant?)"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            msg = _describe_non_safetensors(head, self.path)
            raise SafetensorsFormatError(msg) from exc
        except RecursionError:
            raise SafetensorsFormatError(
                f"{self.path}: the JSON header is nested too deeply to be a safetensors header"
            ) from None
        if not isinstance(header, dict):
            raise SafetensorsFormatError(_describe_non_safetensors(head, self.path))
        metadata = self._parse_metadata(header.pop("__metadata__", None))
        data_start = 8 + n
        tensors: dict[str, TensorInfo] = {}
        for key, entry in header.items():
            tensors[key] = self._parse_entry(key, entry, data_start, size)
        self._check_layout(tensors, size - data_start)
        return tensors, metadata

    def _parse_metadata(self, metadata: Any) -> dict[str, str]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise SafetensorsFormatError(
                f"{self.path}: __metadata__ must be an object of strings, "
                f"not {type(metadata).__name__}"
            )
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise SafetensorsFormatError(
                    f"{self.path}: __metadata__ value {k!r} must be a string, "
                    f"not {type(v).__name__}"
                )
        return dict(metadata)

    def _check_layout(self, tensors: dict[str, TensorInfo], data_bytes: int) -> None:
        """The tensors tile the data section exactly, as the reference library requires:
        no byte shared by two tensors, no hole between them (bytes no tensor accounts
        for could hide anything), nothing after the last one."""
        spans = sorted((i.begin, i.end, k) for k, i in tensors.items() if i.end > i.begin)
        for (_, prev_end, prev), (begin, _, key) in itertools.pairwise(spans):
            if begin < prev_end:
                raise SafetensorsFormatError(
                    f"{self.path}: tensors {prev!r} and {key!r} have overlapping data_offsets"
                )
            if begin > prev_end:
                raise SafetensorsFormatError(
                    f"{self.path}: {begin - prev_end} bytes between tensors {prev!r} and "
                    f"{key!r} belong to no tensor"
                )
        data_start = self.path.stat().st_size - data_bytes
        first = spans[0][0] - data_start if spans else 0
        used_end = spans[-1][1] - data_start if spans else 0
        if first > 0:
            raise SafetensorsFormatError(
                f"{self.path}: {first} bytes before the first tensor belong to no tensor"
            )
        if used_end != data_bytes:
            raise SafetensorsFormatError(
                f"{self.path}: {data_bytes - used_end} bytes after the last tensor belong "
                "to no tensor"
            )

    def _parse_entry(self, key: str, entry: Any, data_start: int, size: int) -> TensorInfo:
        try:
            dtype = str(entry["dtype"])
            shape_in, offsets = entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetensorsFormatError(f"{self.path}: malformed header entry {key!r}") from exc
        where = f"{self.path}: tensor {key!r}"
        if not isinstance(shape_in, list):
            raise SafetensorsFormatError(f"{where}: shape must be a list of integers")
        if not all(_is_int(d) for d in shape_in):
            raise SafetensorsFormatError(f"{where}: shape {shape_in} has a non-integer dim")
        if any(d < 0 for d in shape_in):
            raise SafetensorsFormatError(f"{where}: shape {shape_in} has a negative dim")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
            raise SafetensorsFormatError(f"{where}: data_offsets must be two integers")
        shape: tuple[int, ...] = tuple(shape_in)
        begin, end = offsets
        if dtype not in RAW_DTYPES:
            raise SafetensorsFormatError(f"{self.path}: tensor {key!r} has unknown dtype {dtype}")
        expected = math.prod(shape) * RAW_DTYPES[dtype].itemsize  # Python ints: no overflow
        if end - begin != expected or begin < 0 or data_start + end > size:
            raise SafetensorsFormatError(
                f"{self.path}: tensor {key!r} has inconsistent offsets (truncated file?)"
            )
        return TensorInfo(dtype, shape, data_start + begin, data_start + end)

    def read_raw(self, key: str) -> np.ndarray:
        """Read one tensor's raw data (BF16 as uint16 bits) into a fresh array."""
        info = self.tensors[key]
        out = np.empty(info.shape, dtype=RAW_DTYPES[info.dtype])
        self._file.seek(info.begin)
        view = out.reshape(-1).view(np.uint8).data
        got = self._file.readinto(view)
        if got != info.nbytes:
            raise SafetensorsFormatError(f"{self.path}: short read for tensor {key!r}")
        return out

    def read_float32(self, key: str) -> np.ndarray:
        """Read one float tensor as float32, whatever its stored precision."""
        return to_float32(self.read_raw(key), self.tensors[key].dtype)

    def close(self) -> None:
        """Release the file handle."""
        self._file.close()

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class OutputTensor:
    """A tensor the writer will receive: its key, safetensors dtype and shape."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the tensor's raw data."""
        return int(np.prod(self.shape, dtype=np.int64)) * RAW_DTYPES[self.dtype].itemsize


def write_order(entries: list[OutputTensor]) -> list[OutputTensor]:
    """Order tensors by decreasing item size, then key, as the reference library does.

    With the header padded to a multiple of 8, this keeps every tensor naturally aligned,
    which zero-copy readers rely on.
    """
    return sorted(entries, key=lambda e: (-RAW_DTYPES[e.dtype].itemsize, e.key))


class SafetensorsWriter:
    """Write a safetensors file incrementally, tensor by tensor, in a fixed order.

    The header is computed up front from ``entries``; :meth:`write` must then be called
    once per entry in that order. :meth:`finish` may replace the metadata (within the
    reserved padding) and atomically renames the temporary file onto ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        entries: list[OutputTensor],
        metadata: dict[str, str] | None = None,
        reserve: int = _HEADER_RESERVE,
    ) -> None:
        self.path = Path(path)
        self.entries = list(entries)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._next = 0
        header = self._header_json(metadata or {})
        self._header_len = _round_up(len(header) + reserve, 8)
        self._file: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 (closed in finish/abort)
        self._write_header(header)

    def _header_json(self, metadata: dict[str, str]) -> bytes:
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        for e in self.entries:
            header[e.key] = {
                "dtype": e.dtype,
                "shape": list(e.shape),
                "data_offsets": [offset, offset + e.nbytes],
            }
            offset += e.nbytes
        return json.dumps(header, separators=(",", ":")).encode("utf-8")

    def _write_header(self, header: bytes) -> None:
        if len(header) > self._header_len:
            raise SafetensorsFormatError("metadata grew beyond the space reserved in the header")
        self._file.seek(0)
        self._file.write(struct.pack("<Q", self._header_len))
        self._file.write(header + b" " * (self._header_len - len(header)))

    @property
    def next_entry(self) -> OutputTensor | None:
        """The entry :meth:`write` expects next, or None when all are written."""
        return self.entries[self._next] if self._next < len(self.entries) else None

    def write(self, key: str, raw: np.ndarray) -> None:
        """Append one tensor's raw bytes; it must be the next entry, with matching size."""
        expected = self.next_entry
        if expected is None or expected.key != key:
            raise RuntimeError(f"tensor {key!r} written out of order (expected {expected})")
        # not ascontiguousarray: it turns 0-d tensors (logit_scale, num_updates) into 1-d
        data = np.asarray(raw, dtype=RAW_DTYPES[expected.dtype])
        if not data.flags.c_contiguous:
            data = data.copy(order="C")
        if tuple(data.shape) != expected.shape:
            raise RuntimeError(f"tensor {key!r} has shape {data.shape}, expected {expected.shape}")
        self._file.write(data.reshape(-1).view(np.uint8).data)
        self._next += 1

    def finish(self, metadata: dict[str, str] | None = None) -> Path:
        """Check completeness, optionally rewrite metadata, and move the file into place."""
        if self._next != len(self.entries):
            self.abort()
            raise RuntimeError(f"only {self._next} of {len(self.entries)} tensors were written")
        if metadata is not None:
            self._write_header(self._header_json(metadata))
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (used on errors and interrupts)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def save_arrays(
    path: str | os.PathLike[str],
    arrays: dict[str, np.ndarray],
    dtypes: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a dict of float32/int arrays, converting floats to per-key dtypes (default F32).

    A convenience for tests and synthetic checkpoints; it keeps all arrays in memory.
    """
    dtypes = dtypes or {}
    entries = [
        OutputTensor(k, dtypes.get(k, numpy_to_safetensors_dtype(a.dtype)), tuple(a.shape))
        for k, a in arrays.items()
    ]
    writer = SafetensorsWriter(path, write_order(entries), metadata, reserve=0)
    try:
        for entry in writer.entries:
            arr = arrays[entry.key]
            raw = from_float32(arr, entry.dtype) if entry.dtype in FLOAT_DTYPES else arr
            writer.write(entry.key, raw)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def numpy_to_safetensors_dtype(dtype: np.dtype[Any]) -> str:
    """Map a numpy dtype to its safetensors name (float16 -> F16, int64 -> I64, ...)."""
    for name, raw in RAW_DTYPES.items():
        if name in {"BF16", "F8_E4M3", "F8_E5M2"}:
            continue
        if raw == np.dtype(dtype).newbyteorder("<") or raw == np.dtype(dtype):
            return name
    raise SafetensorsFormatError(f"no safetensors dtype for numpy {dtype}")
