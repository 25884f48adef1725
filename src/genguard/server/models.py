"""The gateway's tables, declared on genguard's shared SQLAlchemy ``Base``.

Importing this module before :func:`genguard.store.open_store` is what creates them, so a
deployment keeps keys, audit log and review queue in the same database as the rest of
genguard (SQLite by default, PostgreSQL by URL). Table names start with ``gateway_``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from genguard.store import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes even for timezone columns: they are UTC, say so."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is kept, so a database leak does not leak keys."""

    __tablename__ = "gateway_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), index=True)  # unique among active keys
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    #: The first characters of the key, so an operator can tell keys apart in a listing.
    prefix: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(200))
    rate: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditRow(Base):
    """One decision the gateway made, with who asked, when, and on what content."""

    __tablename__ = "gateway_audit"
    __table_args__ = (Index("ix_gateway_audit_review", "review_status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    #: The client's own ``X-Request-ID`` (8-64 safe characters) when it sent one, so a
    #: decision can be found from the id in the client's logs.
    client_request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    key_name: Mapped[str] = mapped_column(String(100), index=True)
    route: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16), index=True)
    policy_id: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    categories_json: Mapped[str] = mapped_column(Text, default="{}")
    reasons_json: Mapped[str] = mapped_column(Text, default="[]")
    hard_rule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decision_json: Mapped[str] = mapped_column(Text)
    #: ``pending`` for items held for review, then ``approved`` or ``rejected``.
    review_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoredContentRow(Base):
    """Content kept for reviewers, encrypted at rest (only when the operator opts in)."""

    __tablename__ = "gateway_content"

    audit_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_audit.id", ondelete="CASCADE"), primary_key=True
    )
    media_type: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class ReviewSessionRow(Base):
    """A review-page login (see :class:`genguard.server.sessions.StoredSessionStore`).

    Only hashes are kept: of the cookie's id (so a database read does not yield working
    cookies) and of the admin token it was opened under; ``expires_at`` is wall-clock
    seconds since the epoch, which every gateway process agrees on.
    """

    __tablename__ = "gateway_review_sessions"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    csrf: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
