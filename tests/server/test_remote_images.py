"""``POST /v1/moderations`` fetching ``image_url`` parts from allowed hosts only.

A real HTTP server on 127.0.0.1 plays the image host: the allow list names that address
literally (a name resolving to loopback is refused), redirects are not followed, sizes
and deadlines hold, and what is fetched is judged like a data URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.server.conftest import NUDITY_LEVEL, Harness, auth, png

BIG = 64 * 1024


class _ImageHost(BaseHTTPRequestHandler):
    """Answers by path: an image, a redirect, HTML, a slow reply, a big one, a 404."""

    fetched: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).fetched.append(self.path)
        if self.path == "/nude.png":
            self._send(200, "image/png", png(NUDITY_LEVEL))
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/nude.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/page":
            self._send(200, "text/html", b"<html>not an image</html>")
        elif self.path == "/slow":
            time.sleep(2.0)
            self._send(200, "image/png", png(NUDITY_LEVEL))
        elif self.path == "/big":
            self._send(200, "image/png", bytes(BIG))
        elif self.path == "/chunked-big":  # no Content-Length: the cap is enforced while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(BIG // 4096):
                self.wfile.write(bytes(4096))
            self.close_connection = True
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    """Clients hang up on purpose here (size caps, deadlines): no traceback for that."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _ImageHost)
    _ImageHost.fetched = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def harness(harness_factory: Any) -> Harness:
    return harness_factory(
        server={
            "moderation_image_hosts": ["127.0.0.1"],
            "moderation_image_timeout_s": 0.5,
            "moderation_image_fetches": 2,
            "max_body_bytes": 32 * 1024,
        }
    )


def moderate(harness: Harness, key: str, *urls: str) -> Any:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return harness.client.post("/v1/moderations", headers=auth(key), json={"input": parts})


def test_an_allowed_hosts_image_is_fetched_and_judged(harness: Harness, image_host: str) -> None:
    response = moderate(harness, harness.key(), f"{image_host}/nude.png")
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["flagged"] is True and result["categories"]["sexual"] is True
    assert result["category_applied_input_types"]["sexual"] == ["image"]
    assert _ImageHost.fetched == ["/nude.png"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/redirect", 400, "remote_image_url"),
        ("/page", 400, "bad_image_url"),
        ("/missing", 502, "remote_image_unavailable"),
        ("/big", 413, "too_large"),
        ("/chunked-big", 413, "too_large"),
        ("/slow", 504, "remote_image_timeout"),
    ],
)
def test_fetch_failures_are_specific_errors(
    harness: Harness, image_host: str, path: str, status: int, code: str
) -> None:
    response = moderate(harness, harness.key(), f"{image_host}{path}")
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "/nude.png" not in _ImageHost.fetched  # the redirect was not followed


def test_names_resolving_to_internal_addresses_are_refused(harness_factory: Any) -> None:
    harness = harness_factory(server={"moderation_image_hosts": ["localhost"]})
    response = moderate(harness, harness.key(), "http://localhost:9/x.png")
    assert response.status_code == 400
    assert "internal address" in response.json()["error"]["message"]


def test_unlisted_hosts_and_credentials_are_refused_before_any_charge(
    harness: Harness, image_host: str
) -> None:
    key = harness.key(rate="5/min")
    other = image_host.replace("127.0.0.1", "127.0.0.2")
    for url in (f"{other}/nude.png", image_host.replace("//", "//user:pw@") + "/nude.png"):
        response = moderate(harness, key, url)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "remote_image_url"
        assert "pw" not in response.text
    assert response.headers["x-ratelimit-remaining"] == "5"
    assert _ImageHost.fetched == []


def test_remote_urls_per_request_are_limited(harness: Harness, image_host: str) -> None:
    url = f"{image_host}/nude.png"
    response = moderate(harness, harness.key(rate="5/min"), url, url, url)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_image_urls"
    assert response.headers["x-ratelimit-remaining"] == "5"  # refused before the charge
    assert _ImageHost.fetched == []
