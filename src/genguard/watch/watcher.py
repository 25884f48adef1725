"""``genguard watch``: judge every new image in a front-end's output folder, once, complete.

Front-ends without a plugin API (A1111, Forge, Fooocus, InvokeAI, ComfyUI) all write an
output folder; this watches it. Filesystem events (watchdog: inotify on Linux, with its
close-after-write event) say which files are new; :mod:`genguard.watch.pending` decides
when each is complete; batches of complete files go through the Guard; each decision is
carried out (:mod:`genguard.watch.actions`), remembered (:mod:`genguard.watch.state`)
and appended to a JSONL log in the record shape of ``genguard scan``.

Threads: watchdog's observer thread only queues events; everything else (reading,
checking, acting, the database, the log) happens on the thread that calls
:meth:`Watcher.run`, so Ctrl-C and SIGTERM land there and unwind cleanly, and no two
steps ever race on one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from threading import Event
from typing import Any, TextIO

from genguard.content import LoadedImage, read_source_bytes
from genguard.decision import Decision
from genguard.engines.records import (
    ScanSummary,
    check_tolerant,
    decision_record,
    error_record,
    load_tolerant,
)
from genguard.engines.sources import IMAGE_EXTENSIONS, walk
from genguard.errors import ConfigError, ContentError
from genguard.guard import Guard
from genguard.scan import truncate_torn_tail
from genguard.watch.actions import ActionError, FileChanged, Mode, act, is_temp
from genguard.watch.pending import Entry, Pending, Timing, stat_key
from genguard.watch.state import CHECKED, ERROR, OWN_WRITE, FileKey, Seen, WatchState

#: Paths whose handled version is kept in memory (~200 bytes each): rescans and the
#: watcher's own writes skip them without a query. Older ones fall back to the store.
HANDLED_MEMORY = 100_000
#: Decoder errors that may only mean "not fully written yet": retried until the timeout.
RETRYABLE = frozenset({"truncated", "corrupt", "empty_file", "not_an_image"})


@dataclass(frozen=True)
class WatchOptions:
    """Where to watch, what to do with flagged files, and where to write."""

    root: Path
    quarantine: Path
    log: Path
    mode: Mode = "quarantine"
    timing: Timing = field(default_factory=Timing)
    #: Files taken per step: one state query and one transaction for all of them (the
    #: Guard still runs its models ``guard.batch_size`` frames at a time). A lone file
    #: is taken at once; only a burst fills a step.
    batch_size: int = 32
    #: Walk the tree again this often (seconds) to catch what events missed (overflow).
    rescan_every: float = 300.0


def default_quarantine(root: Path) -> Path:
    """``<parent>/<name>-genguard-quarantine``: a sibling, outside the watched tree.

    Outside, so that front-end galleries never list quarantined files and the watcher
    never sees its own moves; next to it, so that it is on the same disk and easy to find.
    """
    root = root.absolute()
    return root.parent / f"{root.name}-genguard-quarantine"


def resolve_options(
    root: Path,
    *,
    quarantine: Path | None,
    log: Path,
    mode: str,
    timing: Timing | None = None,
    batch_size: int = 32,
) -> WatchOptions:
    """Validated options: ConfigError (one line, exit 2) for anything unusable."""
    if mode not in ("censor", "quarantine"):
        raise ConfigError(f"--mode must be censor or quarantine, got {mode!r}")
    if not root.exists():
        raise ConfigError(f"{root} does not exist: give the front-end's output folder")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder: give the front-end's output folder")
    root = root.resolve()
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{root} is not writable: flagged images could not be censored or moved "
            "(use `genguard scan` to only report)"
        )
    target = (quarantine or default_quarantine(root)).absolute().resolve()
    if target == root or target.is_relative_to(root):
        raise ConfigError(
            f"quarantine folder {target} is inside the watched folder {root}: choose one "
            "outside it (--quarantine), or galleries would list quarantined images"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create quarantine folder {target}: {exc.strerror or exc}"
        ) from exc
    return WatchOptions(
        root=root,
        quarantine=target,
        log=log,
        mode=mode,  # type: ignore[arg-type]
        timing=timing or Timing(),
        batch_size=max(1, batch_size),
    )


@dataclass
class WatchSummary(ScanSummary):
    """Scan counts plus what only a watcher meets."""

    already_checked: int = 0
    own_writes: int = 0
    vanished: int = 0


@dataclass
class _Job:
    entry: Entry
    key: FileKey
    data: bytes
    sha256: str
    image: LoadedImage


Record = dict[str, Any]
#: (event type, path, destination of a move, is a directory), from the observer thread.
EventQueue = queue.SimpleQueue[tuple[str, str, str, bool]]
Progress = Callable[[int, int], None]


class Watcher:
    """Judge, act, remember and log every complete image under ``options.root``."""

    def __init__(
        self,
        guard: Guard,
        state: WatchState,
        options: WatchOptions,
        *,
        on_record: Callable[[Record], None] | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self.guard = guard
        self.state = state
        self.options = options
        self.on_record = on_record
        self.on_progress = on_progress
        self.pending = Pending(options.timing)
        self.summary = WatchSummary()
        self.events: EventQueue = queue.SimpleQueue()
        self.stop_requested = Event()
        #: Versions handled in this session by path: rescans skip them without a query.
        self._handled: dict[str, FileKey] = {}
        self._walk_errors: set[str] = set()
        self._sink: TextIO | None = None
        #: What the batch in progress will remember and log, in that order.
        self._seen: list[Seen] = []
        self._rows: list[tuple[Record, dict[str, Any]]] = []
        self._root_text = str(options.root)

    # -- running ---------------------------------------------------------------------------

    def run(self, *, once: bool = False, started: Event | None = None) -> WatchSummary:
        """Catch up on files already there, then (unless ``once``) follow events until
        :meth:`stop`, Ctrl-C or SIGTERM. ``started`` is set once events are followed."""
        began = time.perf_counter()
        observer = None if once else self._start_observer()
        self._open_log()
        try:
            # Events are followed before the walk, so nothing slips in between the two.
            self._catch_up()
            if started is not None:
                started.set()
            last_rescan = time.monotonic()
            while not self.stop_requested.is_set():
                self._drain(self._wait_time(once))
                self._process_due()
                if once and not self.pending:
                    break
                if not once and time.monotonic() - last_rescan > self.options.rescan_every:
                    self._catch_up()
                    last_rescan = time.monotonic()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            self._close_log()
            self.summary.seconds = time.perf_counter() - began
        return self.summary

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress (any thread)."""
        self.stop_requested.set()
        self.events.put(("wake", "", "", False))

    def _wait_time(self, once: bool) -> float:
        due = self.pending.next_due()
        if due is None:
            return 0.05 if once else 0.5
        return min(0.5, max(0.0, due - time.monotonic()))

    def _start_observer(self) -> Any:
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirDeletedEvent,
                DirMovedEvent,
                FileClosedEvent,
                FileCreatedEvent,
                FileDeletedEvent,
                FileModifiedEvent,
                FileMovedEvent,
            )
            from watchdog.observers import Observer
        except ImportError as exc:
            raise ConfigError(
                "genguard watch needs the 'watchdog' package: pip install 'watchdog>=4.0.2'"
            ) from exc

        observer = Observer()
        observer.schedule(
            _handler(self.events),
            self._root_text,
            recursive=True,
            # Opens and read-only closes are not asked for: the watcher's own reads
            # would otherwise wake it up once per file.
            event_filter=[
                FileCreatedEvent,
                FileModifiedEvent,
                FileClosedEvent,
                FileMovedEvent,
                FileDeletedEvent,
                DirCreatedEvent,
                DirMovedEvent,
                DirDeletedEvent,
            ],
        )
        observer.start()
        return observer

    # -- events -> pending ---------------------------------------------------------------

    def _wanted(self, path: str) -> bool:
        """Image files inside the tree, not hidden (temp files of ours and of others)."""
        if not path or is_temp(path) or os.path.basename(path).startswith("."):
            return False
        if not (path == self._root_text or path.startswith(self._root_text + os.sep)):
            return False
        return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS

    def _drain(self, wait: float) -> None:
        """Apply every queued event; block up to ``wait`` seconds for the first one."""
        try:
            event = self.events.get(timeout=wait) if wait > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(*event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _apply(self, kind: str, src: str, dest: str, is_dir: bool) -> None:
        if is_dir:
            if kind in ("deleted", "moved"):
                self.pending.forget_tree(src)
            if kind in ("created", "moved") and (dest or src):
                self._walk_into_pending(dest or src)
            return
        if kind == "moved":
            self.pending.forget(src)
            if self._wanted(dest):
                self.pending.closed(dest)  # a rename is atomic: the file is complete
        elif kind == "deleted":
            self.pending.forget(src)
        elif self._wanted(src):
            if kind == "created":
                self.pending.seen(src)
            elif kind == "modified":
                self.pending.modified(src)
            elif kind == "closed":
                self.pending.closed(src)

    def _catch_up(self) -> None:
        """Queue every image already in the tree that this session has not handled."""
        self._walk_into_pending(self._root_text)

    def _walk_into_pending(self, folder: str) -> None:
        for item in walk([folder]):
            if item.error is not None:
                if item.path not in self._walk_errors:  # once a session, not every rescan
                    self._walk_errors.add(item.path)
                    self._emit(error_record(item.path, item.error, self.guard.policy_id))
                    self._flush()
                continue
            if not self._wanted(item.path) or item.path in self.pending.entries:
                continue
            handled = self._handled.get(item.path)
            if handled is not None and handled == stat_key(item.path):
                continue
            self.pending.seen(item.path)

    # -- pending -> decisions ------------------------------------------------------------

    def _process_due(self) -> None:
        """Judge one batch of due files; state is recorded, then rows are written."""
        now = time.monotonic()
        due = self.pending.due(now, self.options.batch_size)
        if not due:
            return
        ready = [(entry, key) for entry in due if (key := self._ready(entry, now)) is not None]
        known = self.state.known([key for _, key in ready])
        jobs = [
            job
            for entry, key in ready
            if (job := self._prepare(entry, key, known.get(key.path), now)) is not None
        ]
        try:
            outcomes = check_tolerant(self.guard, [job.image for job in jobs])
            for job, outcome in zip(jobs, outcomes, strict=True):
                if isinstance(outcome, ContentError):
                    self._mark_handled(job.key.path, job.key)
                    error = error_record(job.key.path, outcome, self.guard.policy_id)
                    self._rows.append((error, {}))
                else:
                    self._finish(job, outcome)
        finally:
            # Even when Ctrl-C or SIGTERM cuts the step short, what was done is recorded.
            self._record_step()
        self._report_progress()

    def _record_step(self) -> None:
        """The state first: a row in the log always means the state knows the file."""
        seen, rows = self._seen, self._rows
        self._seen, self._rows = [], []
        self.state.remember(seen)
        for record, extra in rows:
            self._emit(record, extra)
        self._flush()

    def _mark_handled(self, path: str, key: FileKey) -> None:
        """Remember a handled version for this session, forgetting the oldest past
        ``HANDLED_MEMORY`` paths (a forgotten one costs a state query, not a model run)."""
        self._handled.pop(path, None)
        self._handled[path] = key
        if len(self._handled) > HANDLED_MEMORY:
            del self._handled[next(iter(self._handled))]

    def _report_progress(self) -> None:
        if self.on_progress is not None:
            done = self.summary.total + self.summary.already_checked + self.summary.vanished
            self.on_progress(done, len(self.pending))

    def _ready(self, entry: Entry, now: float) -> FileKey | None:
        """The file's version when it can be judged now; None when skipped or rescheduled."""
        key = stat_key(entry.path)
        if key is None:  # deleted or renamed away before it was judged: nothing to judge
            self.pending.forget(entry.path)
            self.summary.vanished += 1
            return None
        if self._handled.get(entry.path) == key:
            self.pending.forget(entry.path)
            return None
        if not self.pending.stable(entry, key, now):
            return None
        return key

    def _prepare(self, entry: Entry, key: FileKey, known: str | None, now: float) -> _Job | None:
        """Read and decode a ready file; None when skipped, rescheduled or an error row."""
        try:
            data, _ = read_source_bytes(entry.path, self.guard.full_limits)
        except ContentError as exc:
            self.pending.forget(entry.path)
            if exc.code == "not_found":
                self.summary.vanished += 1
            else:  # e.g. unreadable: once per session (rescans skip it), again on restart
                self._mark_handled(entry.path, key)
                self._rows.append((error_record(entry.path, exc, self.guard.policy_id), {}))
            return None
        if stat_key(entry.path) != key:  # written to while being read: look again later
            self.pending.retry_later(entry, now)
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        if known == sha256:
            self.pending.forget(entry.path)
            self._mark_handled(entry.path, key)
            self.summary.already_checked += 1
            return None
        loaded = load_tolerant(self.guard, data)
        if isinstance(loaded, ContentError):
            self._undecodable(entry, key, sha256, loaded, now)
            return None
        self.pending.forget(entry.path)
        return _Job(entry, key, data, sha256, loaded)

    def _undecodable(
        self, entry: Entry, key: FileKey, sha256: str, error: ContentError, now: float
    ) -> None:
        """Retry a file that may still be written; give up with one error row otherwise."""
        # Even a closed file is given time: some writers close and reopen to append.
        if error.code in RETRYABLE and not self.pending.timed_out(key):
            self.pending.retry_later(entry, now)
            return
        self.pending.forget(entry.path)
        if entry.changed and error.code in RETRYABLE:
            seconds = self.options.timing.timeout
            error = ContentError(
                f"still incomplete {seconds:g} s after its last change ({error})",
                code="incomplete",
            )
        self._seen.append(Seen(key, sha256, ERROR, error_code=error.code))
        self._mark_handled(entry.path, key)
        self._rows.append((error_record(entry.path, error, self.guard.policy_id), {}))

    def _finish(self, job: _Job, decision: Decision) -> None:
        """Carry out the decision; queue what to remember and the row to write."""
        extra: dict[str, Any] = {"decided": decision.action.value}
        try:
            done = act(
                self.guard,
                decision,
                key=job.key,
                data=job.data,
                root=self.options.root,
                quarantine=self.options.quarantine,
                mode=self.options.mode,
            )
        except FileChanged:
            self.pending.seen(job.key.path)  # the newer version is judged instead
            return
        except ActionError as exc:
            # Not remembered: after the cause is fixed, a restart tries again.
            self._action_failed(job, str(exc), exc.code, extra)
            return
        except Exception as exc:  # an encoder bug costs one row, not the watcher
            message = f"cannot act on {job.key.path}: {type(exc).__name__}: {exc}"
            self._action_failed(job, message, ActionError.code, extra)
            return
        action = decision.action.value
        if done.written is not None and done.written_sha256 is not None:
            self._seen.append(Seen(done.written, done.written_sha256, OWN_WRITE, action))
            self._mark_handled(job.key.path, done.written)
        else:
            # Quarantined originals are remembered too: moving one back (a reviewer's
            # approval) keeps size and mtime, so it is not judged again.
            self._seen.append(Seen(job.key, job.sha256, CHECKED, action))
            self._mark_handled(job.key.path, job.key)
        extra.update(did=done.did, quarantined_to=done.quarantined_to)
        self._rows.append((decision_record(job.key.path, decision), extra))

    def _action_failed(self, job: _Job, message: str, code: str, extra: dict[str, Any]) -> None:
        """One error row; not remembered in the store, so a restart tries again, but
        skipped by this session's rescans (a read-only folder would stay read-only)."""
        self._mark_handled(job.key.path, job.key)
        error = ContentError(message, code=code)
        self._rows.append((error_record(job.key.path, error, self.guard.policy_id), extra))

    # -- output --------------------------------------------------------------------------

    def _open_log(self) -> None:
        self.options.log.parent.mkdir(parents=True, exist_ok=True)
        truncate_torn_tail(self.options.log)
        self._sink = self.options.log.open("a", encoding="utf-8")

    def _flush(self) -> None:
        """Rows reach the file once per batch (a killed watcher loses no finished batch)."""
        if self._sink is not None:
            self._sink.flush()

    def _close_log(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _emit(self, record: Record, extra: dict[str, Any] | None = None) -> None:
        """Append one row: the scan record plus a ``watch`` object saying what was done."""
        watch = {"mode": self.options.mode, "did": "none", "quarantined_to": None}
        watch.update(extra or {})
        watch["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        record["watch"] = watch
        self.summary.count([record])
        if self._sink is not None:
            self._sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.on_record is not None:
            self.on_record(record)


def _handler(events: EventQueue) -> Any:
    """A watchdog handler that turns events into plain tuples on the watcher's queue.

    It runs on the observer thread, so it does nothing else: no stat, no I/O, no locks.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler

    class Handler(FileSystemEventHandler):
        def dispatch(self, event: FileSystemEvent) -> None:
            dest = getattr(event, "dest_path", "") or ""
            events.put(
                (event.event_type, _text(event.src_path), _text(dest), bool(event.is_directory))
            )

    return Handler()


def _text(path: str | bytes) -> str:
    return os.fsdecode(path) if isinstance(path, bytes) else path
