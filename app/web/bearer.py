"""API tokens on the wire: `Authorization: Bearer`, the JSON API's own rules for who may call it.

Used by the session middleware (app/web/auth_middleware.py) and the CSRF guard:

- A token is read only from the `Authorization` header, never from a cookie or the query
  string. A request that sends one is authenticated by it alone: its cookies are not read.
- A token reaches only the JSON API under `/admin/api/`; every other address refuses it.
- Writes to the API (POST, PATCH, DELETE) need a token. A session cookie, with or without a
  CSRF token, is not a substitute; since no cookie authenticates them, they need no CSRF token.
- Each token is rate-limited, and so are failed attempts per client address.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from app.authority import ratelimit, tokens
from app.errors import PermissionDenied, Unauthenticated
from app.web import keys
from app.web.auth import PERMISSIONS, PRINCIPAL, TOKEN, TokenInfo

API_PREFIX = "/admin/api/"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHALLENGE = 'Bearer realm="keel"'


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX)


def sent_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer …` header; None when there is no such header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def cookie_free(request: web.Request) -> bool:
    """Requests that no cookie authenticates: a bearer token, or a write to the API (which
    only a token may make). The CSRF guard leaves them alone: there is nothing to forge."""
    return sent_token(request) is not None or (is_api(request.path) and request.method in UNSAFE)


def unauthorized(problem: str, why: str = "", fix: str = "") -> Unauthenticated:
    """A 401; the error middleware adds the `WWW-Authenticate` challenge to it."""
    return Unauthenticated(problem, why, fix)


async def authenticate(request: web.Request, token: str, now: datetime) -> None:
    """Look the token up (fresh, every request) and make its owner this request's principal,
    limited to the token's scope; 401 for a bad token, 429 over the rate limit."""
    ip = request.get(keys.CLIENT_IP)
    async with request.app[keys.POOL].connection() as conn:
        found = await tokens.lookup(conn, token, now=now, ip=ip)
        if found is None:
            wait = await ratelimit.hit(conn, tokens.BAD_TOKEN_IP, ip or "unknown", now=now)
        else:
            wait = await ratelimit.hit(conn, tokens.PER_TOKEN, found[0].id, now=now)
    if wait is not None:
        raise web.HTTPTooManyRequests(
            text="Too many requests with this API token. Wait and try again.",
            headers={"Retry-After": str(int(wait))},
        )
    if found is None:
        raise unauthorized(
            "This API token is not valid.",
            why="it is unknown, expired or revoked, or its account is disabled",
            fix="make a new token on your account page or with `keel token create`",
        )
    made, who, held = found
    request[PRINCIPAL] = who
    request[PERMISSIONS] = held
    request[TOKEN] = TokenInfo(made.id, made.user_id, made.name, frozenset(made.scope))


def check_route(request: web.Request) -> None:
    """login_required's rule for API addresses: a token only there, writes only with one."""
    token = request.get(TOKEN)
    if token is not None and not is_api(request.path):
        raise PermissionDenied(
            "An API token can be used only with the JSON API.",
            missing="a signed-in session",
            why="tokens are for scripts: they reach the addresses under /admin/api/ and nothing"
            " else",
            fix="call the API (its description is at /admin/api/openapi.json)",
        )
    if token is None and is_api(request.path) and request.method in UNSAFE:
        raise unauthorized(
            "Changes through the API need an API token.",
            why="a browser session, even with a form token, is not accepted for API writes",
            fix="send `Authorization: Bearer <token>`; make one on your account page",
        )
