"""Who is asking and how: request ids (AUDIT-6), client IP and scheme behind trusted proxies."""

from __future__ import annotations

import ipaddress
import os
import re
import time
from functools import lru_cache

from aiohttp import web

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def uuid7() -> str:
    """A time-ordered UUIDv7 (RFC 9562): 48-bit milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    # The text of uuid.UUID(int=value), without building the object (once per request).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id_from(headers: web.BaseRequest | dict[str, str]) -> str:
    hdrs = headers.headers if isinstance(headers, web.BaseRequest) else headers
    for name in ("X-Request-ID", "X-Correlation-ID"):
        value = hdrs.get(name, "")
        if _REQUEST_ID.match(value):
            return value
    return uuid7()


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def _in(addr: str, cidrs: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in _networks(cidrs))


def in_networks(addr: str, cidrs: tuple[str, ...]) -> bool:
    """Whether the address lies in one of the CIDRs (False for anything not an address)."""
    return _in(addr, cidrs)


UNIX_PEER = "unix"


def client_ip_and_scheme(request: web.BaseRequest, trusted: tuple[str, ...]) -> tuple[str, bool]:
    """The socket peer, unless it is a trusted proxy: then the right-most untrusted hop (LOGIN-3).

    A peer on our unix socket is always a proxy: the socket's permissions admit only the
    front-end (nginx) and root, and it carries no address of its own."""
    peer = request.remote or UNIX_PEER
    https = request.secure
    if peer == UNIX_PEER or (trusted and _in(peer, trusted)):
        hops = [
            h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()
        ]
        for hop in reversed(hops):
            peer = hop
            if not _in(hop, trusted):
                break
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        https = proto == "https" if proto else https
    return peer, https


def is_trusted_peer(request: web.BaseRequest, trusted: tuple[str, ...]) -> bool:
    peer = request.remote or UNIX_PEER
    return peer == UNIX_PEER or (bool(trusted) and _in(peer, trusted))
