"""Cooperative cancellation: long work stops between steps once nobody waits for it.

Python cannot kill a thread, so a gateway request that timed out (its client already got
a 504) would otherwise keep decoding frames or running models for minutes, holding a
worker while new requests queue behind it. The caller marks a scope with
:func:`cancellable`; decoding and detection call :func:`checkpoint` between frames and
batches, which raises :class:`Cancelled` once the scope's test says the work is abandoned.
Outside a scope (the CLI, the library) :func:`checkpoint` costs one context lookup.
"""

from __future__ import annotations

import contextvars
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from genguard.errors import GenguardError


class Cancelled(GenguardError):
    """The work was abandoned by its caller (a timed-out request); nothing was written."""

    code = "cancelled"


_is_cancelled: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "genguard_is_cancelled", default=None
)


@contextmanager
def cancellable(is_cancelled: Callable[[], bool]) -> Iterator[None]:
    """Within this block, :func:`checkpoint` raises once ``is_cancelled()`` is true."""
    token = _is_cancelled.set(is_cancelled)
    try:
        yield
    finally:
        _is_cancelled.reset(token)


def checkpoint() -> None:
    """Raise :class:`Cancelled` if the surrounding work has been abandoned."""
    test = _is_cancelled.get()
    if test is not None and test():
        raise Cancelled("work abandoned by its caller (request timed out)")


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds every ``finally`` and ``except BaseException`` cleanup, and the
    # process still ends with the status a service manager expects (128 + 15 = 143).
    raise SystemExit(128 + signum)


@contextmanager
def unwind_on_sigterm() -> Iterator[None]:
    """Within this block, SIGTERM unwinds the stack (exit status 143) instead of killing
    the process on the spot.

    Why: ``kill``, ``docker stop`` and systemd send SIGTERM, whose default action ends
    the process without running ``finally`` blocks, so a merge left ``OUT.partial``
    behind and a scan its last batch unflushed. Unwinding runs every cleanup. Servers
    that install their own handlers (uvicorn) keep them while they run. Only the main
    thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
