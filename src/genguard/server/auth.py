"""API keys: created once, shown once, stored as SHA-256, checked in constant time.

A key is 32 random bytes (``gg_`` + urlsafe base64), so a plain SHA-256 is enough: there
is nothing to brute-force, and a fast hash keeps authentication out of the latency
budget (no bcrypt-style stretching is needed for high-entropy secrets). Each key carries
a name (shown in logs and the audit log, never the secret), a policy and a rate limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from genguard.errors import ConfigError
from genguard.server.models import ApiKeyRow, aware, utcnow
from genguard.store import Store

KEY_PREFIX = "gg_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period_s`` seconds; the bucket also holds ``count`` at most."""

    count: int
    period_s: float

    @property
    def unlimited(self) -> bool:
        return self.count <= 0

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        if self.unlimited:
            return "unlimited"
        for name in ("s", "min", "hour", "day"):
            if self.period_s == _PERIODS[name]:
                return f"{self.count}/{name}"
        return f"{self.count}/{self.period_s:g}s"


UNLIMITED = Rate(0, 1.0)


def parse_rate(text: str) -> Rate:
    """Parse ``60/min``, ``10/s``, ``1000/hour``, ``5/10s`` or ``unlimited``."""
    value = text.strip().lower()
    if value in ("unlimited", "none", "0"):
        return UNLIMITED
    match = _RATE.match(value)
    unit = match.group(3) if match else ""
    unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _PERIODS else unit
    if not match or unit not in _PERIODS or int(match.group(1)) < 1:
        raise ConfigError(
            f"bad rate {text!r}: use COUNT/PERIOD such as 60/min, 10/s, 1000/hour, "
            "5/10s, or 'unlimited'"
        )
    multiple = float(match.group(2) or 1)
    if multiple <= 0:
        raise ConfigError(f"bad rate {text!r}: the period must be positive")
    return Rate(int(match.group(1)), multiple * _PERIODS[unit])


@dataclass(frozen=True)
class ApiKey:
    """What a request is allowed to do, once its key is verified (never the secret)."""

    name: str
    policy: str
    rate: Rate
    prefix: str
    created_at: datetime
    revoked: bool = False


def generate_key() -> str:
    """A new secret key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        name=row.name,
        policy=row.policy,
        rate=parse_rate(row.rate),
        prefix=row.prefix,
        created_at=aware(row.created_at) or utcnow(),
        revoked=row.revoked_at is not None,
    )


class KeyStore:
    """Create, list, revoke and verify API keys in the shared database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str, policy: str, rate: str) -> tuple[ApiKey, str]:
        """Make a key; returns it with the secret, which is not kept and cannot be shown again."""
        if not _NAME.match(name):
            raise ConfigError(
                f"bad key name {name!r}: 1-100 characters, letters, digits, '.', '_' or '-'"
            )
        parsed = parse_rate(rate)
        secret = generate_key()
        row = ApiKeyRow(
            name=name,
            key_hash=hash_key(secret),
            prefix=secret[:10],
            policy=policy,
            rate=str(parsed),
        )
        with self.store.session() as session:
            if session.scalar(self._active(name)) is not None:
                raise ConfigError(f"an active key named {name!r} exists already (revoke it first)")
            session.add(row)
        return _to_key(row), secret

    @staticmethod
    def _active(name: str) -> Select[ApiKeyRow]:
        return select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        with self.store.session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)).all()
            keys = [_to_key(row) for row in rows]
        return [k for k in keys if include_revoked or not k.revoked]

    def revoke(self, name: str) -> ApiKey:
        """Revoke by name; the row stays (for the record) but never verifies again.

        The name is free again afterwards, so a leaked key is replaced under the same name.
        """
        with self.store.session() as session:
            row = session.scalar(self._active(name))
            if row is None:
                raise ConfigError(f"no active key named {name!r}")
            row.revoked_at = utcnow()
            key = _to_key(row)
        return key

    def verify(self, secret: str) -> ApiKey | None:
        """The key for ``secret`` when it exists and is not revoked, else None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        digest = hash_key(secret)
        with self.store.session() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
            if row is None or row.revoked_at is not None:
                return None
            # The lookup used an index on the hash; the final comparison is constant-time so
            # that no timing difference depends on how much of a guessed hash matched.
            if not hmac.compare_digest(row.key_hash, digest):
                return None
            return _to_key(row)
