"""Which client sent a request: the address that per-client limits are keyed on.

The socket peer is the only address a client cannot choose. ``X-Forwarded-For`` is
believed only when the peer is one of ``server.trusted_proxies``; then the right-most
address that is not itself a trusted proxy is the client (every address left of it was
written by the client and may be forged). Peers that are not IP addresses (Starlette's
TestClient says ``"testclient"``) are used as they are and never trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from starlette.requests import Request

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longest address string kept (a limiter bucket name), whatever a proxy forwards.
MAX_ADDRESS_CHARS = 64


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _normalised(address: str) -> str:
    """One spelling per IP (``::0001`` and ``::1`` are one client); other text as given."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address[:MAX_ADDRESS_CHARS]


def _is_trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_chain(request: Request) -> list[str]:
    """The ``X-Forwarded-For`` addresses, left (first hop) to right, over repeated headers."""
    values = ",".join(request.headers.getlist("x-forwarded-for"))
    return [hop.strip() for hop in values.split(",") if hop.strip()]


def client_address(request: Request, trusted_proxies: Sequence[str] = ()) -> str:
    """The client's address: the socket peer, or what trusted proxies say it forwarded for."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _is_trusted(peer, networks):
        return _normalised(peer)
    chain = forwarded_chain(request)
    for hop in reversed(chain):
        if not _is_trusted(hop, networks):
            return _normalised(hop)
    # Only proxies in the chain (or none): the farthest one is the best we know.
    return _normalised(chain[0] if chain else peer)
