"""Read-only mode: refuse writes globally or per resource, except sign-in and own account (SEC-4)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.web import keys

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# SEC-4 keeps these working: signing in (with its second-factor and forced-change steps),
# signing out, re-authentication and the user's own account pages.
ALWAYS_WRITABLE = ("/login", "/logout", "/reauth", "/mfa", "/must-change-password", "/account")
_ADMIN_SLUG = re.compile(r"^/admin/(?:api/)?([a-z][a-z0-9_]{0,62})/")
GLOBAL_MESSAGE = (
    "Read-only mode is on: changes are switched off for everyone. "
    "You can still view records, sign in and out, and manage your own account."
)


def always_writable(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ALWAYS_WRITABLE)


def resource_is_read_only(app: web.Application, slug: str) -> bool:
    """Whether the declared resource `slug` says read_only=True (RES-1 per-resource option)."""
    try:
        from app.admin.setup import ADMIN
    except ImportError:  # a build without the admin feature
        return False
    bound = app.get(ADMIN, {}).get(slug)
    return bound is not None and bound.resource.read_only


def _inherent_reason(app: web.Application, slug: str) -> str | None:
    """Why a view or a table without a primary key is read-only, whatever is declared."""
    from app.admin.setup import ADMIN

    bound = app.get(ADMIN, {}).get(slug)
    return bound.read_only_reason if bound is not None else None


def refusal(request: web.Request) -> str | None:
    """Why this request may not write, or None when it may."""
    if request.method in SAFE_METHODS or always_writable(request.path):
        return None
    if request.app[keys.CONFIG].read_only:
        return GLOBAL_MESSAGE
    m = _ADMIN_SLUG.match(request.path)
    # The lookup endpoint is a GET; anything unsafe under a read-only resource is a write.
    if m and resource_is_read_only(request.app, m.group(1)):
        return f"'{m.group(1)}' is read-only: its records can be viewed but not changed here. " + (
            _inherent_reason(request.app, m.group(1))
            or "The site's declaration sets read_only=True."
        )
    return None


@web.middleware
async def read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Last in the list, so the error page it raises is rendered by error_pages with the chrome."""
    why = refusal(request)
    if why is not None:
        raise web.HTTPForbidden(text=why)
    return await handler(request)
