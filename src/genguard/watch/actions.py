"""What ``genguard watch`` does to a judged file, in an order that never loses the original.

Every step that could fail runs before the step that removes anything:

* quarantine: the judged bytes are written to a temp file in the quarantine folder,
  synced, renamed into place there; only then is the original replaced or removed;
* censor in place: the censored image is written to a hidden temp file in the same
  folder (same file system, so the final ``os.replace`` is atomic), synced, then renamed
  over the original.

A crash or a ``PermissionError`` at any point leaves the original where it was or a
complete copy in quarantine, never neither. A failed action is rolled back (temp files
and an unneeded quarantine copy removed) and reported as :class:`ActionError`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genguard.content import LoadedImage, save_like
from genguard.decision import Action, Decision
from genguard.errors import GenguardError
from genguard.guard import Guard
from genguard.watch.pending import stat_key
from genguard.watch.state import FileKey

Mode = Literal["censor", "quarantine"]
MODES: tuple[str, ...] = ("censor", "quarantine")
#: Temp files start with this (hidden, and never an image extension): the watcher
#: ignores them, so its own intermediate files are never judged.
TEMP_PREFIX = ".genguard-"


class ActionError(GenguardError):
    """The decision was made but could not be carried out; the original is untouched."""

    code = "action_failed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class FileChanged(GenguardError):
    """The file changed after it was read: the newer version must be judged instead."""

    code = "changed"


@dataclass(frozen=True)
class Done:
    """What was done: ``did`` for the log, where the original went, what was written."""

    did: str
    quarantined_to: str | None = None
    written: FileKey | None = None
    written_sha256: str | None = None


def is_temp(path: str) -> bool:
    return os.path.basename(path).startswith(TEMP_PREFIX)


def act(
    guard: Guard,
    decision: Decision,
    *,
    key: FileKey,
    data: bytes,
    root: Path,
    quarantine: Path,
    mode: Mode,
) -> Done:
    """Carry out ``decision`` on the file ``key`` whose judged content is ``data``.

    allow: nothing. censor: the censored version replaces the file (``quarantine`` mode
    first keeps the original in quarantine). review/block: the original goes to
    quarantine and nothing is left (a front-end gallery would show any placeholder as if
    it were a generated image; the log row says where the original went).
    """
    if decision.action is Action.ALLOW:
        return Done("kept")
    _still_same(key)
    saved: Path | None = None
    try:
        if mode == "quarantine" or decision.action is not Action.CENSOR:
            saved = _quarantine(data, key, root, quarantine)
        if decision.action is Action.CENSOR:
            written, sha = _censor_in_place(guard, decision, key, data)
            did = "quarantined+censored" if saved else "censored"
            return Done(did, _text(saved), written, sha)
        _still_same(key)
        os.unlink(key.path)
        return Done("quarantined", _text(saved))
    except BaseException as exc:
        if saved is not None and os.path.exists(key.path):
            _remove_quietly(saved)  # the original is still in place: undo the copy
        if isinstance(exc, OSError):
            raise _action_error(exc, key.path) from exc
        raise


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _still_same(key: FileKey) -> None:
    """Refuse to act on a file that vanished or changed since it was read."""
    current = stat_key(key.path)
    if current is None:
        raise ActionError(
            f"{key.path} vanished while being checked; nothing to act on", code="vanished"
        )
    if current != key:
        raise FileChanged(f"{key.path} changed while being checked")


def _quarantine(data: bytes, key: FileKey, root: Path, quarantine: Path) -> Path:
    """Write the judged bytes under ``quarantine`` (same relative path), keeping mtime."""
    relative = Path(key.path).relative_to(root)
    dest = _free_name(quarantine / relative, hashlib.sha256(data).hexdigest()[:12])
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f"{TEMP_PREFIX}{dest.name}.tmp")
    try:
        _write_synced(temp, data)
        os.utime(temp, ns=(key.mtime_ns, key.mtime_ns))  # evidence: when it was made
        os.replace(temp, dest)
    except BaseException:
        _remove_quietly(temp)
        raise
    _sync_folder(dest.parent)
    return dest


def _free_name(dest: Path, tag: str) -> Path:
    """``dest``, or ``stem.<tag>.ext`` when a quarantined file already has that name."""
    if not dest.exists():
        return dest
    candidate = dest.with_name(f"{dest.stem}.{tag}{dest.suffix}")
    number = 1
    while candidate.exists():
        candidate = dest.with_name(f"{dest.stem}.{tag}-{number}{dest.suffix}")
        number += 1
    return candidate


def _censor_in_place(
    guard: Guard, decision: Decision, key: FileKey, data: bytes
) -> tuple[FileKey, str]:
    """Replace the file with its censored version atomically; return what was written."""
    full: LoadedImage = guard.load_full(data)
    pixels = guard.publish(full, decision, mark=False).pixels
    target = Path(key.path)
    temp = target.with_name(f"{TEMP_PREFIX}{target.name}.tmp")
    try:
        # The temp name has no image extension: the source's format is kept.
        save_like(pixels, temp, full.source_format)
        written = temp.read_bytes()
        _sync_file(temp)
        _still_same(key)
        os.replace(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
    _sync_folder(target.parent)
    after = stat_key(key.path)
    if after is None:
        raise ActionError(f"{key.path} vanished right after it was censored", code="vanished")
    return after, hashlib.sha256(written).hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); folders cannot be opened on Windows: skip there."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _action_error(exc: OSError, path: str) -> ActionError:
    """One clear line for an OS failure, saying that the original is untouched."""
    where = exc.filename or path
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only media" if exc.errno == errno.EROFS else "permission denied"
        return ActionError(
            f"cannot write {where}: {reason}; {path} was left as it was",
            code="permission_denied",
        )
    if exc.errno == errno.ENOENT and not os.path.exists(path):
        return ActionError(f"{path} vanished while being acted on", code="vanished")
    if exc.errno == errno.ENOSPC:
        return ActionError(
            f"disk full writing {where}; {path} was left as it was", code="disk_full"
        )
    return ActionError(
        f"cannot act on {path}: {exc.strerror or exc}; it was left as it was", code="action_failed"
    )
