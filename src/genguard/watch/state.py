"""What ``genguard watch`` has already seen, kept in genguard's store across restarts.

Why a table and not the JSONL log: a restart must skip files already checked without
re-reading a log that grows forever, and it must also recognise the censored copies the
watcher wrote itself (they are not in the log as decisions). One row per watched path
holds the identity of the version last seen there: size, ``mtime_ns`` and SHA-256. A
file whose identity matches is skipped; any change (a new image under the same name, a
``touch``, a restored backup) makes it a new version, checked again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, String, Text, delete, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from genguard.store import Base, Store

#: Outcomes stored per path.
CHECKED = "checked"
ERROR = "error"
OWN_WRITE = "own_write"


class WatchFileRow(Base):
    """The last version of one watched path that the watcher checked or wrote."""

    __tablename__ = "watch_files"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    #: SHA-256 of the path: an index key of fixed length whatever the path's length.
    path_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


@dataclass(frozen=True)
class FileKey:
    """A version of a file: where it is and what ``stat`` says about it."""

    path: str
    size: int
    mtime_ns: int


def path_key(path: str) -> str:
    """Fixed-length key of a path; undecodable POSIX bytes are kept, not dropped."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Seen:
    """One version to remember: its key, content hash and what became of it."""

    key: FileKey
    sha256: str
    outcome: str
    action: str | None = None
    error_code: str | None = None


class WatchState:
    """Reads and writes :class:`WatchFileRow` through a :class:`Store` (one row per path).

    Work is done a batch at a time (one query to look up a batch, one transaction to
    record it): per-file ORM round trips cost more than judging a small image.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def known(self, keys: Sequence[FileKey]) -> dict[str, str]:
        """Path -> stored SHA-256, for the keys whose exact version (size, mtime) was seen."""
        if not keys:
            return {}
        by_digest = {path_key(key.path): key for key in keys}
        row = WatchFileRow
        query = select(row.path_key, row.size, row.mtime_ns, row.sha256).where(
            row.path_key.in_(list(by_digest))
        )
        found: dict[str, str] = {}
        with self.store.session() as session:
            for digest, size, mtime_ns, sha256 in session.execute(query):
                key = by_digest[digest]
                if (size, mtime_ns) == (key.size, key.mtime_ns):
                    found[key.path] = sha256
        return found

    def remember(self, seen: Sequence[Seen]) -> None:
        """Store each version as the one last seen at its path, in one transaction."""
        if not seen:
            return
        now = datetime.now(UTC)
        rows = {
            path_key(item.key.path): {
                "path_key": path_key(item.key.path),
                "path": _storable(item.key.path),
                "size": item.key.size,
                "mtime_ns": item.key.mtime_ns,
                "sha256": item.sha256,
                "outcome": item.outcome,
                "action": item.action,
                "error_code": item.error_code,
                "updated_at": now,
            }
            for item in seen
        }
        # Delete then insert, in one transaction: a portable upsert, two statements a batch.
        with self.store.session() as session:
            session.execute(delete(WatchFileRow).where(WatchFileRow.path_key.in_(list(rows))))
            session.execute(insert(WatchFileRow), list(rows.values()))

    def count(self) -> int:
        with self.store.session() as session:
            return int(session.scalar(select(func.count()).select_from(WatchFileRow)) or 0)


def _storable(path: str) -> str:
    """The path as valid UTF-8 text (surrogate escapes written as ``\\xff``)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
