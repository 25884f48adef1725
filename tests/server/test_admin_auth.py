"""Admin (review page) authentication: guess limits, client addresses, sessions, CSRF."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from genguard.errors import ConfigError
from genguard.server.app import create_app
from genguard.server.auth import Rate
from genguard.server.clients import client_address
from genguard.server.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, peek
from genguard.server.review import COOKIE
from genguard.server.sessions import StoredSessionStore
from genguard.store import open_store
from tests.server.conftest import NUDITY_LEVEL, Harness, auth, fake_guards, make_config, png

ADMIN = "admin-token-for-auth-tests-0123456789"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def _peer(harness: Harness, host: str) -> TestClient:
    """Another client of the same app, connecting from socket address ``host``."""
    return TestClient(harness.client.app, raise_server_exceptions=False, client=(host, 40000))


def _login(client: TestClient, reviewer: str = "alice", **headers: str) -> str:
    """Log in; returns the session cookie's value."""
    response = client.post(
        "/review/login",
        data={"token": ADMIN, "reviewer": reviewer},
        headers=headers,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response.cookies[COOKIE]


def _wrong_logins(client: TestClient, count: int, **headers: str) -> list[int]:
    return [
        client.post(
            "/review/login", data={"token": f"guess-{i}", "reviewer": "m"}, headers=headers
        ).status_code
        for i in range(count)
    ]


def _with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def _logged_in(client: TestClient, cookie: str) -> bool:
    page = client.get("/review", headers=_with_cookie(cookie))
    assert page.status_code == 200
    return "Log out" in page.text and 'name="token"' not in page.text


def _queued_item(harness: Harness) -> int:
    key = harness.key(f"uploader-{time.time_ns()}", "reviewing")
    response = harness.client.post(
        "/v1/moderate/image", headers=auth(key), content=png(NUDITY_LEVEL)
    )
    assert response.json()["decision"]["action"] == "review"
    return int(response.json()["audit_id"])


# -- guess limits -------------------------------------------------------------------------


def test_wrong_bearer_tokens_are_counted_and_throttled(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    wrong = {"Authorization": "Bearer not-the-admin-token"}
    statuses = [harness.client.get("/review", headers=wrong).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    # Once throttled even the right token waits (else the answer would say which guess
    # was right), on every route, and the login form shares the same budget.
    right = {"Authorization": f"Bearer {ADMIN}"}
    throttled = harness.client.get("/review", headers=right)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert harness.client.get("/review/items/1/thumb", headers=right).status_code == 429
    login = harness.client.post("/review/login", data={"token": ADMIN, "reviewer": "a"})
    assert login.status_code == 429
    # Another address is not affected.
    assert _peer(harness, "198.51.100.7").get("/review", headers=right).status_code == 200


def test_successful_attempts_spend_nothing(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    right = {"Authorization": f"Bearer {ADMIN}"}
    assert all(harness.client.get("/review", headers=right).status_code == 200 for _ in range(25))
    _login(harness.client)
    # The whole budget of failures is still there.
    assert _wrong_logins(harness.client, 11) == [401] * 10 + [429]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    statuses = [
        harness.client.post(
            "/review/login",
            data={"token": "guess", "reviewer": "m"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(11)
    ]
    assert statuses == [401] * 10 + [429]


def test_trusted_proxy_forwards_distinct_clients(harness_factory) -> None:
    harness = harness_factory(
        review={"admin_token": ADMIN}, server={"trusted_proxies": ["10.0.0.0/8"]}
    )
    proxy = _peer(harness, "10.0.0.2")
    first = {"X-Forwarded-For": "203.0.113.5"}
    assert _wrong_logins(proxy, 11, **first) == [401] * 10 + [429]
    # A left-most entry the client wrote itself changes nothing: the proxy appended it.
    forged = {"X-Forwarded-For": "192.0.2.99, 203.0.113.5"}
    assert _wrong_logins(proxy, 1, **forged) == [429]
    # Another client behind the same proxy has its own budget.
    assert _wrong_logins(proxy, 1, **{"X-Forwarded-For": "203.0.113.6"}) == [401]
    assert _login(proxy, **{"X-Forwarded-For": "203.0.113.6"})


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "headers": headers, "client": (peer, 1)})


def test_client_address_trusts_only_configured_proxies() -> None:
    trusted = ["10.0.0.0/8", "2001:db8::/32"]
    assert client_address(_request("192.0.2.1", "203.0.113.5"), trusted) == "192.0.2.1"
    assert client_address(_request("192.0.2.1", "203.0.113.5")) == "192.0.2.1"
    chain = "198.51.100.1, 203.0.113.5, 10.0.0.3"  # client-written, client, inner proxy
    assert client_address(_request("10.0.0.2", chain), trusted) == "203.0.113.5"
    assert client_address(_request("10.0.0.2", "10.0.0.9, 10.0.0.3"), trusted) == "10.0.0.9"
    assert client_address(_request("10.0.0.2"), trusted) == "10.0.0.2"
    assert client_address(_request("2001:db8::1", "2001:0db8:0::5"), trusted) == "2001:db8::5"
    assert client_address(_request("10.0.0.2", "junk"), trusted) == "junk"
    # Non-IP peers (TestClient, Unix sockets) are plain strings, never trusted.
    assert client_address(_request("testclient", "203.0.113.5"), trusted) == "testclient"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_peek_reads_a_bucket_without_spending(backend: str, request: pytest.FixtureRequest) -> None:
    limiter: RateLimiter = (
        MemoryRateLimiter()
        if backend == "memory"
        else RedisRateLimiter(request.getfixturevalue("redis_url"))
    )
    rate, bucket = Rate(2, 60.0), f"peek-{time.time_ns()}"
    assert all(peek(limiter, bucket, rate).allowed for _ in range(5))
    assert limiter.hit(bucket, rate).allowed and limiter.hit(bucket, rate).allowed
    empty = peek(limiter, bucket, rate)
    assert not empty.allowed and 25 <= float(empty.headers()["Retry-After"]) <= 31
    limiter.close()


# -- the token ----------------------------------------------------------------------------


def test_short_admin_token_is_refused_at_startup(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GENGUARD_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"31 characters.*minimum of 32.*token_urlsafe"):
        create_app(make_config(tmp_path, review={"admin_token": "x" * 31}), guards=fake_guards())
    monkeypatch.setenv("GENGUARD_ADMIN_TOKEN", "hunter2")
    with pytest.raises(ConfigError, match=r"GENGUARD_ADMIN_TOKEN.*7 characters"):
        create_app(make_config(tmp_path), guards=fake_guards())
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
        make_config(tmp_path, server={"trusted_proxies": ["proxy.internal"]})


# -- sessions -----------------------------------------------------------------------------


def test_each_login_gets_a_fresh_random_session(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    first = _login(_peer(harness, "192.0.2.1"))
    second = _login(_peer(harness, "192.0.2.1"))
    assert first != second and len(first) >= 43
    assert "alice" not in first and "YWxpY2U" not in first  # the name is not in it
    assert _logged_in(harness.client, first) and _logged_in(harness.client, second)
    # Logging in again from a browser that holds a session replaces that session.
    third = _login(harness.client)
    fourth = _login(harness.client)
    assert not _logged_in(_peer(harness, "192.0.2.2"), third)
    assert _logged_in(_peer(harness, "192.0.2.2"), fourth)


def test_logout_revokes_the_session(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    cookie = _login(harness.client)
    page = harness.client.get("/review").text
    csrf = CSRF.search(page).group(1)
    assert 'action="/review/logout"><input type="hidden" name="csrf"' in page
    # Logging out is a state change too: the cookie alone does not do it.
    assert harness.client.post("/review/logout").status_code == 403
    assert _logged_in(_peer(harness, "192.0.2.1"), cookie)
    out = harness.client.post("/review/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    # The old cookie, replayed, no longer opens anything.
    replay = _peer(harness, "192.0.2.1")
    assert not _logged_in(replay, cookie)
    item = replay.get("/review/items/1/thumb", headers=_with_cookie(cookie))
    assert item.status_code == 401
    assert len(harness.gateway.sessions) == 0


def test_expired_session_shows_the_login_form(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN, "session_ttl_s": 600})
    response = harness.client.post(
        "/review/login", data={"token": ADMIN, "reviewer": "alice"}, follow_redirects=False
    )
    assert "Max-Age=600" in response.headers["set-cookie"]
    cookie = response.cookies[COOKIE]
    assert _logged_in(harness.client, cookie)
    sessions = harness.gateway.sessions
    start = sessions.clock
    sessions.clock = lambda: start() + 601
    assert not _logged_in(harness.client, cookie)
    assert len(sessions) == 0  # forgotten, not just refused


def test_changing_the_admin_token_logs_everyone_out(harness_factory, monkeypatch) -> None:
    monkeypatch.setenv("GENGUARD_ADMIN_TOKEN", ADMIN)
    harness = harness_factory()
    cookie = _login(harness.client)
    assert _logged_in(harness.client, cookie)
    monkeypatch.setenv("GENGUARD_ADMIN_TOKEN", ADMIN + "-rotated")
    assert not _logged_in(harness.client, cookie)


def test_live_sessions_are_bounded_oldest_first(tmp_path, request) -> None:
    now = [1000.0]
    store = open_store(tmp_path / "sessions.db")
    request.addfinalizer(store.close)
    sessions = StoredSessionStore(store, ttl_s=60, max_sessions=2, clock=lambda: now[0])
    ids = [sessions.create(name, ADMIN)[0] for name in ("a", "b", "c")]
    assert sessions.get(ids[0], ADMIN) is None
    assert [getattr(sessions.get(i, ADMIN), "reviewer", None) for i in ids[1:]] == ["b", "c"]
    assert sessions.get(ids[2], ADMIN + "x") is None  # another token: gone for good
    assert sessions.get(ids[2], ADMIN) is None
    now[0] += 61
    assert sessions.get(ids[1], ADMIN) is None and len(sessions) == 0


def test_a_login_holds_on_every_gateway_process_sharing_the_database(
    harness_factory, tmp_path
) -> None:
    """Two gateways on one database (two workers, two hosts): a login made on one opens
    the review page on the other, and logging out on the other ends it on both; the
    database holds no cookie value, only its hash."""
    shared = {"data_dir": str(tmp_path / "shared")}
    first = harness_factory(store=shared, review={"admin_token": ADMIN})
    second = harness_factory(store=shared, review={"admin_token": ADMIN})
    cookie = _login(first.client)
    assert _logged_in(second.client, cookie)
    files = (tmp_path / "shared").glob("genguard.db*")  # the database and its WAL
    assert not any(cookie.encode() in path.read_bytes() for path in files)
    page = second.client.get("/review", headers=_with_cookie(cookie)).text
    csrf = CSRF.search(page).group(1)
    out = second.client.post(
        "/review/logout", data={"csrf": csrf}, headers=_with_cookie(cookie), follow_redirects=False
    )
    assert out.status_code == 303
    assert not _logged_in(first.client, cookie)
    assert len(first.gateway.sessions) == 0


# -- CSRF and cookie flags ----------------------------------------------------------------


def test_cookie_posts_need_csrf_whatever_the_headers(harness_factory) -> None:
    harness = harness_factory(review={"admin_token": ADMIN})
    item = _queued_item(harness)
    _login(harness.client)
    client = harness.client
    assert client.post(f"/review/items/{item}", data={"verdict": "approve"}).status_code == 403
    # A wrong bearer header does not skip the check: it fails (and is counted) on its own.
    wrong = client.post(
        f"/review/items/{item}",
        data={"verdict": "approve"},
        headers={"Authorization": "Bearer whatever"},
    )
    assert wrong.status_code == 401
    assert (
        client.post(
            f"/review/items/{item}", data={"verdict": "approve", "csrf": "0" * 64}
        ).status_code
        == 403
    )
    assert harness.gateway.audit.get(item).review_status == "pending"
    # The page's token works; a correct bearer token needs none (API clients).
    csrf = CSRF.search(client.get("/review").text).group(1)
    done = client.post(
        f"/review/items/{item}", data={"verdict": "reject", "csrf": csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    second = _queued_item(harness)
    api = {"Authorization": f"Bearer {ADMIN}", "X-Reviewer": "ci-bot"}
    assert (
        client.post(f"/review/items/{second}", data={"verdict": "approve"}, headers=api).status_code
        == 204
    )
    assert harness.gateway.audit.get(second).reviewer == "ci-bot"


def _cookie_header(client: TestClient) -> str:
    response = client.post(
        "/review/login", data={"token": ADMIN, "reviewer": "alice"}, follow_redirects=False
    )
    assert response.status_code == 303
    return response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("secure_cookie", "base_url", "secure"),
    [
        (True, "http://testserver", True),
        (False, "https://testserver", True),
        (False, "http://testserver", False),
    ],
)
def test_cookie_flags(harness_factory, secure_cookie: bool, base_url: str, secure: bool) -> None:
    harness = harness_factory(review={"admin_token": ADMIN, "secure_cookie": secure_cookie})
    header = _cookie_header(TestClient(harness.client.app, base_url=base_url))
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "max-age", "path"} <= flags
    assert "samesite=strict" in header.lower() and "path=/review" in header.lower()
    assert ("secure" in flags) is secure


def test_serve_leaves_forwarded_headers_to_the_gateway(tmp_path: Path, monkeypatch) -> None:
    """uvicorn's own proxy handling would trust X-Forwarded-For from 127.0.0.1."""
    import logging.config

    import uvicorn

    from genguard.server import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    monkeypatch.setattr(logging.config, "dictConfig", lambda _config: None)
    config = tmp_path / "genguard.toml"
    config.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\n[server]\npreload = false\n')
    cli.serve(config=config)
    seen["app"].state.gateway.close()
    assert seen["proxy_headers"] is False
