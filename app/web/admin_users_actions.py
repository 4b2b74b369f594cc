"""Administrator-driven account actions on a user of lower rank, behind the re-auth wall (REC-5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web

from app import audit, mail
from app import audit_events as events
from app.authority import guards, passwords, recovery, sessions, users
from app.authority.principal import Principal
from app.authority.setup import HASHER
from app.errors import Invalid, NotFound, PermissionDenied
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
    """Token, mail and audit event in one transaction: all happen or none (MAIL-1, AUDIT-5)."""
    request, conn, actor, target, reason = (
        call.request,
        call.conn,
        call.actor,
        call.target,
        call.reason,
    )
    config = request.app[keys.CONFIG]
    if not config.public_url:
        raise Invalid(
            "reset links cannot be sent: public_url is not set",
            why="links in mail are built from public_url only, never the Host header (REC-1)",
            fix="set public_url in the configuration, or set a temporary password instead",
        )
    ctx = audit_context(request)
    now = datetime.now(UTC)
    async with conn.transaction():
        locked = await users.get(conn, target.id, for_update=True)
        guards.check_rank(actor, locked)
        # INV-1: the outbox holds a seal, never the token (app/mail/seal.py).
        token, seal = mail.new_sealed_token(mail.seal_key(ctx.audit_key))
        await recovery.issue_token(
            conn, user_id=locked.id, ttl_seconds=recovery.RESET_TTL, kind="reset",
            requested_ip=ctx.ip, now=now, token=token,
        )  # fmt: skip
        await mail.enqueue(
            conn,
            to=locked.email,
            template="password_reset",
            context={
                "site_name": config.site_name,
                "email": locked.email,
                "when": now,
                "ip": ctx.ip,
                "device": ctx.user_agent,
                "link": recovery.reset_link(config.public_url, mail.PLACEHOLDER),
                "expires_minutes": recovery.RESET_TTL // 60,
            },
            seal=seal,
        )
        event = events.password_reset_by_other(
            locked.id, locked.email, "link", reason,
            details={"token_fingerprint": audit.fingerprint(token)},
        )  # fmt: skip
        await audit.record(conn, ctx, event)
    raise _done(target, "link_sent")


async def _temporary_password(call: Call) -> web.StreamResponse:
    request, conn, actor, target, reason = (
        call.request,
        call.conn,
        call.actor,
        call.target,
        call.reason,
    )
    one_time = passwords.generate()
    password_hash = await request.app[HASHER].hash(one_time)
    user = await users.set_password(
        conn, audit_context(request), actor, target.id, password_hash, temporary=True,
        reason=reason,
    )  # fmt: skip
    # Shown once, on this response only (REC-5); Cache-Control: no-store keeps it out of caches.
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
    request, conn, actor, target, reason = (
        call.request,
        call.conn,
        call.actor,
        call.target,
        call.reason,
    )
    form = call.form
    until = lock_until(form, datetime.now(UTC))
    await users.lock(conn, audit_context(request), actor, target.id, until=until, reason=reason)
    raise _done(target, "locked")


async def _unlock(call: Call) -> web.StreamResponse:
    request, conn, actor, target, reason = (
        call.request,
        call.conn,
        call.actor,
        call.target,
        call.reason,
    )
    await users.unlock(conn, audit_context(request), actor, target.id, reason=reason)
    raise _done(target, "unlocked")


async def _revoke(call: Call) -> web.StreamResponse:
    """One session or all of them, through the single revocation writer (SESS-4, INV-4)."""
    request, conn, actor, target, reason = (
        call.request,
        call.conn,
        call.actor,
        call.target,
        call.reason,
    )
    form = call.form
    which = f.raw(form, "session", "all")
    session_id = None if which == "all" else f.form_id(form, "session", "The session")
    ctx = audit_context(request)
    async with conn.transaction():
        locked = await users.get(conn, target.id, for_update=True)
        guards.check_rank(actor, locked)
        if session_id is None:
            await sessions.revoke(
                conn, ctx, reason="administrative_revoke", user_id=locked.id, note=reason
            )
        else:
            found = await sessions.get(conn, session_id)
            if found is None or found.user_id != locked.id:
                raise NotFound("that session does not belong to this user")
            await sessions.revoke(
                conn, ctx, reason="administrative_revoke", session_id=session_id, note=reason
            )
    raise _done(target, "revoked")
