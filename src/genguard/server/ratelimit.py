"""Token-bucket rate limits per API key: in process, or in Redis for several processes.

A key with rate ``60/min`` owns a bucket of 60 tokens that refills at one per second; a
request takes its cost in tokens (one, or ``n`` for a generation of ``n`` images) or is
refused with 429. Bursts up to the bucket size are allowed, which suits bots that post a
few images at once and then idle. A negative cost gives tokens back (:func:`refund`),
never past the bucket size.

The Redis limiter runs the whole read-refill-take-write step as one Lua script, so
concurrent gateways never both spend the last token, and it uses Redis' clock, so gateway
hosts with skewed clocks agree. If Redis cannot be reached the limiter falls back to
in-process buckets (and logs it) rather than failing every request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from genguard.server.auth import Rate

log = logging.getLogger("genguard.server.ratelimit")


@dataclass(frozen=True)
class LimitResult:
    """One rate-limit decision, with what the client needs to pace itself."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the bucket is full again.
    reset_s: float
    #: Seconds until the refused request's cost is available (0 when allowed).
    retry_after_s: float

    def limit_headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` only: the bucket's state, for answers that are no refusal."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_s)),
        }

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` on refusals (whole seconds)."""
        headers = self.limit_headers()
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


def _result(allowed: bool, tokens: float, rate: Rate, cost: int = 1) -> LimitResult:
    """The decision; a refusal's retry time is until ``cost`` tokens are back, not one."""
    per_second = rate.per_second
    missing = rate.count - tokens
    return LimitResult(
        allowed=allowed,
        limit=rate.count,
        remaining=max(0, math.floor(tokens)),
        reset_s=max(0.0, missing / per_second),
        retry_after_s=0.0 if allowed else max(0.0, (max(cost, 1) - tokens) / per_second),
    )


class RateLimiter(Protocol):
    """Takes ``cost`` tokens from ``bucket`` under ``rate``, or says when to retry.

    A negative ``cost`` gives tokens back, capped at the bucket size (:func:`refund`).
    """

    def hit(self, bucket: str, rate: Rate, cost: int = 1) -> LimitResult: ...

    def close(self) -> None: ...


class MemoryRateLimiter:
    """Buckets in a dict under a lock: exact for one process, lost on restart."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, bucket: str, rate: Rate, cost: int = 1) -> LimitResult:
        if rate.unlimited:
            return LimitResult(True, 0, 0, 0.0, 0.0)
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(bucket, (float(rate.count), now))
            tokens = min(float(rate.count), tokens + max(0.0, now - last) * rate.per_second)
            allowed = tokens >= cost
            if allowed:
                tokens = min(float(rate.count), tokens - cost)
            self._buckets[bucket] = (tokens, now)
        return _result(allowed, tokens, rate, cost)

    def close(self) -> None:
        self._buckets.clear()


#: KEYS[1] bucket; ARGV: capacity, tokens per second, cost. Returns {allowed, tokens}.
#: Tokens come back as a string because Redis truncates Lua numbers to integers. A
#: negative cost (a refund) adds tokens, never past the capacity.
TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then
  tokens = math.min(capacity, tokens - cost)
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets in Redis hashes, updated atomically by :data:`TOKEN_BUCKET_LUA`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "genguard:ratelimit:",
        fallback: RateLimiter | None = None,
        timeout_s: float = 0.5,
    ) -> None:
        import redis

        self._redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self.client.register_script(TOKEN_BUCKET_LUA)
        self.prefix = prefix
        self.fallback = fallback or MemoryRateLimiter()
        self._last_warning = 0.0

    def hit(self, bucket: str, rate: Rate, cost: int = 1) -> LimitResult:
        if rate.unlimited:
            return LimitResult(True, 0, 0, 0.0, 0.0)
        try:
            allowed, tokens = self._script(
                keys=[self.prefix + bucket], args=[rate.count, rate.per_second, cost]
            )
        except self._redis_errors as exc:
            self._warn(exc)
            return self.fallback.hit(bucket, rate, cost)
        return _result(bool(int(allowed)), float(tokens), rate, cost)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 30:  # one line per 30 s, not one per request
            self._last_warning = now
            log.warning("redis unreachable, rate limits are per process for now: %s", exc)

    def close(self) -> None:
        self.client.close()


def peek(limiter: RateLimiter, bucket: str, rate: Rate) -> LimitResult:
    """Whether ``bucket`` still holds a token, without spending one (a zero-cost hit).

    For limits that only failures spend (wrong passwords): every attempt asks first,
    only failed ones call :meth:`RateLimiter.hit`.
    """
    result = limiter.hit(bucket, rate, cost=0)
    if rate.unlimited or result.remaining >= 1:
        return result
    tokens = rate.count - result.reset_s * rate.per_second
    return _result(False, tokens, rate)


def refund(limiter: RateLimiter, bucket: str, rate: Rate, cost: int) -> LimitResult:
    """Give back ``cost`` tokens taken for a request that turned out to be refused.

    A token bucket forgets who took what, so a refund is a negative hit: atomic like any
    hit, and capped at the bucket size, so refunds never raise a key above its rate.
    """
    return limiter.hit(bucket, rate, cost=-cost)


def create_limiter(redis_url: str = "") -> RateLimiter:
    """Redis-backed when a URL is given, else in-process."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()
