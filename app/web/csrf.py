"""Cookies and CSRF: session-bound tokens, a pre-session cookie, Origin checks (SESS-2, SEC-1)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from app.web import keys
from app.web.auth import session as current_session
from app.web.bearer import cookie_free

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
REFUSED = (
    "This form could not be accepted: it is out of date or was sent from another site. "
    "Go back, reload the page and try again."
)
CSRF_KEY = web.AppKey("keel_csrf_key", bytes)
CSRF_KEYS = web.AppKey("keel_csrf_keys", tuple[bytes, ...])  # the ring's, signing key first
_NEW_PRE = web.RequestKey("keel_new_pre_csrf", str)
_BINDING = web.RequestKey("keel_csrf_binding", str)


# ---- cookies (SESS-2) -------------------------------------------------------------------


def _https(request: web.Request) -> bool:
    return bool(request.get(keys.IS_HTTPS, False))


def session_cookie(request: web.Request) -> str:
    """`__Host-keel_session` over HTTPS (direct or via a trusted proxy), else `keel_session`."""
    return "__Host-keel_session" if _https(request) else "keel_session"


def pre_cookie(request: web.Request) -> str:
    return "__Host-keel_csrf" if _https(request) else "keel_csrf"


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """HttpOnly, SameSite=Strict, Path=/, Secure on HTTPS; no Max-Age: the server decides
    how long a session lives (SESS-3) and the browser forgets it when closed."""
    response.set_cookie(
        name, value, path="/", secure=_https(request), httponly=True, samesite="Strict"
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(name, path="/", secure=_https(request), httponly=True, samesite="Strict")


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    set_cookie(response, request, session_cookie(request), token)


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    clear_cookie(response, request, session_cookie(request))


# ---- tokens (SEC-1) ---------------------------------------------------------------------


def derive_key(secret_key: str) -> bytes:
    """A key of its own, so the CSRF HMAC never reuses the audit chain key."""
    return hmac.new(secret_key.encode(), b"keel-csrf-v1", hashlib.sha256).digest()


def _key(app: web.Application) -> bytes:
    key = app.get(CSRF_KEY)
    return key if key is not None else derive_key(app[keys.CONFIG].secret_key)


def _keys(app: web.Application) -> tuple[bytes, ...]:
    """Every key a token may carry: a form shown before a key rotation still posts."""
    ring = app.get(CSRF_KEYS)
    return ring if ring else (_key(app),)


# The tokens of the cookies seen lately, by (key, kind, cookie): a signed-in person's every page
# carries the token of the same session cookie, which costs a hash and an HMAC to work out
# (OpenSSL sets up both on each call). The token is a pure function of its key and cookie, so
# keeping it changes no answer; a revoked session is refused by the session check, whatever
# its token. Bounded, oldest first out; the cookies held are ones this process reads anyway.
MAC_MEMO_SIZE = 1024
_MACS: dict[tuple[bytes, bytes, str], str] = {}


def _mac(key: bytes, kind: bytes, value: str) -> str:
    memo = (key, kind, value)
    found = _MACS.get(memo)
    if found is not None:
        return found
    # Bound to the hash of the cookie, so the token reveals nothing about the cookie itself.
    digest = hashlib.sha256(value.encode("utf-8", "replace")).digest()
    # The one-shot C function: the same HMAC as hmac.new(...).hexdigest(), without building
    # an HMAC object in Python.
    mac = hmac.digest(key, kind + digest, "sha256").hex()
    if len(_MACS) >= MAC_MEMO_SIZE:
        del _MACS[next(iter(_MACS))]
    _MACS[memo] = mac
    return mac


class _Pads:
    """Random pads for `_mask`, read from the kernel 256 at a time instead of one system call
    a page. The bytes are the same CSPRNG output `secrets.token_bytes` returns; each pad is
    handed out once (a list iterator's `next` is one step, even between threads). A forked
    worker starts with none, so two processes never share a pad."""

    SIZE = 16
    pads: Iterator[bytes] = iter(())

    @classmethod
    def take(cls) -> bytes:
        pad = next(cls.pads, None)
        while pad is None:
            chunk = os.urandom(cls.SIZE * 256)
            cls.pads = iter([chunk[i : i + cls.SIZE] for i in range(0, len(chunk), cls.SIZE)])
            pad = next(cls.pads, None)
        return pad

    @classmethod
    def forget(cls) -> None:
        cls.pads = iter(())


os.register_at_fork(after_in_child=_Pads.forget)


def _mask(mac: str) -> str:
    """A fresh random pad XORed over the token on every page, so that no two responses carry
    the same bytes: a compressed page cannot leak it to a size-watching attacker (BREACH).
    Pad and masked half-MAC (128 bits) keep the 64 hex characters of the bare token."""
    pad = _Pads.take()
    # XOR of the two 16-byte strings, done on integers: one operation instead of 16.
    masked = int.from_bytes(pad, "big") ^ int.from_bytes(bytes.fromhex(mac[:32]), "big")
    return (pad + masked.to_bytes(16, "big")).hex()


def _matches(mac: str, sent: str) -> bool:
    """A bare token (scripts, tests) or a masked one from a page."""
    try:
        raw = bytes.fromhex(sent)
    except ValueError:
        return False
    unmasked = bytes(a ^ b for a, b in zip(raw[:16], raw[16:], strict=True))
    bare = hmac.compare_digest(mac, sent)
    return hmac.compare_digest(unmasked, bytes.fromhex(mac)[:16]) or bare


def token_for_cookie(secret_key: str, cookie: str, *, session: bool = True) -> str:
    """The form token for a session (or pre-session) cookie; tests use it to post forms."""
    return _mac(derive_key(secret_key), b"s:" if session else b"p:", cookie)


def token_for(request: web.Request) -> str:
    """The token this page's forms carry: bound to the live session, or before sign-in to the
    pre-session cookie, which is created here when missing and set by the middleware."""
    key = _key(request.app)
    if current_session(request) is not None:
        cookie = request.cookies.get(session_cookie(request), "")
        if cookie:
            return _mask(_mac(key, b"s:", cookie))
    pre = request.get(_NEW_PRE) or request.cookies.get(pre_cookie(request), "")
    if not _well_formed(pre):
        pre = secrets.token_urlsafe(32)
        request[_NEW_PRE] = pre
    return _mask(_mac(key, b"p:", pre))


def _well_formed(value: str) -> bool:
    return 40 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def _valid(request: web.Request, sent: str) -> str | None:
    """Which cookie the token is bound to ("session" or "pre"), or None when it matches none."""
    if not sent or len(sent) != 64:
        return None
    bound: str | None = None
    # Either binding passes here: a form shown before sign-in or after (an expired session
    # reads as anonymous). Both compare in constant time and are both computed. Once the
    # session is known to be live, login_required refuses a pre-session token on a route
    # that needs a signed-in user (SEC-1: bound to the session).
    for kind, name in ((b"s:", session_cookie(request)), (b"p:", pre_cookie(request))):
        cookie = request.cookies.get(name, "")
        for key in _keys(request.app) if cookie else ():
            if _matches(_mac(key, kind, cookie), sent) and bound is None:
                bound = "session" if kind == b"s:" else "pre"
    return bound


def bound_to_session(request: web.Request) -> bool:
    """For an unsafe request that passed the guard: was its token bound to the session?"""
    return request.get(_BINDING) == "session"


def _expected_origin(request: web.Request) -> str:
    public_url = request.app[keys.CONFIG].public_url
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
    # Development without public_url: the request's own host.
    return f"{'https' if _https(request) else 'http'}://{request.host}".lower()


def origin_problem(request: web.Request) -> str | None:
    """SEC-1: refuse cross-site requests by Fetch Metadata and by Origin."""
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site == "cross-site":
        return "cross-site request"
    origin = request.headers.get("Origin")
    if origin is None or (origin == "null" and site == "same-origin"):
        # Our own `Referrer-Policy: no-referrer` (SEC-2) makes browsers send `Origin: null` on
        # same-origin form posts; that opaque origin passes only when Fetch Metadata vouches for it.
        return None
    if origin.rstrip("/").lower() != _expected_origin(request):
        return "foreign origin"
    return None


_STREAMED_ATTR = "_keel_streamed_upload"
H = Callable[[web.Request], Awaitable[web.StreamResponse]]


def streamed_upload(handler: H) -> H:
    """Mark a handler that reads a large multipart upload itself, a part at a time: the token
    must then be the form's first field (read here, not by loading the whole body, which
    max_body_size caps), and the handler continues from `keys.UPLOAD_READER`."""
    setattr(handler, _STREAMED_ATTR, True)
    return handler


async def _first_part_token(request: web.Request) -> str:
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, aiohttp.BodyPartReader) or part.name != FIELD:
        return ""
    value = b""
    while len(value) <= 1024 and (chunk := await part.read_chunk(256)):
        value += chunk
    request[keys.UPLOAD_READER] = reader
    return value.decode("ascii", "replace").strip()


async def _sent_token(request: web.Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.content_type == "multipart/form-data" and getattr(
        request.match_info.handler, _STREAMED_ATTR, False
    ):
        return await _first_part_token(request)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return ""
    try:
        form = await request.post()
    except ValueError:
        raise web.HTTPBadRequest(text="The form data could not be read.") from None
    value = form.get(FIELD)
    return value if isinstance(value, str) else ""


@web.middleware
async def csrf_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin/Fetch-Metadata first, then the token, for every unsafe method (SEC-1)."""
    # A request that matches no route (404/405) changes nothing: let routing answer it.
    # A bearer-token request, or a write to the JSON API (which only a token may make), is not
    # authenticated by any cookie: there is nothing for another site to forge (app/web/bearer.py).
    if (
        request.method in UNSAFE
        and request.match_info.http_exception is None
        and not cookie_free(request)
    ):
        if origin_problem(request) is not None:
            raise web.HTTPForbidden(text=REFUSED)
        binding = _valid(request, await _sent_token(request))
        if binding is None:
            raise web.HTTPForbidden(text=REFUSED)
        request[_BINDING] = binding
    response = await handler(request)
    new = request.get(_NEW_PRE)
    if new and not response.prepared:
        set_cookie(response, request, pre_cookie(request), new)
    return response
