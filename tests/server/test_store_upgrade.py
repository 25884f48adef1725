"""A database written by an older genguard opens in a newer one: added columns appear."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine

from genguard.errors import ConfigError
from genguard.server.auditlog import AuditLog
from genguard.server.models import AuditRow
from genguard.store import open_store

ADDED = "client_request_id"


def _old_audit_table(path: Path) -> None:
    """``gateway_audit`` as it was before ADDED existed, with one decision in it."""
    metadata = MetaData()
    columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
               for c in AuditRow.__table__.columns if c.name != ADDED]  # fmt: skip
    Table("gateway_audit", metadata, *columns)
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO gateway_audit (request_id, created_at, key_name, route, kind, action,"
            " policy_id, categories_json, reasons_json, decision_json) VALUES"
            " ('old-request-0001', '2026-01-01 00:00:00', 'bot', 'moderate/prompt', 'prompt',"
            " 'allow', 'standard@1', '{}', '[]', '{}')"
        )


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute("PRAGMA table_info(gateway_audit)")}


def test_an_old_audit_table_gains_the_new_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_audit_table(path)
    assert ADDED not in _columns(path)
    store = open_store(path)
    try:
        assert ADDED in _columns(path)
        with sqlite3.connect(path) as db:
            indexes = {row[1] for row in db.execute("PRAGMA index_list(gateway_audit)")}
        assert any(ADDED in name for name in indexes), indexes
        (old,) = AuditLog(store).recent()
        assert old.request_id == "old-request-0001" and old.client_request_id is None
    finally:
        store.close()
    open_store(path).close()  # a second open finds nothing to do
    assert ADDED in _columns(path)


def test_a_missing_column_that_cannot_be_null_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    metadata = MetaData()
    Table("gateway_audit", metadata, *[Column(c.name, c.type, primary_key=c.primary_key)
          for c in AuditRow.__table__.columns if c.name not in (ADDED, "route")])  # fmt: skip
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(ConfigError, match="lacks column route"):
        open_store(path)
