"""Audit log, encrypted content, review queue and review page (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.fernet import Fernet, InvalidToken
from PIL import Image
from sqlalchemy import select

from genguard.server.auditlog import AuditLog, ContentVault, ReviewError
from genguard.server.models import StoredContentRow
from genguard.store import open_store
from tests.server.conftest import ALLOW_LEVEL, NUDITY_LEVEL, Harness, auth, png

ADMIN = "admin-token-for-tests-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    return request.getfixturevalue("postgres_url")


def checkerboard(high: int = 225, low: int = 180, size: int = 256, cell: int = 4) -> bytes:
    """A detailed image whose mean (~202) the fake detector reads as nudity (synthetic)."""
    yy, xx = np.mgrid[0:size, 0:size]
    grid = np.where(((yy // cell) + (xx // cell)) % 2 == 0, high, low).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(grid[:, :, None], 3, axis=2)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_decision_is_recorded_without_content(harness_factory, database: str) -> None:
    harness: Harness = harness_factory(store={"url": database})
    name = f"bot-{time.time_ns()}"
    key = harness.key(name, "reviewing")
    data = png(NUDITY_LEVEL)
    response = harness.client.post("/v1/moderate/image", headers=auth(key), content=data)
    audit_id = response.json()["audit_id"]
    record = harness.gateway.audit.get(audit_id)
    assert record.key_name == name and record.kind == "image" and record.route == "moderate_image"
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.action == "review" and record.review_status == "pending"
    assert record.policy_id.startswith("reviewing@")
    assert record.categories["nudity"] == pytest.approx(0.9)
    assert record.reasons and "nudity" in record.reasons[0]
    assert record.request_id == response.headers["x-request-id"]
    if record.pdq is not None:  # provenance provides PDQ: 256 bits as hex
        assert re.fullmatch(r"[0-9a-f]{64}", record.pdq)
    assert not record.has_content and harness.gateway.audit.content(audit_id) is None
    prompt = harness.client.post(
        "/v1/moderate/prompt", headers=auth(key), json={"prompt": "a lighthouse"}
    ).json()
    prompt_record = harness.gateway.audit.get(prompt["audit_id"])
    assert prompt_record.kind == "prompt" and prompt_record.action == "allow"
    assert prompt_record.sha256 == hashlib.sha256(b"a lighthouse").hexdigest()
    assert prompt_record.review_status is None


def test_stored_content_is_encrypted_at_rest(harness_factory, database: str) -> None:
    secret = Fernet.generate_key().decode()
    harness = harness_factory(store={"url": database, "store_content": True, "content_key": secret})
    key = harness.key(f"bot-{time.time_ns()}")
    data = png(ALLOW_LEVEL)
    audit_id = harness.client.post("/v1/moderate/image", headers=auth(key), content=data).json()[
        "audit_id"
    ]
    with harness.gateway.store.session() as session:
        ciphertext = session.scalar(
            select(StoredContentRow.ciphertext).where(StoredContentRow.audit_id == audit_id)
        )
    assert ciphertext and b"PNG" not in ciphertext and data not in ciphertext
    assert harness.gateway.audit.content(audit_id) == ("image/png", data)
    with pytest.raises(InvalidToken):
        ContentVault(Fernet.generate_key()).decrypt(ciphertext)


def test_store_content_without_a_key_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    from genguard.errors import ConfigError
    from genguard.server.app import create_app
    from tests.server.conftest import make_config

    monkeypatch.delenv("GENGUARD_CONTENT_KEY", raising=False)
    with pytest.raises(ConfigError, match="GENGUARD_CONTENT_KEY"):
        create_app(make_config(tmp_path, store={"store_content": True}))


def test_review_queue_resolves_once(database: str) -> None:
    from genguard.decision import Action, Decision
    from genguard.server.auditlog import AuditEntry

    store = open_store(database)
    audit = AuditLog(store)
    decision = Decision(Action.REVIEW, {"violence": 0.8}, "standard@x", kind="prompt")
    allowed = Decision(Action.ALLOW, {"violence": 0.1}, "standard@x", kind="prompt")
    tag = f"req-{time.time_ns()}"
    held, passed = audit.record(
        [AuditEntry(tag, "bot", "moderate_prompt", decision), AuditEntry(tag, "bot", "x", allowed)]
    )
    assert [r.id for r in audit.queue() if r.request_id == tag] == [held]
    record = audit.resolve(held, "approved", "alice", "fine: a film still")
    assert (record.review_status, record.reviewer, record.review_note) == (
        "approved",
        "alice",
        "fine: a film still",
    )
    assert record.reviewed_at is not None and record.reviewed_at.tzinfo is not None
    with pytest.raises(ReviewError, match="already approved by alice"):
        audit.resolve(held, "rejected", "bob")
    with pytest.raises(ReviewError, match="not in the review queue"):
        audit.resolve(passed, "approved", "bob")
    assert held not in [r.id for r in audit.queue()]
    store.close()


def _login(harness: Harness, reviewer: str = "alice") -> None:
    response = harness.client.post(
        "/review/login", data={"token": ADMIN, "reviewer": reviewer}, follow_redirects=False
    )
    assert response.status_code == 303


def test_review_page_flow(harness_factory) -> None:
    harness = harness_factory(
        review={"admin_token": ADMIN},
        store={"store_content": True, "content_key": Fernet.generate_key().decode()},
    )
    key = harness.key("uploader", "reviewing")
    data = checkerboard()
    audit_id = harness.client.post("/v1/moderate/image", headers=auth(key), content=data).json()[
        "audit_id"
    ]
    client = harness.client
    # Not logged in: the login form, no queue; a wrong token is refused.
    assert 'name="token"' in client.get("/review").text
    bad = client.post("/review/login", data={"token": "wrong", "reviewer": "mallory"})
    assert bad.status_code == 401
    assert client.get(f"/review/items/{audit_id}/thumb").status_code == 401
    _login(harness)
    page = client.get("/review").text
    assert f'id="item-{audit_id}"' in page and "uploader" in page
    assert "nudity 0.90 &gt;= 0.60 in policy reviewing -&gt; review" in page
    # The thumbnail is small and blurred: most of the checkerboard's detail is gone.
    thumb = client.get(f"/review/items/{audit_id}/thumb")
    assert thumb.headers["content-type"] == "image/jpeg"
    small = np.asarray(Image.open(io.BytesIO(thumb.content)).convert("L"), dtype=float)
    assert max(small.shape) <= 192
    original = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    assert np.abs(np.diff(small, axis=1)).mean() < 0.1 * np.abs(np.diff(original, axis=1)).mean()
    # A form post without the CSRF token is refused; with it, the verdict is recorded.
    no_csrf = client.post(f"/review/items/{audit_id}", data={"verdict": "approve"})
    assert no_csrf.status_code == 403
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    done = client.post(
        f"/review/items/{audit_id}",
        data={"verdict": "reject", "csrf": csrf, "note": "not for this site"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    record = harness.gateway.audit.get(audit_id)
    assert (record.review_status, record.reviewer, record.review_note) == (
        "rejected",
        "alice",
        "not for this site",
    )
    after = client.get("/review").text
    assert f'id="item-{audit_id}"' not in after and "Recently decided" in after
    again = client.post(f"/review/items/{audit_id}", data={"verdict": "approve", "csrf": csrf})
    assert "already rejected by alice" in again.text


def test_review_api_with_bearer_token_and_forged_cookie(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    key = harness.key("uploader", "reviewing")
    audit_id = harness.client.post(
        "/v1/moderate/image", headers=auth(key), content=png(NUDITY_LEVEL)
    ).json()["audit_id"]
    harness.client.cookies.set("genguard_review", "YWxpY2U.deadbeef", path="/review")
    assert 'name="token"' in harness.client.get("/review").text  # forged cookie: login form
    harness.client.cookies.clear()
    # Images are not stored by default: the page says so and there is no thumbnail.
    headers = {"Authorization": f"Bearer {ADMIN}", "X-Reviewer": "ci-bot"}
    assert "image not stored" in harness.client.get("/review", headers=headers).text
    assert harness.client.get(f"/review/items/{audit_id}/thumb", headers=headers).status_code == 404
    response = harness.client.post(
        f"/review/items/{audit_id}", data={"verdict": "approve"}, headers=headers
    )
    assert response.status_code == 204
    assert harness.gateway.audit.get(audit_id).reviewer == "ci-bot"


def test_review_is_disabled_without_a_token(harness: Harness, monkeypatch) -> None:
    monkeypatch.delenv("GENGUARD_ADMIN_TOKEN", raising=False)
    response = harness.client.get("/review")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "review_disabled"


def test_review_page_headers_and_login_throttle(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    page = harness.client.get("/review")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    statuses = [
        harness.client.post(
            "/review/login", data={"token": f"guess{i}", "reviewer": "m"}
        ).status_code
        for i in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    # Even the right token waits once the address is throttled.
    throttled = harness.client.post("/review/login", data={"token": ADMIN, "reviewer": "a"})
    assert throttled.status_code == 429 and "retry-after" in throttled.headers


@pytest.mark.parametrize("store_content", [False, True])
def test_prompt_words_never_sit_in_the_database_in_plaintext(
    harness_factory, tmp_path: Path, store_content: bool
) -> None:
    """Matches are stored as offsets and terms; the user's words only as encrypted content."""
    store = {"store_content": True, "content_key": Fernet.generate_key().decode()}
    harness = harness_factory(store=store if store_content else {})
    prompt = "Quillfeather ZZviolence at the Wrenholt gate"
    response = harness.client.post(
        "/v1/moderate/prompt", headers=auth(harness.key()), json={"prompt": prompt}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"]["matches"][0]["quote"] == "ZZviolence"  # the caller sees it
    stored = harness.gateway.audit.get(body["audit_id"])
    assert stored is not None
    (match,) = stored.decision["matches"]
    assert "quote" not in match
    assert (match["start"], match["end"], match["category"]) == (13, 23, "violence")
    harness.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path).rglob("*") if p.is_file())
    for word in (b"Quillfeather", b"ZZviolence", b"Wrenholt"):
        assert word not in raw, word
    if store_content:
        assert harness.gateway.audit.content(body["audit_id"])[1] == prompt.encode()
