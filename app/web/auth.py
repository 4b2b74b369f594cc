"""The web authority contract: public routes, the principal, guards, audit context (AUTHZ, SEC-1).

Other feature modules import only this module to ask "who is this and may they?":

- `@public` marks a handler that needs no login; every other route requires one (deny by default).
- `principal(request)` is the signed-in user, loaded fresh from the database for this request
  by the session middleware (AUTHZ-5), or None.
- `await require(request, perm=…, role=…)` is the one-line route guard (AUTHZ-8).
- `await require_elevated(request)` is the re-authentication wall (REAUTH-1).
- `audit_context(request)` is the `audit.Context` every state-changing service takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from app.audit import Context, derive_key
from app.authority.principal import ADMIN_ENTRY_ROLE, ROLES, Principal
from app.errors import PermissionDenied
from app.web import keys

H = TypeVar("H", bound=Callable[..., Any])

# A nav provider adds sidebar items the principal may see (templates get them as `nav`).
NavProvider = Callable[[web.Request, Principal], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class SessionInfo:
    """The current session as the web layer sees it (no token: only its id and trust)."""

    id: int
    user_id: int
    trust: str
    elevated_until: datetime | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """The API token a request came with (never the token itself): its id, name and scope."""

    id: int
    user_id: int
    name: str
    scope: frozenset[str]


PRINCIPAL = web.RequestKey("keel_principal", Principal)
SESSION = web.RequestKey("keel_session", SessionInfo)
# Set instead of SESSION when the request carried a valid `Authorization: Bearer` API token.
TOKEN = web.RequestKey("keel_api_token", TokenInfo)
# The principal's effective permission names, read with the session for this request only.
PERMISSIONS = web.RequestKey("keel_permissions", frozenset)
NAV = web.RequestKey("keel_nav", list)
AUDIT_KEY = web.AppKey("keel_audit_key", bytes)
NAV_PROVIDERS: web.AppKey[list[NavProvider]] = web.AppKey("keel_nav_providers")

_PUBLIC_ATTR = "__keel_public__"


def public(handler: H) -> H:
    """Mark a route handler as reachable without signing in (deny by default otherwise)."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def is_public(handler: object) -> bool:
    # Class-based views and functools.partial wrappers carry the mark on the wrapped object.
    target = getattr(handler, "func", handler)
    return bool(getattr(target, _PUBLIC_ATTR, False))


def principal(request: web.Request) -> Principal | None:
    """The signed-in principal for this request, or None (anonymous)."""
    return request.get(PRINCIPAL)


def session(request: web.Request) -> SessionInfo | None:
    return request.get(SESSION)


def api_token(request: web.Request) -> TokenInfo | None:
    """The API token this request was authenticated with, or None (a session, or nobody)."""
    return request.get(TOKEN)


def refuse_token(request: web.Request, what: str = "this") -> None:
    """An API token never reaches operations behind the re-authentication wall, nor pages
    gated by role (users, groups, keys): PermissionDenied for a token request."""
    if api_token(request) is not None:
        raise PermissionDenied(
            f"An API token cannot do {what}.",
            missing="a signed-in session",
            why="changes to people, roles, permissions and keys need a password check in the"
            " browser, which a token cannot give",
            fix="sign in to the admin in a browser to do it",
        )


def login_url(request: web.Request) -> str:
    """`/login?return_to=<this page>`; only GET pages are worth returning to."""
    target = request.path_qs if request.method in ("GET", "HEAD") else request.path
    return "/login?return_to=" + quote(target, safe="/")


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(login_url(request))


async def require(
    request: web.Request, *, perm: str | None = None, role: str | None = None
) -> Principal:
    """The route guard: anonymous → login; too low → PermissionDenied naming what is missing.

    With no arguments it is the admin entry check (staff and up, AUTHZ-2). Administrators and
    developers bypass per-resource permissions; `role=` is never bypassed."""
    who = principal(request)
    if who is None:
        raise _to_login(request)
    needed_role = role or ADMIN_ENTRY_ROLE
    if needed_role not in ROLES:
        raise ValueError(f"unknown role {needed_role!r}")
    if role is not None and role != ADMIN_ENTRY_ROLE:
        refuse_token(request)
    if not who.at_least(needed_role):
        raise PermissionDenied(
            "Your role does not give access to this page.", missing=f"role {needed_role}"
        )
    if perm and not await can(request, perm):
        raise PermissionDenied("You do not have permission to do this.", missing=perm)
    return who


async def can(request: web.Request, perm: str) -> bool:
    """Whether the signed-in principal may use `perm` on this request (AUTHZ-2, AUTHZ-4).

    The same rule as `roles.can`: `user` never, administrators and developers always, others
    when they hold it directly or through a group. The names come from the session lookup of
    this very request (AUTHZ-5: valid for the permission version that lookup read, so a
    change applies to the next request); a request without them (no session middleware)
    reads them once and keeps them for itself."""
    who = principal(request)
    if who is None or not who.enters_admin:
        return False
    token = api_token(request)
    if token is not None and perm not in token.scope:
        return False  # a token does at most what its scope names, whoever its owner is
    if who.bypasses_permissions:
        return True
    held = request.get(PERMISSIONS)
    if held is None:
        from app.authority.permissions import effective_permissions

        async with request.app[keys.POOL].connection() as conn:
            held = frozenset(await effective_permissions(conn, who.user_id))
        request[PERMISSIONS] = held
    return perm in held


def is_elevated(info: SessionInfo | None, now: datetime | None = None) -> bool:
    """Whether the session passed the re-auth wall recently enough (SESS-6, REAUTH-1)."""
    if info is None or info.elevated_until is None:
        return False
    return info.trust in ("elevated", "mfa_verified") and info.elevated_until > (
        now or datetime.now(UTC)
    )


async def require_elevated(
    request: web.Request, *, now: datetime | None = None, back: str | None = None
) -> Principal:
    """The re-authentication wall: not elevated → `/reauth?return_to=<this page>` (REAUTH-1).

    `back`: the page to return to when this request is a form post whose own address answers
    only POST (the browser follows the redirect after re-auth with a GET).

    Call it after `require(...)` so that a user without access is told so before being asked
    for their password. An API token is refused outright: it has no password to give."""
    who = principal(request)
    if who is None:
        raise _to_login(request)
    refuse_token(request)
    if not is_elevated(session(request), now):
        target = back or (request.path_qs if request.method in ("GET", "HEAD") else request.path)
        raise web.HTTPSeeOther("/reauth?return_to=" + quote(target, safe="/"))
    return who


def audit_key(app: web.Application) -> bytes:
    key = app.get(AUDIT_KEY)
    return key if key is not None else derive_key(app[keys.CONFIG].secret_key)


def audit_context(request: web.Request) -> Context:
    """Who acts, from where, and the chain key: what every state-changing service takes."""
    who = principal(request)
    info = session(request)
    return Context(
        audit_key=audit_key(request.app),
        actor_id=who.user_id if who else None,
        actor_email=who.email if who else None,
        actor_role=who.role if who else None,
        session_id=info.id if info else None,
        ip=request.get(keys.CLIENT_IP),
        user_agent=request.headers.get("User-Agent", "")[:200] or None,
        request_id=request.get(keys.REQUEST_ID),
        token_id=token.id if (token := api_token(request)) is not None else None,
    )


def add_nav_provider(app: web.Application, provider: NavProvider) -> None:
    """Register sidebar items (e.g. the admin's resources); called from a feature's setup().

    The items may depend only on the request's path, the principal's role and the permission
    names this request read (`can`): the session middleware keeps each sidebar per those three
    (app/web/auth_middleware.py `_nav`)."""
    app.setdefault(NAV_PROVIDERS, []).append(provider)
