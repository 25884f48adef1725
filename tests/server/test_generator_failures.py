"""A generator backend that is down or too slow, seen from the gateway's clients and log.

The backends here are real HTTP: nothing listening on a loopback port (connection
refused), and a fake AUTOMATIC1111 that answers only after the gateway's timeout. The
client must get 502 (with the reason) or 504; the request must be in the audit log (its
prompt row); and nothing may be half-written: no image row claiming a picture was made,
not even once the slow backend finally answers and the abandoned work completes.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from genguard.server.auditlog import AuditLog
from genguard.store import open_store
from tests.server.conftest import Harness, auth, free_port
from tests.server.peers import Peer, json_reply, seeded_png

BODY = {"prompt": "a lighthouse at dawn", "width": 64, "height": 64, "seed": 3}


def request_log(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    """The gateway's access-log lines for one request id (as the JSON log would show)."""
    return [
        record.__dict__
        for record in caplog.records
        if record.getMessage() == "request" and record.__dict__.get("request_id") == request_id
    ]


def audit_rows(harness: Harness, request_id: str) -> list[tuple[str, str, str]]:
    """(kind, route, action) of the request's rows, read from the database afresh."""
    store = open_store(harness.config.store.database())
    try:
        rows = AuditLog(store).recent(request_id=request_id)
        return sorted((r.kind, r.route, r.action) for r in rows)
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["a1111", "comfyui"])
def test_backend_down_is_502_with_the_reason_and_only_the_prompt_audited(
    harness_factory, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    caplog.set_level(logging.INFO, logger="genguard.server")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    harness: Harness = harness_factory(
        generator={"backend": backend, "model": "m.safetensors", "options": {"url": url}}
    )
    response = harness.client.post("/v1/generate", headers=auth(harness.key()), json=BODY)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "generator_failed"
    assert "cannot reach generator" in error["message"] and url in error["message"]
    assert "refused" in error["message"].lower()
    request_id = response.headers["x-request-id"]
    # The request is on record (its prompt check), and no image row claims an output.
    assert audit_rows(harness, request_id) == [("prompt", "generate", "allow")]
    (logged,) = request_log(caplog, request_id)
    assert (logged["status"], logged["route"], logged["key"]) == (502, "/v1/generate", "bot")
    metrics = harness.client.get("/metrics").text
    assert 'route="/v1/generate",status="502"' in metrics
    assert 'genguard_decisions_total{action="allow",kind="image"}' not in metrics


@pytest.fixture
def slow_a1111() -> Iterator[tuple[Peer, threading.Event]]:
    """A1111 that answers a real image after 1.5 s; the event is set once it has replied."""
    peer = Peer()
    replied = threading.Event()

    def txt2img(_url: Any, body: dict) -> tuple[int, str, bytes]:
        time.sleep(1.5)
        image = seeded_png(body["seed"], body["width"], body["height"])
        try:
            return json_reply({"images": [base64.b64encode(image).decode()]})
        finally:
            replied.set()

    peer.routes[("POST", "/sdapi/v1/txt2img")] = txt2img
    yield peer, replied
    peer.close()


def test_slow_backend_is_504_logged_and_nothing_half_written(
    harness_factory, caplog: pytest.LogCaptureFixture, slow_a1111: tuple[Peer, threading.Event]
) -> None:
    caplog.set_level(logging.INFO, logger="genguard.server")
    peer, replied = slow_a1111
    harness: Harness = harness_factory(
        generator={"backend": "a1111", "model": "", "options": {"url": peer.url}},
        server={"request_timeout_s": 0.4},
    )
    response = harness.client.post("/v1/generate", headers=auth(harness.key()), json=BODY)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    assert not replied.is_set()  # answered at the timeout, while the backend still worked
    request_id = response.headers["x-request-id"]
    (logged,) = request_log(caplog, request_id)
    assert (logged["status"], logged["route"]) == (504, "/v1/generate")
    # The backend still finishes its image and the abandoned job runs to its end; closing
    # the app waits for the worker threads, so after it nothing more can be written.
    assert replied.wait(10), "the slow backend never answered"
    harness.close()
    assert [path for _method, path, _body in peer.requests] == ["/sdapi/v1/txt2img"]
    assert audit_rows(harness, request_id) == [("prompt", "generate", "allow")]
    discarded = [r for r in caplog.records if r.getMessage().endswith("results discarded")]
    assert [r.__dict__["request_id"] for r in discarded] == [request_id]


def test_the_same_slow_backend_within_the_timeout_is_a_normal_200(
    harness_factory, slow_a1111: tuple[Peer, threading.Event]
) -> None:
    """Control: the 504 test's backend and body do produce an image row when in time."""
    peer, _replied = slow_a1111
    harness: Harness = harness_factory(
        generator={"backend": "a1111", "model": "", "options": {"url": peer.url}},
        server={"request_timeout_s": 10},
    )
    response = harness.client.post("/v1/generate", headers=auth(harness.key()), json=BODY)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert audit_rows(harness, request_id) == [
        ("image", "generate", "allow"),
        ("prompt", "generate", "allow"),
    ]


def test_a_job_that_timed_out_in_the_queue_never_starts(harness_factory) -> None:
    """One worker busy with a slow generation: the request queued behind it gets its 504
    and its work is dropped, instead of running later for a client who has gone."""
    from tests.server.test_generate import SolidGenerator

    generator = SolidGenerator(delay_s=1.0)
    harness: Harness = harness_factory(
        engine=generator, server={"workers": 1, "request_timeout_s": 0.3}
    )
    key = harness.key()
    statuses: list[int] = []

    def call(prompt: str) -> None:
        body = {"prompt": prompt, "width": 64, "height": 64}
        response = harness.client.post("/v1/generate", headers=auth(key), json=body)
        statuses.append(response.status_code)

    first = threading.Thread(target=call, args=("first picture",))
    first.start()
    deadline = time.monotonic() + 5
    while not generator.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    call("second picture")  # waits for the only worker, times out in the queue
    first.join()
    # The one worker takes jobs in order: once this no-op ran, the second job was taken
    # off the queue too (closing the app instead would cancel it before it could start).
    harness.gateway.runner._executor.submit(lambda: None).result(timeout=10)
    assert statuses == [504, 504]
    assert [prompt for prompt, _seed, _settings in generator.calls] == ["first picture"]


def test_generator_errors_never_show_credentials_or_the_backend_body(
    harness_factory, caplog: pytest.LogCaptureFixture, a1111: Peer
) -> None:
    """The caller learns which backend failed and how; the secrets stay in the log."""
    caplog.set_level(logging.WARNING, logger="genguard.generators")
    leaked = "Traceback: /srv/models/secret-model.safetensors token=sk-internal-42"
    a1111.routes[("POST", "/sdapi/v1/txt2img")] = lambda *_: json_reply({"detail": leaked}, 500)
    url = a1111.url.replace("http://", "http://operator:hunter2@")
    harness: Harness = harness_factory(
        generator={"backend": "a1111", "model": "", "options": {"url": url}}
    )
    response = harness.client.post("/v1/generate", headers=auth(harness.key()), json=BODY)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "answered 500" in message
    for secret in ("hunter2", "operator", "secret-model", "sk-internal"):
        assert secret not in response.text, secret
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "sk-internal-42" in logged and "hunter2" not in logged
