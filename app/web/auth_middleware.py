"""Session/actor and login-required middleware, and the template context they feed (SESS, AUTHZ-2)."""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from app.authority import reauth, sessions
from app.authority.principal import Principal
from app.errors import PermissionDenied
from app.ops.logging import user_id_var
from app.web import bearer, keys, mfa_keys, prefetch
from app.web.auth import (
    NAV,
    NAV_PROVIDERS,
    PERMISSIONS,
    PRINCIPAL,
    SESSION,
    SessionInfo,
    api_token,
    is_public,
    login_url,
    principal,
    session,
)
from app.web.csrf import (
    REFUSED,
    UNSAFE,
    bound_to_session,
    clear_session_cookie,
    session_cookie,
    token_for,
)
from app.web.render import Nav, items_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("keel.auth")

# Tests and benchmarks may set this before start-up to move time.
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("keel_clock")
# Foundation routes registered by app.py that need no login (OPS-2, UI-6).
FOUNDATION_PUBLIC = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/static/{name}", "/static/site/{path}"}
)
_NO_SESSION_PREFIXES = ("/static/", "/healthz", "/readyz", "/metrics")
# Requests that keep the session lookup's connection for the handler: they carry no body.
_HOLD_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where a held user may still go: the step they owe, and the way out.
MFA_STEP = ("/mfa", "/logout")
CHANGE_STEP = ("/must-change-password", "/logout")
# Setting it up needs a recent password, so the re-auth page is open to a held user too; it
# sends them back to the set-up page.
ENROL_STEP = ("/account/two-step", "/reauth", "/logout")
# AUTHZ-2: a `user` may use only its own account pages (and the steps around signing in).
OWN_ACCOUNT = ("/account", "/logout", "/reauth", "/mfa", "/must-change-password")


def now(app: web.Application) -> datetime:
    clock = app.get(CLOCK)
    return clock() if clock is not None else datetime.now(UTC)


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


@web.middleware
async def session_actor(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Look the cookie up on every request (AUTHZ-5: the session, the role and the permission
    version are read each time, so a revocation or a role change made on any host applies to
    the very next request here)."""
    token = None
    bearer_token = bearer.sent_token(request)
    if bearer_token is not None:
        # A token alone authenticates this request: its cookies are not read at all.
        await bearer.authenticate(request, bearer_token, now(request.app))
        who = principal(request)
        if who is not None:
            user_id_var.set(who.user_id)
    elif not request.path.startswith(_NO_SESSION_PREFIXES) and not bearer.cookie_free(request):
        token = request.cookies.get(session_cookie(request))
    if not token:
        return _finish(request, await handler(request), token=None, stale=False)
    config = request.app[keys.CONFIG]
    async with request.app[keys.POOL].request_connection() as held:
        assert held.conn is not None
        ahead = prefetch.plan(request)
        if isinstance(ahead, prefetch.Batch):
            found, results = await sessions.lookup_with_batch(
                held.conn, token, ahead.sent, now=now(request.app), idle=config.session_idle
            )
            if found is not None and results is not None:
                prefetch.keep_batch(request, ahead, results)
        elif ahead is not None:
            found, rows = await sessions.lookup_along(
                held.conn, token, ahead, now=now(request.app), idle=config.session_idle
            )
            if found is not None and rows is not None:
                prefetch.keep(request, ahead, rows)
        else:
            found = await sessions.lookup_with_permissions(
                held.conn, token, now=now(request.app), idle=config.session_idle
            )
        if found is None:
            await held.release()
        else:
            sess, who, held_perms = found
            request[PRINCIPAL] = who
            # Every other line logged for this request names the user too (OPS-3); the
            # variable belongs to this request's task, so it ends with the request.
            user_id_var.set(who.user_id)
            request[PERMISSIONS] = held_perms
            request[SESSION] = SessionInfo(
                sess.id, sess.user_id, sess.trust, sess.elevated_until, sess.created_at,
                sess.expires_at,
            )  # fmt: skip
            # Every method: a form re-shown after a failed POST, and a 403 or 404 page, keep
            # the sidebar like any other page.
            request[NAV] = await _nav(request)
            if request.method not in _HOLD_METHODS:
                # A body may take its time to arrive (an upload, a slow client): no connection
                # is held while it does. The handler checks one out when it needs it.
                await held.release()
        # Otherwise the page's own queries reuse this connection (app/db/pool.py): one
        # checkout per request, returned when the response is built.
        response = await handler(request)
    return _finish(request, response, token=token, stale=found is None)


def _finish(
    request: web.Request, response: web.StreamResponse, *, token: str | None, stale: bool
) -> web.StreamResponse:
    if not response.prepared:
        if stale and session_cookie(request) not in response.cookies:
            clear_session_cookie(response, request)  # the browser stops sending a dead token
        if token:
            response.headers["Cache-Control"] = "no-store"  # SEC-2: authenticated pages
    return response


# Sidebars kept by what they are built from (below), per application (its resources and
# providers are its own); a few hundred pages' worth each.
NAV_MEMO_SIZE = 256
_NAVS: weakref.WeakKeyDictionary[web.Application, OrderedDict[tuple[Any, ...], Nav]] = (
    weakref.WeakKeyDictionary()
)


async def _nav(request: web.Request) -> list[dict[str, Any]]:
    """The sidebar items of this request, kept per (page path, role, permission names).

    Nav providers (`add_nav_provider`) build their items from those three only, so equal
    inputs give equal items. The permission names are the ones this request's session lookup
    read: a revoked permission or a changed role is a different key, and the next page builds
    its sidebar afresh (AUTHZ-5). The kept list is shared, so nothing may change it. Its `key`
    is what the items hold, worked out once here: the chrome and page memos key by it, so the
    pages of two records (equal items, another path) share them."""
    who = principal(request)
    if who is None:
        return []
    key = ("nav", request.path, who.role, request.get(PERMISSIONS))
    kept = _NAVS.get(request.app)
    if kept is None:
        kept = _NAVS[request.app] = OrderedDict()
    found = kept.get(key)
    if found is not None:
        kept.move_to_end(key)
        return found
    items, complete = await _build_nav(request, who)
    # A provider that failed this time may not fail the next: such items are neither kept nor
    # keyed by the inputs (the chrome is then kept by what the items hold).
    if complete:
        try:
            content = items_key(items)
            hash(content)
        except TypeError:  # a value that cannot be a key: kept, but drawn afresh each time
            content = None
        items.key = None if content is None else ("nav", content)
        kept[key] = items
        if len(kept) > NAV_MEMO_SIZE:
            kept.popitem(last=False)
    return items


async def _build_nav(request: web.Request, who: Principal) -> tuple[Nav, bool]:
    items = Nav()
    complete = True
    for provider in request.app.get(NAV_PROVIDERS, []):
        try:
            items.extend(await provider(request, who))
        except Exception:  # a broken menu must not take the page down
            log.exception("navigation provider %r failed", provider)
            complete = False
    items.extend(
        {"label": label, "url": url, "icon": icon, "section": "Your account"}
        for label, url, icon in (
            ("Account", "/account", "user"),
            ("Sessions", "/account/sessions", "shield"),
            ("Password", "/account/password", "lock"),
        )
    )
    for item in items:
        url = item.get("url", "")
        item.setdefault(
            "active", request.path == url or (url.endswith("/") and request.path.startswith(url))
        )
    return items, complete


def template_context(request: web.Request) -> dict[str, Any]:
    """`Renderer.context_hooks` entry: `user`, `csrf_token` and `nav` for every page."""
    return {
        "user": principal(request),
        "csrf_token": token_for(request),
        "nav": request.get(NAV) or [],
    }


def _route_is_public(request: web.Request) -> bool:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is not None and resource.canonical in FOUNDATION_PUBLIC:
        return True
    return is_public(info.handler)


def _see_other(location: str) -> web.Response:
    # Returned, not raised, so session_actor can still clear a dead cookie on it.
    return web.Response(status=303, headers={"Location": location})


def enrol_url(request: web.Request) -> str:
    """The set-up page, with this page to return to when it is one worth returning to."""
    back = ""
    if request.method in ("GET", "HEAD"):
        back = reauth.safe_return_to(request.path_qs, "")
    return ENROL_STEP[0] + ("?return_to=" + quote(back, safe="/") if back else "")


@web.middleware
async def login_required(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deny by default: every route not marked @public needs a signed-in user."""
    if request.match_info.http_exception is not None:
        return await handler(request)
    # Before the public-route exemption: a token is refused everywhere but the API, sign-in
    # pages included (those would otherwise run without the CSRF check tokens skip).
    bearer.check_route(request)
    if _route_is_public(request):
        return await handler(request)
    who = principal(request)
    if who is None:
        if bearer.is_api(request.path) and request.path != bearer.API_PREFIX:
            # Scripts get a 401 they can act on; the description page is a page: sign in.
            raise bearer.unauthorized(
                "The API needs an API token or a signed-in session.",
                fix="send `Authorization: Bearer <token>`; make one on your account page",
            )
        return _see_other(login_url(request))
    if api_token(request) is not None:
        # No session: no second-factor step to hold it at, no form token to check.
        if who.must_change_password:
            raise PermissionDenied(
                "This account must change its password before its tokens work again.",
                missing="a new password",
                fix="sign in to the admin in a browser and set a new password",
            )
        if not who.enters_admin:
            raise PermissionDenied("This account cannot use the admin.", missing="role staff")
        return await handler(request)
    if request.method in UNSAFE and not bound_to_session(request):
        # SEC-1: a signed-in change needs the token of this session, not one from a form
        # shown before sign-in (or in a tab that signed in elsewhere since).
        raise web.HTTPForbidden(text=REFUSED)
    info = session(request)
    path = request.path
    if info is not None and info.trust == "pending" and not _under(path, MFA_STEP):
        return _see_other("/mfa")  # MFA-3: the second factor first
    policy = request.app.get(mfa_keys.MFA_POLICY)
    must_enrol = policy is not None and policy.requires(who.role) and not who.mfa_enabled
    if must_enrol and not _under(path, ENROL_STEP):
        # MFA-4: set up the second factor first; pages, JSON and exports all wait. The page
        # asked for rides along, so that finishing the set-up leads there.
        return _see_other(enrol_url(request))
    if who.must_change_password and not _under(path, CHANGE_STEP):
        return _see_other("/must-change-password")  # LOGIN-7
    if not who.enters_admin and not _under(path, OWN_ACCOUNT):
        raise PermissionDenied(
            "Your account may use only its own account pages.", missing="role staff"
        )
    return await handler(request)
