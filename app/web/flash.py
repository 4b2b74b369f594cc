"""One-shot messages across a redirect ("Saved booking 42."): a signed cookie read once.

After a POST the handler redirects (POST/redirect/GET); the next HTML page shows the message
and clears the cookie. The cookie is HMAC-signed with a key derived from `secret_key`, so a
cookie set by anyone else (a sibling subdomain, a browser extension) is ignored instead of
putting their words on our page. The text is still escaped by Jinja like any other value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from aiohttp import web

from app.authority import reauth
from app.web import keys
from app.web.csrf import clear_cookie, set_cookie

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Kind = Literal["success", "info", "warning", "danger"]
COOKIE = "keel_flash"
MAX_TEXT = 300
MAX_LINKS = 6  # a few record links fit a cookie; more would not be read anyway
FLASH_KEY = web.AppKey("keel_flash_key", bytes)
FLASH_KEYS = web.AppKey("keel_flash_keys", tuple[bytes, ...])  # the ring's, signing key first
_SHOWN = web.RequestKey("keel_flash_shown", bool)


def _key(app: web.Application) -> bytes:
    return app[FLASH_KEY]


def _sign(key: bytes, payload: bytes) -> str:
    return hmac.digest(key, payload, "sha256").hex()[:32]


Link = tuple[str, str]  # (label, same-site path)


def _clean(text: str, limit: int) -> str:
    return "".join(c for c in text if c.isprintable())[:limit]


def _links(raw: Any) -> list[dict[str, str]]:
    """Links kept only when they are same-site paths: even a signed cookie must not be able
    to put a link to another site on our page."""
    out: list[dict[str, str]] = []
    if not isinstance(raw, list):
        return out
    for item in raw[:MAX_LINKS]:
        if not (isinstance(item, list) and len(item) == 2):
            continue
        label, url = str(item[0])[:80], str(item[1])[:500]
        if is_local_path(url):
            out.append({"label": label, "url": url})
    return out


def is_local_path(url: str) -> bool:
    """An admin or account path on this site: the same rule as a sign-in's return address."""
    return bool(url) and reauth.safe_return_to(url, "") == url


def flash(
    response: web.StreamResponse,
    request: web.Request,
    text: str,
    kind: Kind = "success",
    links: Sequence[Link] = (),
) -> None:
    """Show `text` on the next page this browser loads, followed by `links` (same-site paths)."""
    data: dict[str, Any] = {"k": kind, "t": _clean(text, MAX_TEXT)}
    kept = [[_clean(label, 80), url] for label, url in links[:MAX_LINKS] if is_local_path(url)]
    if kept:
        data["l"] = kept
    payload = base64.urlsafe_b64encode(json.dumps(data).encode())
    set_cookie(response, request, COOKIE, f"{payload.decode()}.{_sign(_key(request.app), payload)}")


def read(request: web.Request) -> list[dict[str, Any]]:
    """The pending message, if any, verified; marks it shown so the response clears it."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return []
    request[_SHOWN] = True
    payload, _, mac = raw.rpartition(".")
    # Any key of the ring: a message set just before a key rotation still shows.
    keys = request.app.get(FLASH_KEYS) or (_key(request.app),)
    if not payload or not any(
        hmac.compare_digest(_sign(key, payload.encode()), mac) for key in keys
    ):
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        kind, text = str(data["k"]), str(data["t"])[:MAX_TEXT]
        links = _links(data.get("l"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
    if kind not in ("success", "info", "warning", "danger"):
        return []
    return [{"kind": kind, "text": text, "links": links}]


def template_context(request: web.Request) -> dict[str, Any]:
    """`Renderer.context_hooks` entry: only full pages reach here, so only they consume it."""
    return {"flash_messages": read(request)}


def clear_shown(request: web.Request, response: web.StreamResponse) -> None:
    """Clear the cookie once a page showed it (and not on redirects, which show nothing).
    Called on every response on its way out, error pages included (app/web/middleware.py)."""
    if request.get(_SHOWN) and not response.prepared and COOKIE not in response.cookies:
        clear_cookie(response, request, COOKIE)


def setup(app: web.Application) -> None:
    ring = tuple(
        hmac.new(secret.encode(), b"keel flash v1", hashlib.sha256).digest()
        for secret in app[keys.CONFIG].ring or ("",)
    )
    app[FLASH_KEY], app[FLASH_KEYS] = ring[0], ring
    app[keys.RENDERER].context_hooks.append(template_context)


def see_other(
    request: web.Request,
    location: str,
    text: str,
    kind: Kind = "success",
    links: Sequence[Link] = (),
) -> web.HTTPSeeOther:
    """A 303 to `location` that carries `text` (and `links`) to the page it lands on (raise it)."""
    carrier = web.Response()
    flash(carrier, request, text, kind, links)
    redirect = web.HTTPSeeOther(location)
    for morsel in carrier.cookies.values():  # aiohttp writes cookies only when it sends
        redirect.headers.add("Set-Cookie", morsel.OutputString())
    return redirect
