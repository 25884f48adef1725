"""PDQ perceptual-hash banks: hash images, store named hashes, find near-duplicates fast.

A *bank* is a list of known images (for example images a service must never serve
again) kept as 256-bit PDQ hashes with metadata. :meth:`HashBank.match` returns every
entry within a Hamming distance (31 by default, the threshold ThreatExchange recommends
for PDQ), nearest first.

Index: exact brute-force Hamming search by default. With ``faiss`` installed it uses
``faiss.IndexBinaryFlat`` (about 1.3 ms per query at 10^6 hashes on one core, see
docs/provenance.md); without faiss a numpy popcount scan (slower, same answers). For
banks of millions, ``index="mih"`` is multi-index hashing in numpy
(:mod:`genguard.provenance.mih`: python-threatexchange's 16 x 16-bit layout, exact up to
radius 31, 64 bytes per hash). Recent additions are scanned with numpy until the index
is rebuilt.

File formats (both UTF-8 text, one entry per line, ``#`` comments and blank lines
ignored, errors name the line number):

* **Bank file** (``HashBank.save``/``load``): CSV ``hash,quality,name,added,source`` with
  a ``# genguard-hashbank v1`` header. Every field after the hash is optional, so the
  output of ThreatExchange's ``pdq-photo-hasher`` (``hash,quality,filename``) loads as is.
* **ThreatExchange plain text** (``import_threatexchange``/``export_threatexchange``):
  ``<64 hex digits>`` per line, optionally followed by ``,quality[,name]`` as written by
  ``pdq-photo-hasher``; the same one-hash-per-line files that python-threatexchange's
  ``threatexchange match pdq`` reads.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from genguard.errors import ContentError, GenguardError
from genguard.provenance.mih import MAX_RADIUS as MIH_MAX_RADIUS
from genguard.provenance.mih import MultiIndex
from genguard.provenance.pdq import pdq_bits

faiss: Any
try:  # faiss is optional: the numpy scan gives the same answers, only slower.
    import faiss
except ImportError:  # pragma: no cover - exercised only where faiss is missing
    faiss = None

HASH_BITS = 256
HASH_HEX = HASH_BITS // 4
HASH_BYTES = HASH_BITS // 8
#: Default match threshold (Hamming distance, inclusive) recommended for PDQ.
DEFAULT_THRESHOLD = 31
#: PDQ quality below which the hash of an image is unreliable (flat or tiny images).
MIN_QUALITY = 50
BANK_HEADER = "# genguard-hashbank v1"
_FIELDS = ("hash", "quality", "name", "added", "source")
#: Hashes added after the last index build are scanned with numpy until there are this
#: many (or 1/8 of the indexed ones); then the index is rebuilt.
_DELTA_MIN = 4096


class HashBankError(GenguardError):
    """A bank file or hash is malformed; the message names the line or the hash."""

    code = "bad_hashbank"


@dataclass(frozen=True)
class BankEntry:
    """One known image: its PDQ hash (64 hex digits) and where it came from."""

    hash: str
    name: str
    quality: int | None = None
    added: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class BankMatch:
    """An entry within the threshold of a query hash."""

    entry: BankEntry
    distance: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: the entry's fields plus ``distance``."""
        return {**asdict(self.entry), "distance": self.distance}


# ---------------------------------------------------------------------------------------
# Hashing and hash parsing
# ---------------------------------------------------------------------------------------


def pdq_hash(rgb: np.ndarray) -> tuple[str, int]:
    """PDQ hash of an HxWx3 uint8 RGB image as (64 hex digits, quality 0..100).

    The hex string uses the reference implementation's bit order (bit 255 first), so
    hashes are interchangeable with ThreatExchange and other PDQ tools.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ContentError(
            f"expected an HxWx3 RGB array, got shape {getattr(rgb, 'shape', None)}",
            code="wrong_type",
        )
    if rgb.dtype != np.uint8:
        raise ContentError(f"expected uint8 pixels, got {rgb.dtype}", code="wrong_type")
    if min(rgb.shape[:2]) < 1:
        raise ContentError(f"cannot hash an empty image {rgb.shape}", code="wrong_type")
    bits, quality = pdq_bits(rgb)
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), quality


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
#: ThreatExchange's CLI writes ``pdq <hash> [anything]`` lines.
_TX_LINE = re.compile(r"^pdq\s+([0-9a-fA-F]{64})(?:\s+(.*))?$")


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters turned into spaces.

    A bank is one entry per line: a newline in a file name or ``--source`` would split an
    entry in two and make the file unreadable for every later command.
    """
    return _CONTROL.sub(" ", text).strip()


@dataclass(frozen=True)
class ImageHashes:
    """PDQ of an image file: of its stored pixels, and upright when EXIF rotates it.

    ThreatExchange and the reference ``pdqhash`` hash the pixels as stored; a viewer (and
    genguard's detectors) show them rotated by the EXIF orientation. For a rotated photo
    the two hashes are ~130 bits apart, so banks are matched against both.
    """

    stored: str
    quality: int
    #: The hash of the upright image; None when EXIF does not rotate or flip it.
    oriented: str | None = None

    def queries(self) -> list[str]:
        return [self.stored] if self.oriented is None else [self.stored, self.oriented]


def hash_image_file(source: str | os.PathLike[str] | bytes) -> ImageHashes:
    """Both PDQ hashes of an image file, decoded under genguard's safe loading limits."""
    from PIL import Image, ImageOps

    from genguard.content import LoadLimits, load_image, read_source_bytes

    upright = load_image(source)  # validates (bombs, truncation) and applies EXIF
    data, _ = read_source_bytes(source, LoadLimits())
    with Image.open(io.BytesIO(data)) as img:
        orientation = img.getexif().get(0x0112, 1)
        if orientation in (1, None) or ImageOps.exif_transpose(img) is None:
            stored_hash, quality = pdq_hash(upright.rgb)
            return ImageHashes(stored_hash, quality)
        stored = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    stored_hash, quality = pdq_hash(stored)
    return ImageHashes(stored_hash, quality, pdq_hash(upright.rgb)[0])


def dihedral_hashes(rgb: np.ndarray) -> list[str]:
    """PDQ of the 8 rotations and mirror images of ``rgb`` (original first).

    Opt-in for matching: a flipped or rotated copy hashes far from the original, and a
    bank lookup with all eight finds it (at 8x the lookups, and 8x the false-match
    chance at a given threshold).
    """
    variants = []
    for turns in range(4):
        turned = np.rot90(rgb, turns)
        variants += [turned, np.fliplr(turned)]
    return [pdq_hash(np.ascontiguousarray(v))[0] for v in variants]


def parse_hash(text: str) -> bytes:
    """64 hex digits -> 32 bytes, or HashBankError saying what is wrong with the string."""
    value = text.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    if len(value) != HASH_HEX:
        raise HashBankError(
            f"PDQ hash must be {HASH_HEX} hex digits ({HASH_BITS} bits), got {len(value)}: "
            f"{text.strip()[:80]!r}"
        )
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise HashBankError(f"PDQ hash is not hexadecimal: {text.strip()[:80]!r}") from exc


def hamming(a: str, b: str) -> int:
    """Hamming distance between two hex PDQ hashes."""
    return int(
        (int.from_bytes(parse_hash(a), "big") ^ int.from_bytes(parse_hash(b), "big")).bit_count()
    )


# ---------------------------------------------------------------------------------------
# The bank
# ---------------------------------------------------------------------------------------


class HashBank:
    """Named PDQ hashes with an exact Hamming index; safe to share between threads.

    Reads (``match``) run concurrently; writes (``add``) take a lock and mark the index
    stale, so the index is rebuilt (incrementally) at the next match.
    """

    def __init__(self, entries: Iterable[BankEntry] = (), *, index: str = "flat") -> None:
        """``index``: ``"flat"`` (default: exact scan, no build cost) or ``"mih"``
        (multi-index hashing, exact at radius <= 31, for banks of millions: a build of
        seconds per million hashes and 64 bytes of RAM per hash; see docs/provenance.md)."""
        if index not in ("flat", "mih"):
            raise HashBankError(f"index must be 'flat' or 'mih', got {index!r}")
        self._index_kind = index
        self._lock = threading.RLock()
        self._entries: list[BankEntry | None] = []
        self._codes = np.zeros((0, HASH_BYTES), dtype=np.uint8)
        self._pending: list[bytes] = []
        self._index: Any = None  # a faiss index (optional dependency)
        self._indexed = 0
        for entry in entries:
            self._append(entry)

    # -- building ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[BankEntry]:
        with self._lock:
            self._flush()
            count = len(self._entries)
        return (self._entry_at(i) for i in range(count))

    def _entry_at(self, row: int) -> BankEntry:
        entry = self._entries[row]
        if entry is None:  # bulk-added code without metadata
            return BankEntry(self._codes[row].tobytes().hex(), f"h{row}")
        return entry

    def _append(self, entry: BankEntry) -> None:
        entry = replace(
            entry,
            name=one_line(entry.name),
            source=None if entry.source is None else one_line(entry.source),
        )
        with self._lock:
            self._pending.append(parse_hash(entry.hash))
            self._entries.append(entry)

    def add(
        self,
        name: str,
        hash_hex: str,
        meta: dict[str, object] | None = None,
    ) -> BankEntry:
        """Add one hash under ``name``; ``meta`` may hold quality, source, added."""
        meta = dict(meta or {})
        quality = meta.get("quality")
        entry = BankEntry(
            hash=parse_hash(hash_hex).hex(),
            name=name,
            quality=int(quality) if quality is not None else None,  # type: ignore[call-overload]
            added=str(meta.get("added") or datetime.now(UTC).isoformat(timespec="seconds")),
            source=str(meta["source"]) if meta.get("source") is not None else None,
        )
        self._append(entry)
        return entry

    def add_codes(self, codes: np.ndarray, names: list[str] | None = None) -> None:
        """Bulk-add raw hashes (N x 32 uint8), e.g. for benchmarks or imports of millions.

        Without ``names`` no entry objects are made (they are built on demand as
        ``h<row>``): millions of objects would cost more memory than the codes.
        """
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != HASH_BYTES:
            raise HashBankError(f"codes must be N x {HASH_BYTES} uint8, got {codes.shape}")
        if names is not None and len(names) != codes.shape[0]:
            raise HashBankError(f"{len(names)} names for {codes.shape[0]} codes")
        with self._lock:
            self._flush()
            self._codes = np.concatenate([self._codes, codes])
            if names is None:
                self._entries.extend([None] * codes.shape[0])
            else:
                self._entries.extend(
                    BankEntry(code.tobytes().hex(), one_line(name))
                    for code, name in zip(codes, names, strict=True)
                )

    def _flush(self) -> None:
        """Move pending hashes into the code matrix (caller holds the lock)."""
        if self._pending:
            new = np.frombuffer(b"".join(self._pending), dtype=np.uint8).reshape(-1, HASH_BYTES)
            self._codes = np.concatenate([self._codes, new])
            self._pending = []

    def _snapshot(self) -> tuple[Any, int, np.ndarray]:
        """(index, rows it covers, all codes) for a lock-free search.

        The faiss index is never mutated once published: faiss does not allow a search
        while another thread adds. New hashes first land in a small *delta* that is
        scanned with numpy; when the delta outgrows ``max(4096, n/8)`` a fresh index is
        built over everything (copy-on-write, amortised O(1) per add). ``self._codes`` is
        likewise replaced, never modified, so a snapshot stays valid.
        """
        with self._lock:
            self._flush()
            total = self._codes.shape[0]
            stale = total - self._indexed > max(_DELTA_MIN, self._indexed // 8)
            if stale and self._index_kind == "mih":
                self._index, self._indexed = MultiIndex(self._codes), total
            elif stale and faiss is not None:
                index = faiss.IndexBinaryFlat(HASH_BITS)
                index.add(self._codes)
                self._index, self._indexed = index, total
            return self._index, self._indexed, self._codes

    def _search(self, query: np.ndarray, radius: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(distances, row ids) within ``radius`` (inclusive), or of the nearest per part."""
        index, indexed, codes = self._snapshot()
        if isinstance(index, MultiIndex) and (radius is None or radius > MIH_MAX_RADIUS):
            index, indexed = None, 0  # MIH is exact only up to radius 31: scan instead
        dists, ids = [], []
        if isinstance(index, MultiIndex) and indexed and radius is not None:
            d, i = index.range_search(query, radius)
            dists.append(d)
            ids.append(i)
        elif index is not None and indexed:
            if radius is None:
                d, i = index.search(query[None, :], 1)
                dists.append(d[0].astype(np.int64))
                ids.append(i[0].astype(np.int64))
            else:
                lims, d, i = index.range_search(query[None, :], radius + 1)
                dists.append(d[lims[0] : lims[1]].astype(np.int64))
                ids.append(i[lims[0] : lims[1]].astype(np.int64))
        start = indexed if index is not None else 0
        if codes.shape[0] > start:
            d = _popcount_distances(codes[start:], query)
            i = np.array([np.argmin(d)]) if radius is None else np.nonzero(d <= radius)[0]
            dists.append(d[i])
            ids.append(i.astype(np.int64) + start)
        if not dists:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(dists), np.concatenate(ids)

    # -- matching ----------------------------------------------------------------------

    def match(
        self, hash_hex: str, threshold: int = DEFAULT_THRESHOLD, limit: int | None = None
    ) -> list[BankMatch]:
        """Entries within ``threshold`` bits of ``hash_hex`` (inclusive), nearest first."""
        if not 0 <= threshold <= HASH_BITS:
            raise HashBankError(f"threshold must be between 0 and {HASH_BITS}, got {threshold}")
        dist, ids = self._search(np.frombuffer(parse_hash(hash_hex), dtype=np.uint8), threshold)
        order = np.lexsort((ids, dist))[:limit]
        return [BankMatch(self._entry_at(int(ids[i])), int(dist[i])) for i in order]

    def nearest(self, hash_hex: str) -> BankMatch | None:
        """The single nearest entry whatever its distance (None for an empty bank)."""
        dist, ids = self._search(np.frombuffer(parse_hash(hash_hex), dtype=np.uint8), None)
        if dist.size == 0:
            return None
        best = int(np.lexsort((ids, dist))[0])
        return BankMatch(self._entry_at(int(ids[best])), int(dist[best]))

    # -- files -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, index: str = "flat") -> HashBank:
        """Read a bank file (or a pdq-photo-hasher / ThreatExchange hash list)."""
        return cls(_read_entries(Path(path)), index=index)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the bank atomically (temp file + rename) so readers never see half a file."""
        dest = Path(path)
        tmp = dest.with_name(dest.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(BANK_HEADER + "\n")
            writer = csv.writer(fh, lineterminator="\n")
            for entry in self:
                writer.writerow(
                    [
                        entry.hash,
                        "" if entry.quality is None else entry.quality,
                        entry.name,
                        entry.added or "",
                        entry.source or "",
                    ]
                )
        os.replace(tmp, dest)

    def import_threatexchange(self, path: str | os.PathLike[str], source: str | None = None) -> int:
        """Add every hash of a ThreatExchange plain-text file; returns how many were added."""
        src = source or str(path)
        count = 0
        for entry in _read_entries(Path(path)):
            self._append(
                BankEntry(entry.hash, entry.name, entry.quality, entry.added, entry.source or src)
            )
            count += 1
        return count

    def export_threatexchange(self, path: str | os.PathLike[str]) -> int:
        """Write ``hash,quality,name`` lines (pdq-photo-hasher layout); returns the count."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        count = 0
        for entry in self:
            writer.writerow(
                [entry.hash, "" if entry.quality is None else entry.quality, entry.name]
            )
            count += 1
        Path(path).write_text(buf.getvalue(), encoding="utf-8")
        return count


def _popcount_distances(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of every row of ``codes`` to ``query`` (numpy fallback)."""
    xor = codes.view(np.uint64) ^ query.view(np.uint64)
    return np.bitwise_count(xor).sum(axis=1, dtype=np.int64)


def _read_entries(path: Path) -> list[BankEntry]:
    """Parse a bank / hash-list file; errors name the file and the 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not data
    except FileNotFoundError as exc:
        raise HashBankError(f"no such bank file: {path}") from exc
    except UnicodeDecodeError as exc:
        raise HashBankError(f"{path} is not a UTF-8 text bank file") from exc
    except OSError as exc:
        raise HashBankError(f"cannot read bank file {path}: {exc.strerror or exc}") from exc
    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            entries.append(_parse_line(stripped, lineno))
        except HashBankError as exc:
            raise HashBankError(f"{path}, line {lineno}: {exc}") from None
    return entries


def _parse_line(line: str, lineno: int) -> BankEntry:
    exchange = _TX_LINE.match(line)
    if exchange:  # ThreatExchange's ``pdq <hash>`` layout
        return BankEntry(hash=exchange.group(1).lower(), name=f"line{lineno}")
    try:
        fields = next(csv.reader([line]))
    except csv.Error as exc:
        raise HashBankError(f"malformed CSV ({exc})") from exc
    if len(fields) > len(_FIELDS):
        raise HashBankError(
            f"expected at most {len(_FIELDS)} fields ({','.join(_FIELDS)}), got {len(fields)}"
        )
    fields = [f.strip() for f in fields] + [""] * (len(_FIELDS) - len(fields))
    raw_hash, raw_quality, name, added, source = fields
    hash_hex = parse_hash(raw_hash).hex()
    quality: int | None = None
    if raw_quality:
        try:
            quality = int(raw_quality)
        except ValueError:
            raise HashBankError(f"quality must be an integer 0..100, got {raw_quality!r}") from None
        if not 0 <= quality <= 100:
            raise HashBankError(f"quality must be an integer 0..100, got {quality}")
    return BankEntry(
        hash=hash_hex,
        name=name or f"line{lineno}",
        quality=quality,
        added=added or None,
        source=source or None,
    )
