"""Prometheus metrics for the gateway, in a registry of its own.

A private :class:`CollectorRegistry` per app (not the process-global default) keeps two
apps in one process (tests, embedding) from double-registering, and keeps the exposition
to what the gateway itself measures. Route labels are route *templates*
(``/review/items/{item_id}``), never raw paths, so scanners cannot blow up cardinality.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# ``*_created`` series double the exposition for no use on a dashboard.
disable_created_metrics()

#: Buckets from 5 ms (a prompt) to 2 minutes (a generation on CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Request counts, latencies, decisions, refusals (rate limit, database), queue depth."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genguard_http_requests_total",
            "HTTP requests by route template, method and status code.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "genguard_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "genguard_decisions_total",
            "Moderation decisions by kind (image, prompt) and action.",
            ("kind", "action"),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "genguard_rate_limited_total",
            "Requests refused by the rate limiter.",
            registry=self.registry,
        )
        self.refunds_denied = Counter(
            "genguard_refunds_denied_total",
            "Refused-content requests left charged: the key used up its refunds.",
            registry=self.registry,
        )
        self.store_errors = Counter(
            "genguard_store_errors_total",
            "Requests answered 503 store_unavailable, by reason (read_only, file_missing...).",
            ("reason",),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "genguard_jobs_in_flight",
            "CPU jobs (moderation, generation) running or waiting for a worker.",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_decision(self, kind: str, action: str) -> None:
        self.decisions.labels(kind, action).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
