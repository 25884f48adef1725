"""Fetching ``image_url`` parts of ``POST /v1/moderations`` from hosts the operator allows.

OpenAI's moderation API takes image URLs; a gateway that fetched any URL would be a
server-side request forgery tool (cloud metadata at 169.254.169.254, admin ports on
localhost). So genguard fetches only from hosts in ``server.moderation_image_hosts``,
and even then:

* redirects are not followed (a redirect could leave the allowed host);
* a host name that resolves to a private, loopback, link-local or reserved address is
  refused unless the allow list names that address literally (DNS answers can change;
  the literal entry is the operator saying "yes, this internal address");
* the body is read in chunks and abandoned past ``max_body_bytes`` (413), the whole fetch
  has a deadline (504), at most ``moderation_image_fetches`` URLs per request (400);
* the reply must say it is an image (``Content-Type: image/...``), else 400.

The bytes then take the same decode path (and decode budget) as a data URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from genguard.server.errors import ApiError

#: Read size when streaming a remote image (the size cap is checked between chunks).
CHUNK_BYTES = 64 * 1024


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_allowed(url: str, hosts: Sequence[str]) -> str:
    """The URL's host if it may be fetched; a 400 naming why otherwise."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ApiError(400, "bad_image_url", "image_url.url must be an http(s) or data: URL")
    if parts.username or parts.password:
        raise ApiError(400, "remote_image_url", "image URLs with credentials are refused")
    if host not in {h.lower().strip("[]") for h in hosts}:
        raise ApiError(
            400,
            "remote_image_url",
            f"remote image URLs are refused (host {host!r} is not in "
            "server.moderation_image_hosts): send a base64 data:image/... URL",
        )
    return host


async def _resolves_internal(host: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ApiError(502, "remote_image_unavailable", f"cannot resolve {host!r}") from None
    return any(_is_internal(ipaddress.ip_address(info[4][0])) for info in infos)


async def fetch_image(url: str, hosts: Sequence[str], *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes at ``url`` under the rules in the module docstring (ApiError otherwise)."""
    host = check_allowed(url, hosts)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    if _literal_ip(host) is None and await _resolves_internal(host, port):
        raise ApiError(
            400,
            "remote_image_url",
            f"{host!r} resolves to an internal address; list the address itself to allow it",
        )
    try:
        async with asyncio.timeout(timeout_s):
            return await _download(url, max_bytes)
    except TimeoutError:
        raise ApiError(
            504, "remote_image_timeout", f"fetching the image took over {timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise ApiError(
            502, "remote_image_unavailable", f"fetching the image failed: {type(exc).__name__}"
        ) from None


async def _download(url: str, max_bytes: int) -> bytes:
    async with (
        httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
        client.stream("GET", url, headers={"Accept": "image/*"}) as reply,
    ):
        if reply.is_redirect:
            raise ApiError(
                400, "remote_image_url", "the image URL redirects: redirects are not followed"
            )
        if reply.status_code != 200:
            raise ApiError(
                502, "remote_image_unavailable", f"the image host answered {reply.status_code}"
            )
        kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind.startswith("image/"):
            raise ApiError(
                400,
                "bad_image_url",
                f"the URL is not an image (Content-Type {kind or 'missing'!r})",
            )
        declared = reply.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ApiError(413, "too_large", f"the image is over {max_bytes} bytes")
        data = bytearray()
        async for chunk in reply.aiter_bytes(CHUNK_BYTES):
            data += chunk
            if len(data) > max_bytes:
                raise ApiError(413, "too_large", f"the image is over {max_bytes} bytes")
    if not data:
        raise ApiError(400, "bad_image_url", "the image URL returned no data")
    return bytes(data)
