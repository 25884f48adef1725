"""Review-page login sessions: random ids held in memory, with expiry and revocation.

The cookie carries only a random id (256 bits); what it stands for (reviewer, CSRF token,
expiry) stays on the server, so logging out revokes it for good, a stolen cookie dies
with its session, and two logins never share a value. Each session remembers a hash of
the admin token it was opened under: changing the token logs everyone out. Sessions
live in one process (a restart logs everyone out; several gateway processes need sticky
routing or the bearer token) and are bounded, the oldest going first.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Live sessions kept by default (an upper bound on memory, not a reviewer quota).
DEFAULT_MAX_SESSIONS = 1000


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class Session:
    """One login: who, the token its forms must carry, and until when (monotonic s)."""

    reviewer: str
    csrf: str
    expires_at: float
    token_hash: bytes


class SessionStore:
    """Sessions by (a hash of) their id: lookups never compare secrets byte by byte."""

    def __init__(
        self,
        ttl_s: float,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        #: Seconds, monotonic; replaceable so tests can move time forward.
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, reviewer: str, admin_token: str) -> tuple[str, Session]:
        """Open a session; returns the id for the cookie (kept nowhere else) and its data."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            reviewer=reviewer,
            csrf=secrets.token_hex(32),
            expires_at=self.clock() + self.ttl_s,
            token_hash=_digest(admin_token),
        )
        with self._lock:
            self._drop_expired()
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)  # the oldest login goes first
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str, admin_token: str) -> Session | None:
        """The live session with this id under this token, or None (and forget a dead one)."""
        if not session_id:
            return None
        key = _digest(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            stale = not hmac.compare_digest(session.token_hash, _digest(admin_token))
            if stale or session.expires_at <= self.clock():
                del self._sessions[key]
                return None
            return session

    def revoke(self, session_id: str) -> None:
        """End a session (logout): its cookie no longer works, even if replayed."""
        with self._lock:
            self._sessions.pop(_digest(session_id), None)

    def _drop_expired(self) -> None:
        # Every session has the same lifetime, so insertion order is expiry order.
        now = self.clock()
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.expires_at > now:
                break
            self._sessions.popitem(last=False)
