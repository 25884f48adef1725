"""What a request costs: n tokens per generation, nothing for refused requests, and no
5xx for a client that hangs up mid-upload."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from genguard.server.app import create_app
from genguard.server.auth import Rate
from genguard.server.ratelimit import MemoryRateLimiter, RedisRateLimiter, peek, refund
from tests.server.conftest import ALLOW_LEVEL, Harness, auth, fake_guards, make_config, png

GENERATE = {"prompt": "a lighthouse", "width": 64, "height": 64}


def remaining(response: Any) -> int:
    return int(response.headers["x-ratelimit-remaining"])


# -- the limiters ---------------------------------------------------------------------------


def _costs_and_refunds(limiter: Any, bucket: str) -> None:
    rate = Rate(10, 3600.0)  # one token per 360 s
    taken = limiter.hit(bucket, rate, cost=8)
    assert taken.allowed and taken.remaining == 2
    short = limiter.hit(bucket, rate, cost=3)
    assert not short.allowed and short.remaining == 2
    # Until 3 tokens are back, not 1: (3 - 2) tokens at 360 s each.
    assert 355 <= short.retry_after_s <= 360
    assert refund(limiter, bucket, rate, 5).remaining == 7
    # Refunds never lift a bucket above its size.
    assert refund(limiter, bucket, rate, 50).remaining == 10
    assert peek(limiter, bucket, rate).remaining == 10


def test_memory_limiter_charges_a_cost_and_refunds_up_to_the_size() -> None:
    _costs_and_refunds(MemoryRateLimiter(), "k")


def test_redis_limiter_charges_a_cost_and_refunds_up_to_the_size(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url)
    try:
        _costs_and_refunds(limiter, f"cost-{time.time_ns()}")
    finally:
        limiter.close()


# -- generation costs n ---------------------------------------------------------------------


def test_generation_costs_one_token_per_image(harness_factory) -> None:
    harness: Harness = harness_factory(generator={"max_n": 8})
    key = harness.key("painter", rate="10/hour")
    eight = harness.client.post("/v1/generate", headers=auth(key), json={**GENERATE, "n": 8})
    assert eight.status_code == 200, eight.text
    assert len(eight.json()["images"]) == 8
    assert remaining(eight) == 2
    three = harness.client.post("/v1/generate", headers=auth(key), json={**GENERATE, "n": 3})
    assert three.status_code == 429
    assert "costs 3 tokens" in three.json()["error"]["message"]
    assert 355 <= int(three.headers["retry-after"]) <= 360  # until 3 tokens, not 1
    two = harness.client.post("/v1/generate", headers=auth(key), json={**GENERATE, "n": 2})
    assert two.status_code == 200 and remaining(two) == 0
    prompt = harness.client.post("/v1/moderate/prompt", headers=auth(key), json=GENERATE)
    assert prompt.status_code == 422  # width/height are no prompt fields: refused, uncharged
    assert prompt.headers["x-ratelimit-remaining"] == "0"


def test_a_request_dearer_than_the_whole_bucket_is_a_400_not_a_429(harness_factory) -> None:
    harness: Harness = harness_factory(generator={"max_n": 8})
    key = harness.key("small", rate="5/min")
    response = harness.client.post("/v1/generate", headers=auth(key), json={**GENERATE, "n": 8})
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "cost_over_limit" and "can never succeed" in error["message"]
    assert "retry-after" not in response.headers  # a wait would not help
    assert response.headers["x-ratelimit-limit"] == "5" and remaining(response) == 5
    assert "genguard_rate_limited_total 0.0" in harness.client.get("/metrics").text
    fits = harness.client.post("/v1/generate", headers=auth(key), json={**GENERATE, "n": 5})
    assert fits.status_code == 200 and remaining(fits) == 0


# -- refused requests cost nothing and say where the bucket stands --------------------------


def test_refused_requests_spend_no_token_and_carry_the_headers(harness: Harness) -> None:
    key = harness.key("careless", rate="5/min")
    headers = auth(key)
    prompt, image, generate = "/v1/moderate/prompt", "/v1/moderate/image", "/v1/generate"
    refused = [
        (prompt, {"content": b"{not json"}, 400),  # body parse
        (prompt, {"json": {"prompt": "x", "negativ_prompt": "y"}}, 422),  # validation
        (prompt, {"json": {"prompt": "   "}}, 422),  # empty prompt: the analyser's ContentError
        (prompt, {"files": {"image": ("x.png", b"x")}}, 415),  # multipart to a JSON route
        (image, {"content": b"\x89PNG\r\n\x1a\n" + b"\0" * 64}, None),  # corrupt image
        (image, {"content": b"GIF89a-truncated"}, None),
        (f"{image}?publish=maybe", {"content": png(ALLOW_LEVEL)}, 422),  # bad query value
        (generate, {"json": {**GENERATE, "n": 99}}, 422),  # over generator.max_n
        (generate, {"json": {**GENERATE, "width": 4096}}, 422),  # over generator.max_side
    ]
    for url, body, status in refused:
        response = harness.client.post(url, headers=headers, **body)
        assert 400 <= response.status_code < 500, (url, response.text)
        assert status is None or response.status_code == status, (url, response.text)
        assert response.headers["x-ratelimit-limit"] == "5", url
        assert remaining(response) == 5, url
    good = harness.client.post(prompt, headers=headers, json={"prompt": "a lighthouse"})
    assert good.status_code == 200 and remaining(good) == 4
    # No key, no bucket: a 401 carries no rate-limit headers.
    anonymous = harness.client.post(prompt, json={"prompt": "a lighthouse"})
    assert anonymous.status_code == 401 and "x-ratelimit-remaining" not in anonymous.headers
    # Authentication still comes first: a bad body without a key is a 401, not a 400.
    for url in (prompt, generate):
        assert harness.client.post(url, content=b"{not json").status_code == 401


def test_a_429_is_not_charged_either(harness: Harness) -> None:
    key = harness.key("eager", rate="2/hour")
    body = {"prompt": "a lighthouse"}
    statuses = [
        harness.client.post("/v1/moderate/prompt", headers=auth(key), json=body).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    # The refusals took nothing: one token is back after its 1800 s, not after 5400 s.
    refused = harness.client.post("/v1/moderate/prompt", headers=auth(key), json=body)
    assert 1790 <= int(refused.headers["retry-after"]) <= 1800


# -- a client that hangs up mid-body --------------------------------------------------------


def _hang_up(harness: Harness, path: str, headers: dict[str, str], first: bytes) -> list[dict]:
    """Drive the ASGI app directly: a first body chunk, then ``http.disconnect``."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": first, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    harness.client.portal.call(harness.client.app, scope, receive, send)
    return sent


def test_a_client_that_hangs_up_mid_upload_is_no_5xx(harness: Harness, caplog) -> None:
    caplog.set_level(logging.INFO)
    key = harness.key("flaky", rate="5/min")
    uploads = [
        ("/v1/moderate/image", "image/png", png(ALLOW_LEVEL)[:40]),
        ("/v1/moderate/image", "multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disp"),
        ("/v1/moderate/prompt", "application/json", b'{"prompt": "a light'),
        ("/v1/generate", "application/json", b'{"prompt": "a light'),
    ]
    for path, content_type, first in uploads:
        headers = {
            "host": "testserver",
            "authorization": f"Bearer {key}",
            "content-type": content_type,
            "content-length": "100000",
        }
        sent = _hang_up(harness, path, headers, first)
        assert sent and sent[0]["status"] == 499, (path, sent)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"]
    quiet = [r for r in caplog.records if r.getMessage() == "client disconnected mid-request"]
    assert len(quiet) == 4 and all(r.levelno == logging.INFO for r in quiet)
    text = harness.client.get("/metrics").text
    assert 'status="500"' not in text and 'status="499"' in text
    # Nothing was read, so nothing was charged.
    good = harness.client.post("/v1/moderate/prompt", headers=auth(key), json={"prompt": "a"})
    assert good.status_code == 200 and remaining(good) == 4


def test_a_real_socket_closed_mid_upload_is_counted_499(tmp_path, caplog) -> None:
    """The same over uvicorn: headers and half a body, then the client closes the socket."""
    from tests.server.test_live import LiveServer

    caplog.set_level(logging.INFO, logger="genguard")
    app = create_app(make_config(tmp_path), guards=fake_guards())
    server = LiveServer(app)
    try:
        secret = app.state.gateway.keys.create("flaky", "standard", "5/min")[1]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"POST /v1/moderate/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {secret}\r\nContent-Type: image/png\r\n"
                f"Content-Length: 100000\r\n\r\n".encode()
                + png(ALLOW_LEVEL)[:50]
            )
            time.sleep(0.3)  # the gateway is now waiting for the rest of the body
        deadline = time.monotonic() + 10
        while 'status="499"' not in app.state.gateway.metrics.render().decode():
            assert time.monotonic() < deadline, "the hang-up was never recorded"
            time.sleep(0.05)
    finally:
        server.stop()
    text = app.state.gateway.metrics.render().decode()
    assert 'status="500"' not in text
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"]


def test_unlimited_keys_get_no_rate_headers(harness: Harness) -> None:
    key = harness.key("free", rate="unlimited")
    ok = harness.client.post("/v1/moderate/prompt", headers=auth(key), json={"prompt": "a"})
    bad = harness.client.post("/v1/moderate/prompt", headers=auth(key), json={"prompt": " "})
    assert ok.status_code == 200 and bad.status_code == 422
    assert "x-ratelimit-remaining" not in ok.headers and "x-ratelimit-remaining" not in bad.headers


def test_refunds_are_metered_so_corrupt_files_cannot_outrun_the_rate(harness: Harness) -> None:
    """Refused content is refunded up to the key's rate; past that it stays charged, so a
    key sending only corrupt images gets at most twice its rate of decodes."""
    key = harness.key("fuzzer", rate="3/hour")
    corrupt = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    statuses, left = [], []
    for _ in range(8):
        response = harness.client.post("/v1/moderate/image", headers=auth(key), content=corrupt)
        statuses.append(response.status_code)
        left.append(response.headers.get("x-ratelimit-remaining"))
    # 3 refunded (bucket stays full), then 3 charged, then 429s.
    assert [s for s in statuses if s != 429] == statuses[:6], statuses
    assert all(400 <= s < 500 and s != 429 for s in statuses[:6]), statuses
    assert statuses[6:] == [429, 429], statuses
    assert left[:3] == ["3", "3", "3"] and left[3:6] == ["2", "1", "0"], left
    assert "genguard_refunds_denied_total 3.0" in harness.client.get("/metrics").text
    # The allowance is per key: another key's refunds are untouched.
    other = harness.key("careful", rate="3/hour")
    response = harness.client.post("/v1/moderate/image", headers=auth(other), content=corrupt)
    assert 400 <= response.status_code < 500 and remaining(response) == 3
