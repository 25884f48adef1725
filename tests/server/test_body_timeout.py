"""The body deadline and the uvicorn options of ``[server]``, without sockets.

The ASGI ``receive`` is driven by hand here, so a body that stops arriving takes a
fraction of a second; ``test_connection_limits.py`` checks the same on real sockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from genguard.server.config import GatewayConfig, parse_config
from genguard.server.connections import BodyTimeoutMiddleware, uvicorn_options

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/upload",
    "raw_path": b"/upload",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", b"1000")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8787),
}


def stalling_receive(chunks: list[bytes], then_wait: float) -> Any:
    """Yields ``chunks`` (more_body=True), then waits ``then_wait`` s and says disconnect."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.sleep(then_wait)
        return {"type": "http.disconnect"}

    return receive


def run(app: Any, receive: Any, scope: dict[str, Any] | None = None) -> tuple[list[dict], float]:
    sent: list[dict] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started = time.perf_counter()
    asyncio.run(app(scope or SCOPE, receive, send))
    return sent, time.perf_counter() - started


def status_and_body(sent: list[dict]) -> tuple[int, dict[str, str], dict]:
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, json.loads(body)


def body_app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/form")
    async def form(name: Annotated[str, Form()]) -> dict[str, str]:
        return {"name": name}

    return app


def test_a_body_that_stops_arriving_gets_408_and_close() -> None:
    app = BodyTimeoutMiddleware(body_app(), timeout_s=0.3)
    sent, seconds = run(app, stalling_receive([b"x" * 10], then_wait=30))
    status, headers, body = status_and_body(sent)
    assert status == 408 and body["error"]["code"] == "body_timeout"
    assert headers["connection"] == "close"
    assert 0.25 < seconds < 2


def test_a_trickled_body_is_cut_at_the_overall_deadline() -> None:
    """Each chunk arrives well within the deadline; the body as a whole does not."""

    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    sent, seconds = run(BodyTimeoutMiddleware(body_app(), timeout_s=0.4), trickle)
    assert status_and_body(sent)[0] == 408
    assert 0.35 < seconds < 2


def test_a_form_route_answers_408_not_fastapis_400() -> None:
    """FastAPI turns errors while parsing a form into 400; the middleware answers 408."""
    scope = {
        **SCOPE,
        "path": "/form",
        "raw_path": b"/form",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    app = BodyTimeoutMiddleware(body_app(), timeout_s=0.2)
    sent, _seconds = run(app, stalling_receive([b"name=a"], then_wait=30), scope)
    assert status_and_body(sent)[0] == 408
    assert len([m for m in sent if m["type"] == "http.response.start"]) == 1


def test_a_complete_body_is_not_timed_out_afterwards() -> None:
    """After the last chunk, receive only waits for a disconnect: no deadline applies."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        first = await receive()
        assert first["more_body"] is False
        seen.append((await receive())["type"])  # arrives after the 0.1 s "deadline"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": b"done", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.3)
        return {"type": "http.disconnect"}

    sent, _seconds = run(BodyTimeoutMiddleware(app, timeout_s=0.1), receive)
    assert seen == ["http.disconnect"]
    assert sent[0]["status"] == 200


def test_a_body_in_time_passes() -> None:
    chunks = [
        {"type": "http.request", "body": b"a" * 500, "more_body": True},
        {"type": "http.request", "body": b"b" * 500, "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return chunks.pop(0)

    sent, _seconds = run(BodyTimeoutMiddleware(body_app(), timeout_s=1), receive)
    status, _headers, body = status_and_body(sent)
    assert (status, body) == (200, {"bytes": 1000})


def test_server_options_have_safe_defaults_and_reach_uvicorn() -> None:
    server = GatewayConfig().server
    assert server.max_connections == 1000
    assert (server.header_timeout_s, server.body_timeout_s) == (10.0, 30.0)
    assert (server.keepalive_timeout_s, server.max_header_bytes) == (5, 16384)
    options = uvicorn_options(
        parse_config(
            {
                "server": {
                    "max_connections": 8,
                    "keepalive_timeout_s": 2,
                    "header_timeout_s": 3,
                    "max_header_bytes": 4096,
                    "graceful_timeout_s": 0,
                }
            }
        ).server
    )
    assert options["limit_concurrency"] == 8 and options["timeout_keep_alive"] == 2
    assert options["h11_max_incomplete_event_size"] == 4096
    assert options["timeout_graceful_shutdown"] is None
    assert issubclass(options["http"], H11Protocol)
