"""Administrator-driven account actions on a user of lower rank, behind the re-auth wall (REC-5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web

from app.authority import accounts, guards, mfa, recovery, sessions, users
from app.authority.principal import Principal
from app.authority.setup import HASHER
from app.errors import Invalid, PermissionDenied
from app.web import admin_users_forms as f
from app.web import keys
from app.web.admin_users_view import crumbs, form_problem, manager, refused
from app.web.auth import audit_context, require_elevated
from app.web.render import render

# REC-5 lock lengths; "minutes" takes a number from the form, "indefinite" locks until unlocked.
LOCK_CHOICES: dict[str, tuple[str, timedelta | None]] = {
    "15m": ("15 minutes", timedelta(minutes=15)),
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "indefinite": ("Until unlocked", None),
    "minutes": ("A number of minutes", None),
}
MAX_LOCK_MINUTES = 525_600  # a year; longer is "indefinite"


@dataclass(frozen=True)
class Action:
    slug: str
    title: str
    text: str
    submit: str
    danger: bool


ACTIONS = {
    a.slug: a
    for a in (
        Action(
            "reset-link",
            "Send a password reset link",
            "The user gets an email with a single-use link, valid for 30 minutes. Their current "
            "password keeps working until they use it.",
            "Send the link",
            False,
        ),
        Action(
            "temporary-password",
            "Set a temporary password",
            "A one-time password is generated and shown to you once. The user must choose a new "
            "password at the next sign-in, and every session of theirs ends now.",
            "Set a temporary password",
            True,
        ),
        Action(
            "lock",
            "Lock the account",
            "The user cannot sign in until the lock ends, and every session of theirs ends now.",
            "Lock the account",
            True,
        ),
        Action(
            "unlock",
            "Unlock the account",
            "Sign-in works again and the count of failed attempts starts from zero.",
            "Unlock",
            False,
        ),
        Action(
            "mfa-off",
            "Turn off two-step sign-in",
            "For a user who lost their phone and backup codes: their authenticator app and backup "
            "codes stop working, every session of theirs ends, and the next sign-in needs only "
            "the password (they can set it up again from their account page).",
            "Turn off two-step sign-in",
            True,
        ),
        Action(
            "sessions/revoke",
            "End sessions",
            "The chosen sessions end at once: the next request from that browser is asked to "
            "sign in again.",
            "End the sessions",
            True,
        ),
    )
}


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for slug, handler in (
        ("reset-link", _send_link),
        ("temporary-password", _temporary_password),
        ("lock", _lock),
        ("unlock", _unlock),
        ("sessions/revoke", _revoke),
        ("mfa-off", _mfa_off),
    ):
        out.append(web.get(f"/admin/users/{{id}}/{slug}", _page(slug)))
        out.append(web.post(f"/admin/users/{{id}}/{slug}", _post(slug, handler)))
    return out


async def _target(request: web.Request, actor: Principal) -> users.User:
    """A target of strictly lower rank (AUTHZ-3 guard 2), then the wall (REAUTH-1)."""
    user_id = f.path_id(request)
    async with request.app[keys.POOL].connection() as conn:
        target = await users.get(conn, user_id)
    guards.check_rank(actor, target)
    await require_elevated(request)
    return target


async def _context(
    request: web.Request, slug: str, target: users.User, values: dict[str, Any]
) -> dict[str, Any]:
    live: list[sessions.Session] = []
    if slug == "sessions/revoke":
        config = request.app[keys.CONFIG]
        async with request.app[keys.POOL].connection() as conn:
            live = await sessions.list_for_user(conn, target.id, idle=config.session_idle)
    action = ACTIONS[slug]
    return {
        "action": action,
        "target": target,
        "values": values,
        "errors": {},
        "lock_choices": [(k, label) for k, (label, _) in LOCK_CHOICES.items()],
        "sessions": live,
        "breadcrumbs": crumbs(
            ("Users", "/admin/users/"),
            (target.email, f"/admin/users/{target.id}/"),
            (action.title, None),
        ),
    }


def _page(slug: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        actor = await manager(request)  # AUTHZ-7; a missing role is the plain 403 page
        try:
            target = await _target(request, actor)
        except PermissionDenied as exc:
            return refused(request, exc)
        session = request.query.get("session", "all")
        values = {"reason": "", "duration": "1h", "minutes": "", "session": session}
        return render(request, "users/action.html", await _context(request, slug, target, values))

    return page


@dataclass(frozen=True)
class Call:
    """One validated action request: who acts on whom, the form and the stated reason."""

    request: web.Request
    conn: psycopg.AsyncConnection[Any]
    actor: Principal
    target: users.User
    form: Any
    reason: str


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def _post(slug: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def post(request: web.Request) -> web.StreamResponse:
        actor = await manager(request)
        try:
            target = await _target(request, actor)
        except PermissionDenied as exc:
            return refused(request, exc)
        form = await f.read_form(request)
        values = {n: f.raw(form, n) for n in ("reason", "duration", "minutes", "session")}
        try:
            reason = f.reason(form)
            async with request.app[keys.POOL].connection() as conn:
                return await handler(Call(request, conn, actor, target, form, reason))
        except PermissionDenied as exc:
            return refused(request, exc)
        except Invalid as exc:
            ctx = await _context(request, slug, target, values)
            problem, fields = form_problem(exc)
            ctx.update(errors=fields, form_errors=problem)
            return render(request, "users/action.html", ctx, status=400)

    return post


def _done(target: users.User, key: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/admin/users/{target.id}/?done={key}")


async def _send_link(call: Call) -> web.StreamResponse:
    config = call.request.app[keys.CONFIG]
    await recovery.send_reset_link(
        call.conn, audit_context(call.request), call.actor, call.target.id, reason=call.reason,
        public_url=config.public_url, site_name=config.site_name,
    )  # fmt: skip
    raise _done(call.target, "link_sent")


async def _temporary_password(call: Call) -> web.StreamResponse:
    request = call.request
    user, one_time = await accounts.set_temporary_password(
        call.conn, audit_context(request), call.actor, call.target.id, request.app[HASHER],
        reason=call.reason,
    )  # fmt: skip
    # Shown once, on this response only; Cache-Control: no-store keeps it out of caches.
    return render(
        request,
        "users/one_time.html",
        {
            "target": user,
            "password": one_time,
            "heading": "Temporary password set",
            "breadcrumbs": crumbs(
                ("Users", "/admin/users/"), (user.email, f"/admin/users/{user.id}/")
            ),
        },
    )


def lock_until(form: Any, now: datetime) -> datetime | None:
    choice = f.choice(form, "duration", "The lock length", LOCK_CHOICES)
    if choice == "minutes":
        raw = f.text(form, "minutes", "The number of minutes", max_len=6, required=True)
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LOCK_MINUTES:
            raise Invalid(
                f"the number of minutes must be a whole number from 1 to {MAX_LOCK_MINUTES}",
                fields={"minutes": f"1 to {MAX_LOCK_MINUTES}"},
            )
        return now + timedelta(minutes=int(raw))
    delta = LOCK_CHOICES[choice][1]
    return None if delta is None else now + delta


async def _lock(call: Call) -> web.StreamResponse:
    until = lock_until(call.form, datetime.now(UTC))
    await users.lock(
        call.conn, audit_context(call.request), call.actor, call.target.id, until=until,
        reason=call.reason,
    )  # fmt: skip
    raise _done(call.target, "locked")


async def _unlock(call: Call) -> web.StreamResponse:
    await users.unlock(
        call.conn, audit_context(call.request), call.actor, call.target.id, reason=call.reason
    )
    raise _done(call.target, "unlocked")


async def _revoke(call: Call) -> web.StreamResponse:
    """One session or all of them, through the single revocation writer."""
    which = f.raw(call.form, "session", "all")
    session_id = None if which == "all" else f.form_id(call.form, "session", "The session")
    await accounts.end_sessions(
        call.conn, audit_context(call.request), call.actor, call.target.id, reason=call.reason,
        session_id=session_id,
    )  # fmt: skip
    raise _done(call.target, "revoked")


async def _mfa_off(call: Call) -> web.StreamResponse:
    await mfa.disable_for_user(
        call.conn, audit_context(call.request), call.actor, call.target.id, reason=call.reason
    )
    raise _done(call.target, "mfa_off")
