"""Database faults while serving: a 503 the client can retry, never a 500 or a lost decision.

Real SQLite files under ``tmp_path``, broken the way operators break them: permissions
taken away and given back, the file deleted under a running gateway, a damaged header.
Keys are created before the store is broken (the Harness issues them through it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from genguard.errors import StoreUnavailable
from genguard.store import PersonRow, open_store
from tests.server.conftest import Harness, auth

PROMPT = {"prompt": "a lighthouse at dusk"}


def db_path(harness: Harness) -> Path:
    path = harness.gateway.store.path
    assert path is not None and path.exists()
    return path


def moderate(harness: Harness, key: str) -> httpx.Response:
    return harness.client.post("/v1/moderate/prompt", headers=auth(key), json=PROMPT)


def assert_store_unavailable(response: httpx.Response, path: Path, reason: str) -> None:
    """503 store_unavailable with Retry-After and one safe line: no path, no SQL."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert reason in error["message"] and "\n" not in error["message"]
    assert int(response.headers["retry-after"]) > 0
    for secret in (str(path.parent), path.name, "SELECT", "INSERT", "sqlite3"):
        assert secret not in response.text


def readyz(harness: Harness) -> tuple[int, dict[str, Any]]:
    response = harness.client.get("/readyz")
    return response.status_code, response.json()


def metric_lines(harness: Harness) -> list[str]:
    return harness.client.get("/metrics").text.splitlines()


def test_ready_and_healthy_on_a_working_store(harness: Harness) -> None:
    assert moderate(harness, harness.key()).status_code == 200
    assert readyz(harness) == (200, {"status": "ready"})
    health = harness.client.get("/healthz").json()
    assert health["status"] == "ok" and health["store"] == "ok"


def test_deleted_database_is_a_503_never_an_acknowledged_loss(harness: Harness) -> None:
    key = harness.key()
    assert moderate(harness, key).status_code == 200
    path = db_path(harness)
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):  # rm genguard.db*
        (path.parent / name).unlink(missing_ok=True)

    # SQLite would write these rows into the unlinked file and report success.
    for _ in range(3):
        assert_store_unavailable(moderate(harness, key), path, "file_missing")
    assert readyz(harness) == (503, {"status": "unavailable", "reason": "file_missing"})
    health = harness.client.get("/healthz")
    assert health.status_code == 200 and health.json()["store"] == "unavailable"
    assert not path.exists(), "a deleted database must not come back empty"

    lines = metric_lines(harness)
    assert 'genguard_store_errors_total{reason="file_missing"} 3.0' in lines
    route = 'method="POST",route="/v1/moderate/prompt"'
    assert f'genguard_http_requests_total{{{route},status="503"}} 3.0' in lines
    assert not any('status="500"' in line for line in lines)


def test_database_deleted_during_a_request_is_not_answered_200(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted after the key was verified, before the decision is written."""
    key = harness.key()
    path = db_path(harness)
    guard = harness.gateway.guards.get("standard")
    check_prompt = guard.check_prompt

    def delete_then_check(*args: Any, **kwargs: Any) -> Any:
        path.unlink()
        return check_prompt(*args, **kwargs)

    monkeypatch.setattr(guard, "check_prompt", delete_then_check)
    assert_store_unavailable(moderate(harness, key), path, "file_missing")


def test_a_commit_into_a_file_deleted_meanwhile_raises(tmp_path: Path) -> None:
    """The check after the commit: SQLite accepted the row, but into an unlinked file."""
    path = tmp_path / "genguard.db"
    with open_store(path) as store:
        with pytest.raises(StoreUnavailable) as raised, store.session() as session:
            session.add(PersonRow(name="Ada Lovelace"))
            session.flush()
            path.unlink()
        assert raised.value.reason == "file_missing"
        assert str(path) in raised.value.detail and str(path) not in str(raised.value)
        assert store.problem() == "file_missing"


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """chmod the database folder and its files read-only, restoring them on the way out."""
    files = [p for p in folder.iterdir() if p.is_file()]
    for file in files:
        file.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)
        for file in files:
            file.chmod(0o644)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root ignores file permissions: the store stays writable"
)
def test_read_only_database_is_a_503_and_recovers_without_restart(harness: Harness) -> None:
    key = harness.key()
    assert moderate(harness, key).status_code == 200
    path = db_path(harness)
    with read_only(path.parent):
        # Connections opened before the chmod keep their write access (and write into the
        # same file, so nothing is lost); the fault shows on the ones opened after it.
        # Start from an empty pool, as a new worker would.
        harness.gateway.store.engine.dispose()
        assert_store_unavailable(moderate(harness, key), path, "read_only")
        assert readyz(harness) == (503, {"status": "unavailable", "reason": "read_only"})
    # The connection that failed was opened read-only: only a recycled pool recovers.
    response = moderate(harness, key)
    assert response.status_code == 200, response.text
    assert harness.gateway.audit.get(response.json()["audit_id"]) is not None
    assert readyz(harness) == (200, {"status": "ready"})
    assert 'genguard_store_errors_total{reason="read_only"} 1.0' in metric_lines(harness)


def test_damaged_database_is_a_503_and_recovers_once_repaired(harness: Harness) -> None:
    """A driver error (runs as root too): header overwritten in place, then restored."""
    key = harness.key()
    assert moderate(harness, key).status_code == 200
    store = harness.gateway.store
    path = db_path(harness)
    store.engine.dispose()  # checkpoint the WAL: new connections read the file's header
    with path.open("r+b") as file:
        header = file.read(16)
        file.seek(0)
        file.write(b"\0" * 16)
    pool = store.engine.pool
    try:
        assert_store_unavailable(moderate(harness, key), path, "corrupt")
        assert store.engine.pool is not pool, "the pool is recycled after a driver error"
        assert readyz(harness) == (503, {"status": "unavailable", "reason": "corrupt"})
    finally:
        with path.open("r+b") as file:
            file.write(header)
    response = moderate(harness, key)
    assert response.status_code == 200, response.text
    assert readyz(harness) == (200, {"status": "ready"})
    assert harness.client.get("/healthz").json()["store"] == "ok"
