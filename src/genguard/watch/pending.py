"""Files seen but not judged yet, and when each one is complete enough to judge.

Why this exists: front-ends write images in several steps (create, write, maybe pause,
write, close) and a watcher that judged on the first event would judge half a file.
Evidence of completeness, strongest first:

* ``closed``: the OS said a writer closed the file after writing (inotify's
  ``IN_CLOSE_WRITE``), or it was renamed into place (a rename is atomic). Judged after
  ``close_settle`` seconds of quiet, in case the writer reopens it at once.
* ``writing``: the OS said the file was modified and nobody closed it yet. Not judged
  until a close arrives, or until ``timeout`` passes without one.
* otherwise (catch-up scan, platforms without close events): judged once its size and
  mtime have not changed for ``settle`` seconds.

In every case the file must also decode; one that still does not after ``timeout``
seconds since its last change becomes one error row. Memory is one small entry per
pending path: no image bytes are held here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from genguard.watch.state import FileKey


@dataclass(frozen=True)
class Timing:
    """How long to wait for a file to be complete (seconds)."""

    settle: float = 1.0
    close_settle: float = 0.1
    timeout: float = 60.0


@dataclass
class Entry:
    """One pending path and the evidence about its completeness."""

    path: str
    due: float
    closed: bool = False
    writing: bool = False
    #: A change was seen while pending: a decode failure then means "incomplete".
    changed: bool = False
    last_key: FileKey | None = None
    last_key_at: float = 0.0
    #: When the last event about this path arrived (monotonic seconds).
    last_event: float = field(default_factory=time.monotonic)


def stat_key(path: str) -> FileKey | None:
    """The file's current version, or None when it is gone or not a regular file."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return FileKey(path, info.st_size, info.st_mtime_ns)


class Pending:
    """Pending entries by path, with the next time each should be looked at."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _entry(self, path: str, now: float) -> Entry:
        entry = self.entries.get(path)
        if entry is None:
            entry = Entry(path, due=now + self.timing.settle)
            self.entries[path] = entry
        return entry

    def seen(self, path: str, now: float | None = None) -> None:
        """A file appeared (catch-up scan, created event): judge it once stable."""
        now = time.monotonic() if now is None else now
        entry = self._entry(path, now)
        if not entry.closed and not entry.writing:
            entry.due = min(entry.due, now)  # look now: an old file is stable already

    def modified(self, path: str, now: float | None = None) -> None:
        """A writer changed the file: wait for its close (or the timeout)."""
        now = time.monotonic() if now is None else now
        entry = self._entry(path, now)
        entry.writing, entry.closed, entry.changed = True, False, True
        entry.last_event = now
        entry.due = now + self.timing.timeout

    def closed(self, path: str, now: float | None = None) -> None:
        """A writer closed the file, or it was renamed into place: complete."""
        now = time.monotonic() if now is None else now
        entry = self._entry(path, now)
        entry.writing, entry.closed = False, True
        entry.last_event = now
        entry.due = now + self.timing.close_settle

    def forget(self, path: str) -> None:
        """The path was deleted or renamed away before it was judged."""
        self.entries.pop(path, None)

    def forget_tree(self, folder: str) -> None:
        prefix = folder.rstrip(os.sep) + os.sep
        for path in [p for p in self.entries if p.startswith(prefix)]:
            del self.entries[path]

    def next_due(self) -> float | None:
        return min((e.due for e in self.entries.values()), default=None)

    def due(self, now: float, limit: int) -> list[Entry]:
        """Up to ``limit`` entries whose time has come, oldest first."""
        ready = sorted((e for e in self.entries.values() if e.due <= now), key=lambda e: e.due)
        return ready[:limit]

    def stable(self, entry: Entry, key: FileKey, now: float) -> bool:
        """Whether ``key`` can be judged now; if not, reschedule ``entry``.

        Closed files are judged at once. Others must be quiet for ``settle`` seconds:
        an mtime that old, or the same size and mtime at two looks that far apart.
        """
        if entry.closed:
            return True
        if entry.writing and now - entry.last_event < self.timing.timeout:
            entry.due = entry.last_event + self.timing.timeout
            return False
        age = time.time() - key.mtime_ns / 1e9
        if age >= self.timing.settle:
            return True
        if entry.last_key == key and now - entry.last_key_at >= self.timing.settle:
            return True
        if entry.last_key is not None and entry.last_key != key:
            entry.changed = True
        if entry.last_key != key:
            entry.last_key, entry.last_key_at = key, now
        entry.due = now + max(0.05, min(self.timing.settle, self.timing.settle - age))
        return False

    def timed_out(self, key: FileKey) -> bool:
        """True when the file has not changed for ``timeout`` seconds (judge it as it is)."""
        return time.time() - key.mtime_ns / 1e9 >= self.timing.timeout

    def retry_later(self, entry: Entry, now: float) -> None:
        """The file does not decode yet: look again after ``settle``."""
        entry.closed = False
        entry.changed = True
        entry.due = now + self.timing.settle
