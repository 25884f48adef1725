"""Audit log and review queue: every decision the gateway makes, in the shared database.

A row records who asked (key name), when, on what (SHA-256 and, when the provenance
module is available, a PDQ perceptual hash, so near-duplicates can be found later
without keeping the image), the category scores, the action and the policy id. Items
whose action is ``review`` enter the queue with status ``pending``; a reviewer's approve
or reject is recorded on the same row with the reviewer's name and the time.

Content is not kept by default. When the operator opts in (``store_content``), the bytes
are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) before they reach the database, so
a copied database file or backup shows no images without the key. Keys rotate: the
first configured key encrypts, all of them decrypt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select

from genguard.decision import Action, Decision
from genguard.errors import ConfigError, GenguardError
from genguard.server.models import AuditRow, StoredContentRow, aware, utcnow
from genguard.store import Store

log = logging.getLogger("genguard.server.audit")

REVIEW_STATES = ("pending", "approved", "rejected")


class ReviewError(GenguardError):
    """A review action on an item that does not exist or was already decided."""

    code = "review_conflict"


class ContentKeyMissing(GenguardError):
    """Stored content that none of the configured content keys decrypts (a retired key)."""

    code = "content_key_missing"


def split_keys(keys: str | bytes | Sequence[str | bytes]) -> list[str | bytes]:
    """``"new,old"`` (or a list) -> the keys, newest first; blanks around commas ignored."""
    if isinstance(keys, bytes):
        keys = keys.decode("ascii", "replace")
    if isinstance(keys, str):
        keys = keys.split(",")
    return [k.strip() for k in keys if k.strip()]


class ContentVault:
    """Encrypts content at rest with Fernet; several keys allow rotation.

    The first key encrypts; every key decrypts (cryptography's MultiFernet), so a new key
    goes first and the old one stays listed until nothing it encrypted is needed.
    """

    def __init__(self, keys: str | bytes | Sequence[str | bytes]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        fernets = []
        for index, key in enumerate(split_keys(keys), start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"content key {index} is not a Fernet key (32 url-safe base64 bytes; "
                    "several keys are comma-separated, newest first); make one with "
                    "`python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`"
                ) from exc
        if not fernets:
            raise ConfigError("no content key given: set GENGUARD_CONTENT_KEY to a Fernet key")
        self._fernet = MultiFernet(fernets)

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """The plaintext; ``InvalidToken`` when no configured key made ``token``."""
        return self._fernet.decrypt(token)


def perceptual_hash(rgb: np.ndarray | None) -> str | None:
    """PDQ hash when genguard.provenance provides it (and the image is usable), else None."""
    if rgb is None:
        return None
    try:
        from genguard.provenance.hashbank import pdq_hash
    except ImportError:
        return None
    try:
        return pdq_hash(np.ascontiguousarray(rgb))[0]
    except (GenguardError, ValueError) as exc:
        log.debug("no PDQ hash: %s", exc)
        return None


@dataclass
class AuditEntry:
    """What to record about one decision."""

    request_id: str
    key_name: str
    route: str
    decision: Decision
    sha256: str | None = None
    pdq: str | None = None
    content: bytes | None = None
    media_type: str = "application/octet-stream"
    client_request_id: str | None = None


@dataclass
class AuditRecord:
    """A recorded decision as read back (for the review page and the tests)."""

    id: int
    request_id: str
    created_at: datetime
    key_name: str
    route: str
    kind: str
    action: str
    policy_id: str
    sha256: str | None
    pdq: str | None
    categories: dict[str, float]
    reasons: list[str]
    hard_rule: str | None
    decision: dict[str, Any]
    review_status: str | None
    reviewer: str | None
    reviewed_at: datetime | None
    review_note: str | None
    has_content: bool
    client_request_id: str | None = None


def _to_record(row: AuditRow, has_content: bool) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        request_id=row.request_id,
        client_request_id=row.client_request_id,
        created_at=aware(row.created_at) or utcnow(),
        key_name=row.key_name,
        route=row.route,
        kind=row.kind,
        action=row.action,
        policy_id=row.policy_id,
        sha256=row.sha256,
        pdq=row.pdq,
        categories=json.loads(row.categories_json),
        reasons=json.loads(row.reasons_json),
        hard_rule=row.hard_rule,
        decision=json.loads(row.decision_json),
        review_status=row.review_status,
        reviewer=row.reviewer,
        reviewed_at=aware(row.reviewed_at),
        review_note=row.review_note,
        has_content=has_content,
    )


def minimised(decision: dict[str, Any]) -> dict[str, Any]:
    """The decision as stored: no words of the user's text, only where and what matched.

    ``matches[].quote`` repeats the prompt's own words; the audit row keeps offsets,
    category, source and the lexicon term, so the text itself exists only in the encrypted
    content (when ``store_content`` is on) and nowhere in plaintext. Timings are dropped
    as noise.
    """
    data = dict(decision)
    data.pop("timings_ms", None)
    data["matches"] = [
        {k: v for k, v in match.items() if k != "quote"} for match in data.get("matches", [])
    ]
    return data


class AuditLog:
    """Writes decisions and serves the review queue."""

    def __init__(self, store: Store, vault: ContentVault | None = None) -> None:
        self.store = store
        self.vault = vault

    @property
    def stores_content(self) -> bool:
        return self.vault is not None

    def record(self, entries: list[AuditEntry]) -> list[int]:
        """Write entries in one transaction; returns their ids in order."""
        rows = []
        with self.store.session() as session:
            for entry in entries:
                row = self._row(entry)
                session.add(row)
                rows.append((row, entry))
            session.flush()
            for row, entry in rows:
                if self.vault is not None and entry.content is not None:
                    session.add(
                        StoredContentRow(
                            audit_id=row.id,
                            media_type=entry.media_type,
                            ciphertext=self.vault.encrypt(entry.content),
                        )
                    )
        return [row.id for row, _ in rows]

    @staticmethod
    def _row(entry: AuditEntry) -> AuditRow:
        decision = entry.decision
        data = minimised(decision.to_dict())
        return AuditRow(
            request_id=entry.request_id,
            client_request_id=entry.client_request_id,
            key_name=entry.key_name,
            route=entry.route,
            kind=decision.kind,
            action=decision.action.value,
            policy_id=decision.policy_id,
            sha256=entry.sha256 or decision.sha256,
            pdq=entry.pdq,
            categories_json=json.dumps(data["categories"]),
            reasons_json=json.dumps(decision.reasons, ensure_ascii=False),
            hard_rule=decision.hard_rule,
            decision_json=json.dumps(data, ensure_ascii=False),
            review_status="pending" if decision.action is Action.REVIEW else None,
        )

    def get(self, audit_id: int) -> AuditRecord | None:
        with self.store.session() as session:
            row = session.get(AuditRow, audit_id)
            if row is None:
                return None
            return _to_record(row, session.get(StoredContentRow, audit_id) is not None)

    def recent(
        self,
        limit: int = 100,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> list[AuditRecord]:
        """Newest first (optionally only the rows of one request, by the gateway's id or
        by the ``X-Request-ID`` the client sent)."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(AuditRow.request_id == request_id)
        if client_request_id is not None:
            query = query.where(AuditRow.client_request_id == client_request_id)
        return self._records(query)

    def queue(self, status: str = "pending", limit: int = 50) -> list[AuditRecord]:
        """Review items in a state, oldest first (first in, first reviewed)."""
        query = (
            select(AuditRow).where(AuditRow.review_status == status).order_by(AuditRow.id)
        ).limit(limit)
        return self._records(query)

    def decided(self, limit: int = 20) -> list[AuditRecord]:
        """The latest review verdicts, newest first."""
        query = (
            select(AuditRow)
            .where(AuditRow.review_status.in_(("approved", "rejected")))
            .order_by(AuditRow.reviewed_at.desc(), AuditRow.id.desc())
            .limit(limit)
        )
        return self._records(query)

    def queue_size(self, status: str = "pending") -> int:
        with self.store.session() as session:
            query = select(func.count()).where(AuditRow.review_status == status)
            return int(session.scalar(query) or 0)

    def _records(self, query: Any) -> list[AuditRecord]:
        with self.store.session() as session:
            rows = session.scalars(query).all()
            ids = [row.id for row in rows]
            stored = set(
                session.scalars(
                    select(StoredContentRow.audit_id).where(StoredContentRow.audit_id.in_(ids))
                ).all()
            )
            return [_to_record(row, row.id in stored) for row in rows]

    def resolve(self, audit_id: int, verdict: str, reviewer: str, note: str = "") -> AuditRecord:
        """Approve or reject a pending item, once; a second verdict is a conflict."""
        if verdict not in ("approved", "rejected"):
            raise ReviewError(f"verdict must be 'approved' or 'rejected', not {verdict!r}")
        with self.store.session() as session:
            row = session.get(AuditRow, audit_id, with_for_update=True)
            if row is None or row.review_status is None:
                raise ReviewError(f"item {audit_id} is not in the review queue")
            if row.review_status != "pending":
                raise ReviewError(
                    f"item {audit_id} was already {row.review_status} by {row.reviewer}"
                )
            row.review_status = verdict
            row.reviewer = reviewer
            row.reviewed_at = utcnow()
            row.review_note = note or None
            has_content = session.get(StoredContentRow, audit_id) is not None
            record = _to_record(row, has_content)
        log.info("review %s", verdict, extra={"audit_id": audit_id, "reviewer": reviewer})
        return record

    def content(self, audit_id: int) -> tuple[str, bytes] | None:
        """Decrypted (media type, bytes) of stored content, or None.

        Content under a key no longer configured raises :class:`ContentKeyMissing`: the
        operator rotated keys and dropped the old one, which a restart with it can undo.
        """
        if self.vault is None:
            return None
        with self.store.session() as session:
            row = session.get(StoredContentRow, audit_id)
            if row is None:
                return None
            media_type, ciphertext = row.media_type, row.ciphertext
        return media_type, _open(self.vault, audit_id, ciphertext)


def _open(vault: ContentVault, audit_id: int, ciphertext: bytes) -> bytes:
    """Decrypt one item's content; a retired key is a clear error, never a 500."""
    from cryptography.fernet import InvalidToken

    try:
        return vault.decrypt(ciphertext)
    except InvalidToken:
        log.warning("stored content undecryptable", extra={"audit_id": audit_id})
        raise ContentKeyMissing(
            f"the content of item {audit_id} was encrypted with a content key that is no "
            "longer configured: list the old key after the new one (GENGUARD_CONTENT_KEY="
            "new,old) to read it"
        ) from None
