"""Compressed text responses: gzip when the client accepts it, brotli when the `brotli` module
happens to be installed (Keel does not depend on it).

HTML, CSS, JavaScript, JSON, CSV and SVG shrink to a fifth or less; images, archives and bodies
under a kilobyte are sent as they are (too little to gain for the CPU). Every response that
could have been compressed says `Vary: Accept-Encoding`, so a shared cache keeps both forms.
Pages carry a CSRF token beside text a visitor can put in the URL, which a compressed page could
leak to an attacker who watches sizes (BREACH); csrf.py masks the token afresh on every page
for that reason (docs/decisions.md).
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIN_SIZE = 1024  # below this the headers outweigh the saving
# Pages are compressed on every request, on a server whose limit is CPU: zlib level 1 costs
# about half of the default level 6 for a slightly larger body (docs/benchmarks.md). Static
# assets are compressed once, at level 9.
GZIP_LEVEL = 1
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/x-ndjson",
        "application/jsonl",
        "application/xml",
        "application/manifest+json",
        "image/svg+xml",
    }
)


def _brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


BROTLI = _brotli()


def compressible(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type in _TEXT_TYPES


def accepted(request: web.Request, *, brotli: bool = True) -> str | None:
    """The coding to use for this request: "br", "gzip" or None (identity)."""
    header = request.headers.get(hdrs.ACCEPT_ENCODING, "")
    if not header:
        return None
    weights: dict[str, float] = {}
    for item in header.lower().split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        weights[name.strip()] = q
    star = weights.get("*", 0.0)
    if brotli and BROTLI is not None and weights.get("br", star) > 0:
        return "br"
    if weights.get("gzip", weights.get("x-gzip", star)) > 0:
        return "gzip"
    return None


def encode(body: bytes, coding: str, *, best: bool = False) -> bytes:
    """`best`: the smallest output, for what is compressed once (static assets)."""
    if coding == "br":
        return bytes(BROTLI.compress(body, quality=11 if best else 5))
    packer = zlib.compressobj(9 if best else GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
    return packer.compress(body) + packer.flush()


def add_vary(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    if "accept-encoding" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"


def compress_response(request: web.Request, response: web.StreamResponse) -> None:
    """Compress a finished `web.Response` in place when it is text, big enough and accepted."""
    if (
        not isinstance(response, web.Response)
        or response.prepared
        or hdrs.CONTENT_ENCODING in response.headers
        or response.status < 200
        or response.status in (204, 304)
        or not compressible(response.content_type)
    ):
        return
    body = response.body
    if not isinstance(body, bytes | bytearray) or len(body) < MIN_SIZE:
        return
    add_vary(response)
    coding = accepted(request)
    if coding is None:
        return
    response.body = encode(bytes(body), coding)
    response.headers[hdrs.CONTENT_ENCODING] = coding
    response.headers.popall(hdrs.CONTENT_LENGTH, None)


def stream_compression(request: web.Request, response: web.StreamResponse) -> None:
    """For a response a handler streams itself (exports): gzip as it goes, before `prepare`."""
    add_vary(response)
    if accepted(request, brotli=False) == "gzip":  # aiohttp streams gzip, not brotli
        response.enable_compression(web.ContentCoding.gzip)
