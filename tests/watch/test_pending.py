"""When a pending file is judged: close events, settle time, timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

from genguard.watch.pending import Entry, Pending, Timing
from genguard.watch.state import FileKey


def test_settle_waits_for_a_quiet_file_without_close_events(tmp_path: Path) -> None:
    pending = Pending(Timing(settle=0.5, close_settle=0.05, timeout=5))
    path = tmp_path / "fresh.png"
    path.write_bytes(b"x")
    entry = Entry(str(path), due=0.0)
    info = os.stat(path)
    key = FileKey(str(path), info.st_size, info.st_mtime_ns)
    now = time.monotonic()
    assert not pending.stable(entry, key, now)  # just written: not yet
    assert entry.due > now
    assert pending.stable(entry, key, now + 0.6)  # same size and mtime 0.6 s later
    old = time.time() - 10
    os.utime(path, (old, old))
    info = os.stat(path)
    assert pending.stable(Entry(str(path), due=0.0), FileKey(str(path), 1, info.st_mtime_ns), now)


def test_a_file_being_written_waits_for_its_close() -> None:
    pending = Pending(Timing(settle=0.5, close_settle=0.05, timeout=5))
    pending.seen("/w/a.png", now=100.0)
    pending.modified("/w/a.png", now=100.01)
    assert pending.due(104.9, 8) == []  # written to, not closed: not before the timeout
    assert [e.path for e in pending.due(105.1, 8)] == ["/w/a.png"]  # then looked at
    pending.closed("/w/a.png", now=101.0)
    assert pending.due(101.0, 8) == []
    assert [e.path for e in pending.due(101.06, 8)] == ["/w/a.png"]  # after close_settle
    pending.forget("/w/a.png")
    assert len(pending) == 0 and pending.next_due() is None
