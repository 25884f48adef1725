"""API keys (hashed, revocable) and token-bucket rate limits, in memory and in real Redis."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from genguard.errors import ConfigError
from genguard.server import models
from genguard.server.auth import KeyStore, Rate, hash_key, parse_rate
from genguard.server.ratelimit import MemoryRateLimiter, RedisRateLimiter
from genguard.store import open_store
from tests.server.conftest import Harness, auth


def test_parse_rate() -> None:
    assert parse_rate("60/min") == Rate(60, 60.0)
    assert parse_rate("10/s") == Rate(10, 1.0)
    assert parse_rate("1000 / hour") == Rate(1000, 3600.0)
    assert parse_rate("5/10s") == Rate(5, 10.0)
    assert parse_rate("2/days") == Rate(2, 86400.0)
    assert parse_rate("unlimited").unlimited
    assert str(parse_rate("60/minute")) == "60/min"
    for bad in ("", "abc", "60", "60/fortnight", "-1/s", "0/s", "1/0s"):
        with pytest.raises(ConfigError, match="bad rate"):
            parse_rate(bad)


def test_keys_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db.sqlite")
    keys = KeyStore(store)
    key, secret = keys.create("discord-bot", "standard", "60/min")
    assert secret.startswith("gg_") and len(secret) > 40
    with store.session() as session:
        row = session.scalar(select(models.ApiKeyRow))
        assert row.key_hash == hash_key(secret) and secret not in (row.key_hash, row.prefix)
    assert keys.verify(secret) == key
    assert keys.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert keys.verify("not-a-key") is None
    with pytest.raises(ConfigError, match="exists already"):
        keys.create("discord-bot", "standard", "60/min")
    keys.revoke("discord-bot")
    assert keys.verify(secret) is None
    # The name is free again, and the new key works while the old one stays dead.
    _, fresh = keys.create("discord-bot", "strict", "1/s")
    assert keys.verify(fresh).policy == "strict" and keys.verify(secret) is None
    assert [k.revoked for k in keys.list()] == [True, False]
    assert len(keys.list(include_revoked=False)) == 1
    with pytest.raises(ConfigError, match="no active key"):
        keys.revoke("nobody")
    store.close()


def test_missing_bad_and_revoked_keys_get_401(harness: Harness) -> None:
    secret = harness.key("bot")
    body = {"prompt": "a lighthouse"}
    url = "/v1/moderate/prompt"
    assert harness.client.post(url, json=body, headers=auth(secret)).status_code == 200
    for headers in ({}, {"Authorization": f"Basic {secret}"}, auth("gg_" + "x" * 43)):
        response = harness.client.post(url, json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    harness.gateway.keys.revoke("bot")
    assert harness.client.post(url, json=body, headers=auth(secret)).status_code == 401


def test_rate_limit_answers_429_with_headers(harness: Harness) -> None:
    secret = harness.key("bursty", rate="3/min")
    url, body = "/v1/moderate/prompt", {"prompt": "a lighthouse"}
    remaining = []
    for _ in range(3):
        response = harness.client.post(url, json=body, headers=auth(secret))
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "3"
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    refused = harness.client.post(url, json=body, headers=auth(secret))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    # One token per 20 s at 3/min: retry in ~20 s, full again in ~60 s.
    assert 15 <= int(refused.headers["retry-after"]) <= 20
    assert 55 <= int(refused.headers["x-ratelimit-reset"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # Buckets are per key: another key is unaffected.
    other = harness.key("other", rate="3/min")
    assert harness.client.post(url, json=body, headers=auth(other)).status_code == 200
    assert "genguard_rate_limited_total 1.0" in harness.client.get("/metrics").text


def test_memory_bucket_refills_with_time() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    rate = Rate(2, 1.0)  # 2 per second
    assert [limiter.hit("k", rate).allowed for _ in range(3)] == [True, True, False]
    refused = limiter.hit("k", rate)
    assert refused.retry_after_s == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.hit("k", rate).allowed and not limiter.hit("k", rate).allowed
    now[0] += 100  # refill caps at the bucket size
    assert [limiter.hit("k", rate).allowed for _ in range(3)] == [True, True, False]


def _hammer(limiter, bucket: str, rate: Rate, hits: int, threads: int = 8) -> int:
    barrier = threading.Barrier(threads)

    def worker(_: int) -> int:
        barrier.wait()
        return sum(limiter.hit(bucket, rate).allowed for _ in range(hits // threads))

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(worker, range(threads)))


def test_memory_limiter_is_exact_under_threads() -> None:
    assert _hammer(MemoryRateLimiter(), "b", Rate(50, 3600.0), 400) == 50


def test_redis_limiter_is_atomic_and_shared(redis_url: str) -> None:
    first, second = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    rate = Rate(40, 3600.0)
    bucket = f"atomic-{time.time_ns()}"
    # Two limiter instances (two gateway processes) race on one bucket: exactly 40 pass.
    with ThreadPoolExecutor(2) as pool:
        granted = sum(pool.map(lambda lim: _hammer(lim, bucket, rate, 200), (first, second)))
    assert granted == 40
    result = first.hit(bucket, rate)
    assert not result.allowed and result.remaining == 0
    assert 80 <= result.retry_after_s <= 90  # one token per 90 s
    # Refill happens on Redis' clock: a fast bucket recovers after its period.
    fast = Rate(2, 0.2)
    assert [first.hit("fast", fast).allowed for _ in range(3)] == [True, True, False]
    time.sleep(0.25)
    assert second.hit("fast", fast).allowed
    first.close()
    second.close()


def test_redis_limiter_through_the_app(harness_factory, redis_url: str) -> None:
    harness = harness_factory(limits={"redis_url": redis_url})
    assert isinstance(harness.gateway.limiter, RedisRateLimiter)
    secret = harness.key(f"redis-{time.time_ns()}", rate="2/min")
    url, body = "/v1/moderate/prompt", {"prompt": "a lighthouse"}
    statuses = [
        harness.client.post(url, json=body, headers=auth(secret)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_redis_down_falls_back_to_memory() -> None:
    from tests.server.conftest import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    rate = Rate(1, 60.0)
    assert limiter.hit("k", rate).allowed
    assert not limiter.hit("k", rate).allowed  # still limited, per process
    limiter.close()
