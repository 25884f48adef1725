"""Review-page login sessions: random ids, with expiry and revocation.

The cookie carries only a random id (256 bits); what it stands for (reviewer, CSRF token,
expiry) stays on the server, so logging out revokes it for good, a stolen cookie dies
with its session, and two logins never share a value. Each session remembers a hash of
the admin token it was opened under: changing the token logs everyone out. Sessions are
bounded, the oldest going first.

The gateway keeps them in its database (:class:`StoredSessionStore`), so every process
sharing the database knows every login and a restart logs nobody out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from genguard.server.models import ReviewSessionRow
from genguard.store import Store

#: Live sessions kept by default (an upper bound on rows, not a reviewer quota).
DEFAULT_MAX_SESSIONS = 1000


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class Session:
    """One login: who, the token its forms must carry, and until when (epoch s)."""

    reviewer: str
    csrf: str
    expires_at: float
    token_hash: bytes


class StoredSessionStore:
    """Sessions kept in genguard's database, so every gateway process sharing it (several
    workers, several hosts) knows every login, and a restart logs nobody out. Times are
    wall-clock seconds (processes share no monotonic clock); only hashes of the ids are
    stored. Database faults raise StoreUnavailable (a 503).
    """

    def __init__(
        self,
        store: Store,
        ttl_s: float,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        #: Seconds since the epoch; replaceable so tests can move time forward.
        self.clock = clock

    def __len__(self) -> int:
        with self.store.session() as db:
            return int(db.scalar(select(func.count()).select_from(ReviewSessionRow)) or 0)

    def create(self, reviewer: str, admin_token: str) -> tuple[str, Session]:
        """Open a session; returns the id for the cookie (kept nowhere else) and its data."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            reviewer=reviewer,
            csrf=secrets.token_hex(32),
            expires_at=self.clock() + self.ttl_s,
            token_hash=_digest(admin_token),
        )
        with self.store.session() as db:
            db.execute(delete(ReviewSessionRow).where(ReviewSessionRow.expires_at <= self.clock()))
            live = int(db.scalar(select(func.count()).select_from(ReviewSessionRow)) or 0)
            surplus = live - self.max_sessions + 1
            if surplus > 0:  # the oldest logins go first (one lifetime: oldest = expiring)
                oldest = select(ReviewSessionRow.id_hash).order_by(ReviewSessionRow.expires_at)
                doomed = list(db.scalars(oldest.limit(surplus)))
                db.execute(delete(ReviewSessionRow).where(ReviewSessionRow.id_hash.in_(doomed)))
            db.add(
                ReviewSessionRow(
                    id_hash=_digest(session_id),
                    reviewer=reviewer,
                    csrf=session.csrf,
                    expires_at=session.expires_at,
                    token_hash=session.token_hash,
                )
            )
        return session_id, session

    def get(self, session_id: str, admin_token: str) -> Session | None:
        """The live session with this id under this token, or None (and forget a dead one)."""
        if not session_id:
            return None
        key = _digest(session_id)
        with self.store.session() as db:
            row = db.get(ReviewSessionRow, key)
            if row is None:
                return None
            stale = not hmac.compare_digest(row.token_hash, _digest(admin_token))
            if stale or row.expires_at <= self.clock():
                db.delete(row)
                return None
            return Session(row.reviewer, row.csrf, row.expires_at, row.token_hash)

    def revoke(self, session_id: str) -> None:
        """End a session (logout): its cookie no longer works, on any process."""
        with self.store.session() as db:
            db.execute(
                delete(ReviewSessionRow).where(ReviewSessionRow.id_hash == _digest(session_id))
            )
