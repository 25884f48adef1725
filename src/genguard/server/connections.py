"""Connection limits: how long a client may take to send a request, and how many may wait.

A client that opens a connection and then sends nothing, or sends its headers and then
trickles (or stops sending) its body, holds a socket, a slot under uvicorn's connection
cap and, once the body is being read, a request task. A thousand such clients would starve
every honest one. Three deadlines cut them off, each configured in ``[server]``:

* ``header_timeout_s``: from the connection (or, on a kept-alive connection, from the
  first byte of the next request) to the end of the request head. uvicorn has no such
  timeout (its keep-alive timer only runs between requests), so :func:`guarded_h11`
  adds one to uvicorn's h11 protocol; a partial head gets ``408`` before the close.
* ``body_timeout_s``: from the first read of the body to its last byte, enforced by
  :class:`BodyTimeoutMiddleware` around the ASGI ``receive`` (``408 body_timeout``, and
  the connection is closed: the rest of the body is never read).
* ``keepalive_timeout_s``: idle time between requests on one connection (uvicorn's
  ``timeout_keep_alive``).

``max_connections`` is uvicorn's ``limit_concurrency``: with that many connections open
(or requests in flight), a new request is answered ``503`` at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genguard.server.errors import ApiError, error_body

if TYPE_CHECKING:
    from genguard.server.config import ServerSection


class BodyTimeout(ApiError):
    """The request body did not arrive in time (408; the connection is closed)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            "body_timeout",
            f"the request body did not arrive within {timeout_s:g} s",
            {"Connection": "close"},
        )


def _json_response(status: int, code: str, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    payload = json.dumps(error_body(code, message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    return headers, payload


class BodyTimeoutMiddleware:
    """Give the whole request body ``timeout_s`` seconds from the app's first read of it.

    Each ``receive`` of a body chunk waits at most until that deadline; past it the app
    gets :class:`BodyTimeout` (an :class:`ApiError`, so routes answer it like any other
    error) and the client gets ``408 body_timeout`` with ``Connection: close``, whatever
    the app does with the exception: FastAPI turns errors raised while it parses a form
    into a 400, so the answer is written here. Once the body is complete, ``receive`` (then
    only waiting for a disconnect) is passed through untouched.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False
        timed_out = False
        response_started = False
        answered = False  # our 408 went out

        async def timed_receive() -> Message:
            nonlocal deadline, body_done, timed_out
            if body_done:
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_408() -> None:
            nonlocal response_started, answered
            response_started = answered = True
            error = BodyTimeout(self.timeout_s)
            headers, payload = _json_response(error.status, error.code, error.message)
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if timed_out:
                # Whatever the app made of the timeout (its own 408, a 400 from a form
                # parser), the client gets one 408 and the connection is closed.
                if message["type"] == "http.response.start" and not response_started:
                    await send_408()
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except BodyTimeout:
            if not response_started:
                await send_408()
            elif not answered:  # the app had started its answer: uvicorn drops the connection
                raise


def guarded_h11(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline on the request head.

    The timer starts when the connection is made, and again with the first byte of each
    later request on a kept-alive connection (between requests uvicorn's keep-alive
    timeout applies); it stops once h11 has parsed the whole head. When it fires, a
    partial head is answered ``408 header_timeout`` and the connection is closed; a
    connection that sent nothing at all is just closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    headers, payload = _json_response(
        408, "header_timeout", f"the request headers did not arrive within {header_timeout_s:g} s"
    )
    response_408 = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        + b"\r\n"
        + payload
    )

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_head():
                self._arm_head_timer()
            else:
                self._cancel_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _waiting_for_head(self) -> bool:
            """No request being served, and the next one's head not complete yet."""
            return (
                self.conn.their_state is h11.IDLE
                and self.conn.our_state is h11.IDLE
                and not self.transport.is_closing()
            )

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._waiting_for_head():
                return
            if self.conn.trailing_data[0]:  # part of a head arrived: say why we close
                self.transport.write(response_408)
                self.logger.info("request head not complete after %g s: closed", header_timeout_s)
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(server: ServerSection) -> dict[str, Any]:
    """The uvicorn settings that ``genguard serve`` derives from ``[server]``.

    Tests and benchmarks that run uvicorn themselves use the same options.
    """
    return {
        "http": guarded_h11(server.header_timeout_s),
        "limit_concurrency": server.max_connections,
        "timeout_keep_alive": server.keepalive_timeout_s,
        "h11_max_incomplete_event_size": server.max_header_bytes,
        "timeout_graceful_shutdown": int(server.graceful_timeout_s) or None,
    }
