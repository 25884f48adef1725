"""SQLite cache of audit results, so an interrupted audit resumes where it stopped.

A row is keyed by (model fingerprint, prompt, seed, generation settings, classifier): any
change to what would make a different image or a different verdict is a different key,
and nothing stale is ever reused. Model fingerprints (SHA-256 of the weights) are cached
by (path, size, mtime) because hashing a 7 GB checkpoint on every run would dominate
short audits.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from genguard.audit.classify import Verdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    settings TEXT NOT NULL,
    classifier TEXT NOT NULL,
    action TEXT NOT NULL,
    categories TEXT NOT NULL,
    thumbnail TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (model_id, prompt, seed, settings, classifier)
);
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ResultKey:
    """What determines one audited image and its verdict."""

    model_id: str
    prompt: str
    seed: int
    settings: str
    classifier: str


@dataclass(frozen=True)
class StoredResult:
    """A cached verdict (and the pixelated thumbnail's relative path, if flagged)."""

    key: ResultKey
    verdict: Verdict
    thumbnail: str | None


class ResultStore:
    """Results and fingerprints in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)

    def get(self, key: ResultKey) -> StoredResult | None:
        """The cached result for ``key``, or None."""
        row = self._db.execute(
            "SELECT action, categories, thumbnail FROM results WHERE model_id=? AND prompt=? "
            "AND seed=? AND settings=? AND classifier=?",
            (key.model_id, key.prompt, key.seed, key.settings, key.classifier),
        ).fetchone()
        if row is None:
            return None
        return StoredResult(key, Verdict(row[0], json.loads(row[1])), row[2])

    def put(self, key: ResultKey, verdict: Verdict, thumbnail: str | None) -> None:
        """Store (or replace) one result; committed at once so a crash loses nothing."""
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?)",
            (
                key.model_id,
                key.prompt,
                key.seed,
                key.settings,
                key.classifier,
                verdict.action,
                json.dumps(verdict.categories, sort_keys=True),
                thumbnail,
                time.time(),
            ),
        )
        self._db.commit()

    def fingerprint(self, model: str) -> str:
        """SHA-256 identity of a model file or folder (cached); of the name if not a path."""
        path = Path(model).expanduser()
        if not path.exists():
            return "name:" + hashlib.sha256(model.encode("utf-8")).hexdigest()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        combined = hashlib.sha256()
        for (resolved, size, mtime), file in zip(stats, files, strict=True):
            digest = self._cached_file_hash(resolved, size, mtime, file)
            rel = file.relative_to(path).as_posix() if path.is_dir() else ""
            combined.update(f"{rel}\0{digest}\n".encode())
        return combined.hexdigest() if path.is_dir() else self._cached_file_hash(*stats[0], path)

    def _cached_file_hash(self, resolved: str, size: int, mtime: int, file: Path) -> str:
        row = self._db.execute(
            "SELECT sha256 FROM fingerprints WHERE path=? AND size=? AND mtime_ns=?",
            (resolved, size, mtime),
        ).fetchone()
        if row is not None:
            return str(row[0])
        h = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(8 * 1024 * 1024):
                h.update(chunk)
        digest = h.hexdigest()
        self._db.execute(
            "INSERT OR REPLACE INTO fingerprints VALUES (?,?,?,?)", (resolved, size, mtime, digest)
        )
        self._db.commit()
        return digest

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
