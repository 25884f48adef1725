"""Stalled clients on real sockets: header and body deadlines, keep-alive, connection cap.

uvicorn runs in a thread with exactly the options ``genguard serve`` derives from
``[server]`` (:func:`genguard.server.connections.uvicorn_options`), with deadlines of a
second or two so a stalled client is cut off quickly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from genguard.server.app import create_app
from genguard.server.connections import uvicorn_options
from tests.server.conftest import (
    ALLOW_LEVEL,
    auth,
    fake_guards,
    free_port,
    make_config,
    png,
    wait_for_port,
)


class Server:
    """The gateway under uvicorn in a thread, with the connection options of ``serve``."""

    def __init__(self, tmp_path: Path, **server: Any) -> None:
        config = make_config(tmp_path, server=server)
        self.app = create_app(config, guards=fake_guards())
        self.port = free_port()
        options = uvicorn_options(config.server)
        uv_config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", **options
        )
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = self.app.state.gateway.keys.create("bot", "standard", "unlimited")[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(**server: Any) -> Server:
        servers.append(Server(tmp_path / f"s{len(servers)}", **server))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def head(key: str, length: int, path: str = "/v1/moderate/image") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def read_answer(sock: socket.socket, timeout: float = 10) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (or ``timeout``); True when it closed."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    sock.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head_part, body = received.split(b"\r\n\r\n", 1)
    length = int(head_part.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head_part + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def error_code(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"]


def test_a_stalled_body_gets_408_while_another_client_is_served(serve: Any) -> None:
    server = serve(body_timeout_s=1, header_timeout_s=5)
    started = time.monotonic()
    stalled = connect(server.port, head(server.key, 1000) + b"\x89PNG\r\n\x1a\n..")
    with httpx.Client(base_url=server.url, headers=auth(server.key), timeout=5) as client:
        normal = client.post("/v1/moderate/image", content=png(ALLOW_LEVEL))
        assert normal.status_code == 200, normal.text
        assert time.monotonic() - started < 1, "the normal request waited for the stalled one"
    answer, closed = read_answer(stalled)
    seconds = time.monotonic() - started
    stalled.close()
    assert status_of(answer) == 408, answer[:200]
    assert error_code(answer) == "body_timeout" and b"connection: close" in answer.lower()
    assert closed and 0.9 < seconds < 3, seconds
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/moderate/image",status="408"' in metrics


def test_a_trickled_body_is_cut_off_at_the_deadline(serve: Any) -> None:
    server = serve(body_timeout_s=1)
    sock = connect(server.port, head(server.key, 1000))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            try:
                sock.sendall(b"x")
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    started = time.monotonic()
    sender.start()
    answer, closed = read_answer(sock)
    seconds = time.monotonic() - started
    stop.set()
    sender.join(5)
    sock.close()
    assert status_of(answer) == 408 and closed, answer[:200]
    assert 0.9 < seconds < 3, seconds


def test_header_stalls_and_idle_connections_are_closed(serve: Any) -> None:
    server = serve(header_timeout_s=1, keepalive_timeout_s=1)
    started = time.monotonic()
    partial = connect(server.port, b"POST /v1/moderate/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    silent = connect(server.port)
    answer, closed = read_answer(partial)
    assert status_of(answer) == 408 and error_code(answer) == "header_timeout", answer[:200]
    assert closed
    assert read_answer(silent) == (b"", True)
    assert time.monotonic() - started < 3
    partial.close()
    silent.close()

    # Kept alive after a request: idle for keepalive_timeout_s, then closed; and the head of
    # a second request that stops half-way is cut off like the first.
    body = b'{"prompt": "a lighthouse"}'
    request = head(server.key, len(body), "/v1/moderate/prompt") + body
    for tail, expected in ((b"", None), (b"POST /v1/moderate/prompt HTTP/1.1\r\n", 408)):
        sock = connect(server.port, request)
        first = read_response(sock)
        assert status_of(first) == 200, first[:200]
        if tail:
            sock.sendall(tail)
        started = time.monotonic()
        answer, closed = read_answer(sock)
        assert closed and status_of(answer) == expected, answer[:200]
        assert time.monotonic() - started < 3
        sock.close()


def test_stalled_connections_beyond_the_cap_never_hang_healthz(serve: Any) -> None:
    server = serve(max_connections=4, body_timeout_s=2, header_timeout_s=2)
    with ExitStack() as stack:
        socks = []
        for index in range(10):
            # Half stall in the body, half in the headers.
            data = head(server.key, 1000) + b"0123456789" if index % 2 else b"POST / HTTP/1.1\r\n"
            socks.append(stack.enter_context(connect(server.port, data)))
        time.sleep(0.2)  # every stalled request has reached the server
        started = time.monotonic()
        try:
            health = httpx.get(f"{server.url}/healthz", timeout=2)
        except httpx.TimeoutException:
            pytest.fail("/healthz hung behind stalled connections")
        assert health.status_code in (200, 503)
        assert time.monotonic() - started < 2
        # The deadlines free the slots: /healthz is 200 again once they have passed.
        deadline = time.monotonic() + 6
        while httpx.get(f"{server.url}/healthz", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, "slots were not released"
            time.sleep(0.1)
        answers = [status_of(read_answer(sock, timeout=5)[0]) for sock in socks]
    # Body stalls: 408 from the deadline, or 503 from the cap; header stalls: 408.
    assert set(answers) <= {408, 503}, answers
