"""Password recovery: single-use hashed tokens, silent limits, reset that signs nobody in (REC-1..4)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from app import audit, mail
from app import audit_events as events
from app.authority import guards, login, ratelimit, sessions, users
from app.authority.passwords import Hasher, Policy
from app.authority.principal import Principal
from app.errors import Invalid, KeelError

log = logging.getLogger("keel.recovery")
Conn = psycopg.AsyncConnection[Any]
Kind = Literal["reset", "emergency"]
RESET_TTL = 30 * 60  # REC-1: 30 minutes
MAX_TTL = 24 * 3600


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


# Invitation links are hashed the same way (app/authority/invitations.py).
token_hash = _hash


async def issue_token(
    conn: Conn,
    *,
    user_id: int,
    ttl_seconds: float,
    kind: Kind,
    requested_ip: str | None = None,
    now: datetime | None = None,
    token: str | None = None,
) -> str:
    """A new single-use recovery token for `user_id`; only its SHA-256 is stored (INV-1).

    Used by self-service recovery, the administrator's "send reset link" (REC-5) and the
    CLI's emergency access (R4-1). The caller builds the link from `public_url` only."""
    if kind not in ("reset", "emergency"):
        raise ValueError(f"unknown token kind {kind!r}")
    if not 0 < ttl_seconds <= MAX_TTL:
        raise ValueError("ttl_seconds must be between 1 second and a day")
    at = now or datetime.now(UTC)
    token = token or sessions.new_token()
    if not sessions.well_formed(token):
        raise ValueError("a recovery token has the shape of every other token")
    await conn.execute(
        "INSERT INTO keel_recovery_tokens (token_hash, user_id, kind, created_at, expires_at,"
        " requested_ip) VALUES (%s, %s, %s, %s, %s, %s)",
        (_hash(token), user_id, kind, at, at + timedelta(seconds=ttl_seconds), requested_ip),
    )
    return token


def reset_link(public_url: str, token: str) -> str:
    """The link in mail, from `public_url` only, never the Host header (REC-1)."""
    return f"{public_url.rstrip('/')}/reset/{token}"


async def request_reset(
    conn: Conn,
    ctx: audit.Context,
    *,
    email: object,
    public_url: str,
    site_name: str = "Keel",
    now: datetime | None = None,
) -> bool:
    """Self-service "forgot password" (REC-1, REC-3). Returns whether mail was queued, for
    tests and logs only: the web layer answers the same way whatever this returns."""
    at = now or datetime.now(UTC)
    ip = ctx.ip or "unknown"
    if await ratelimit.hit(conn, ratelimit.RESET_REQUEST_IP, ip, now=at) is not None:
        log.info("reset request over the per-address limit", extra={"ip": ip})
        return False
    address = login.normalise_email(email)
    account = await login.account_by_email(conn, address) if address else None
    if account is None or not account.is_active:
        return False
    if await ratelimit.hit(conn, ratelimit.RESET_REQUEST_USER, account.id, now=at) is not None:
        log.info("reset request over the per-account limit", extra={"user_id": account.id})
        return False
    if not public_url:
        log.warning("reset link not sent: public_url is not set (REC-1)")
        return False
    try:
        async with conn.transaction():
            token = await _queue_reset_mail(
                conn, ctx, user_id=account.id, email=account.email, public_url=public_url,
                site_name=site_name, now=at, requested_ip=ip,
            )  # fmt: skip
            await audit.record(
                conn,
                ctx,
                events.password_reset_self_request(
                    account.id, account.email, audit.fingerprint(token)
                ),
            )
    except Exception:
        # REC-1: a mail failure must look like every other outcome; it is logged, not shown.
        log.exception("reset request failed for user %s", account.id)
        return False
    return True


async def _queue_reset_mail(
    conn: Conn,
    ctx: audit.Context,
    *,
    user_id: int,
    email: str,
    public_url: str,
    site_name: str,
    now: datetime,
    requested_ip: str | None,
) -> str:
    """A reset token and its mail, in the caller's transaction; returns the token.

    The outbox holds a seal, never the token itself (app/mail/seal.py)."""
    token, seal = mail.new_sealed_token(mail.seal_key(ctx.audit_key), audit.key_id(ctx.audit_key))
    await issue_token(
        conn, user_id=user_id, ttl_seconds=RESET_TTL, kind="reset",
        requested_ip=requested_ip, now=now, token=token,
    )  # fmt: skip
    await mail.enqueue(
        conn,
        to=email,
        template="password_reset",
        context={
            "site_name": site_name,
            "email": email,
            "when": now,
            "ip": ctx.ip,
            "device": ctx.user_agent,
            "link": reset_link(public_url, mail.PLACEHOLDER),
            "expires_minutes": RESET_TTL // 60,
        },
        seal=seal,
    )
    return token


async def send_reset_link(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    *,
    reason: str,
    public_url: str,
    site_name: str = "Keel",
    now: datetime | None = None,
) -> None:
    """An administrator sends someone of lower rank a single-use reset link.

    Token, mail and audit event in one transaction: all happen or none. Unlike the
    self-service request this one answers plainly when it cannot send."""
    if not public_url:
        raise Invalid(
            "reset links cannot be sent: public_url is not set",
            why="links in mail are built from the configured public_url only, never from the"
            " address a browser used",
            fix="set public_url in the configuration, or set a temporary password instead",
        )
    at = now or datetime.now(UTC)
    async with conn.transaction():
        target = await users.get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        token = await _queue_reset_mail(
            conn, ctx, user_id=target.id, email=target.email, public_url=public_url,
            site_name=site_name, now=at, requested_ip=ctx.ip,
        )  # fmt: skip
        event = events.password_reset_by_other(
            target.id, target.email, "link", reason,
            details={"token_fingerprint": audit.fingerprint(token)},
        )  # fmt: skip
        await audit.record(conn, ctx, event)


@dataclass(frozen=True)
class Pending:
    """A token that can still be used: what the reset page needs to show its form."""

    user_id: int
    email: str
    kind: Kind
    expires_at: datetime


async def peek(conn: Conn, token: object, *, now: datetime | None = None) -> Pending | None:
    """The live token's owner, without consuming it; None for invalid, expired or used (REC-2)."""
    if not sessions.well_formed(token):
        return None
    at = now or datetime.now(UTC)
    cur = await conn.execute(
        "SELECT t.user_id, u.email, t.kind, t.expires_at FROM keel_recovery_tokens t"
        " JOIN keel_users u ON u.id = t.user_id WHERE t.token_hash = %s"
        " AND t.consumed_at IS NULL AND t.expires_at > %s AND u.is_active",
        (_hash(str(token)), at),
    )
    row = await cur.fetchone()
    return Pending(*row) if row else None


async def _notify_changed(
    conn: Conn, ctx: audit.Context, *, email: str, site_name: str, at: datetime
) -> None:
    """MAIL-3: tell the owner, in the change's transaction; a mail problem never blocks it."""
    try:
        async with conn.transaction():  # a savepoint: a refused address rolls back only this
            await mail.enqueue(
                conn,
                to=email,
                template="password_changed",
                context={
                    "site_name": site_name, "email": email, "when": at, "ip": ctx.ip,
                    "device": ctx.user_agent, "sessions_ended": True,
                },
            )  # fmt: skip
    except (KeelError, psycopg.Error):
        log.warning("password-changed mail not queued", exc_info=True)


class LinkInvalid(Exception):
    """Invalid, expired, used, or over the consumption limit: one page for all (REC-2, REC-3)."""


async def consume(
    conn: Conn,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    token: object,
    new_password: object,
    policy: Policy,
    now: datetime | None = None,
    throttle: login.Throttle | None = None,
) -> int:
    """Set a new password with a link: the policy is checked first, then the token is consumed
    atomically, every session of the user ends, and nobody is signed in (REC-2). Returns the
    user id. Raises Invalid (policy; token kept) or LinkInvalid."""
    at = now or datetime.now(UTC)
    if await ratelimit.hit(conn, ratelimit.RESET_CONSUME_IP, ctx.ip or "unknown", now=at):
        raise LinkInvalid()
    pending = await peek(conn, token, now=at)
    if pending is None:
        raise LinkInvalid()
    problem = policy.check(new_password, email=pending.email)
    if problem:
        raise Invalid(problem, fields={"password": problem})
    password_hash = await hasher.hash(str(new_password))
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE keel_recovery_tokens SET consumed_at = %s WHERE token_hash = %s"
            " AND consumed_at IS NULL AND expires_at > %s RETURNING user_id, kind",
            (at, _hash(str(token)), at),
        )
        row = await cur.fetchone()
        if row is None:  # used by a concurrent request since peek
            raise LinkInvalid()
        user_id, kind = row
        # Every other outstanding link of this user dies with this one.
        await conn.execute(
            "UPDATE keel_recovery_tokens SET consumed_at = %s WHERE user_id = %s"
            " AND consumed_at IS NULL",
            (at, user_id),
        )
        await users.write_password(conn, user_id, password_hash, must_change=False)
        # A reset lifts the throttle's own lock (the owner has just proved control of the
        # mail) but never an administrator's lock: that one is recognisable because only the
        # throttle sets locked_until to exactly last failure + lock length.
        throttle = throttle or login.Throttle()
        await conn.execute(
            "UPDATE keel_users SET failed_login_count = 0, locked_until = CASE"
            " WHEN locked_until = last_failed_login_at + make_interval(secs => %s)"
            " THEN NULL ELSE locked_until END WHERE id = %s",
            (throttle.lock_for, user_id),
        )
        await ratelimit.clear(conn, throttle.fail_limit, user_id)
        actor_ctx = replace(ctx, actor_id=user_id, actor_email=pending.email)
        reason = "emergency_recovery" if kind == "emergency" else "password_reset"
        revoked = await sessions.revoke(conn, actor_ctx, reason=reason, user_id=user_id, now=at)
        await audit.record(
            conn,
            actor_ctx,
            events.password_reset_self_consume(
                user_id,
                pending.email,
                audit.fingerprint(str(token)),
                sessions_revoked=len(revoked),
                details={"kind": kind},
            ),
        )
        await _notify_changed(
            conn, actor_ctx, email=pending.email, site_name=policy.site_name, at=at
        )
    return int(user_id)


async def change_password(
    conn: Conn,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    user_id: int,
    session_id: int | None,
    old_password: object,
    new_password: object,
    confirm: object,
    policy: Policy,
    forced: bool = False,
    now: datetime | None = None,
    throttle: login.Throttle | None = None,
) -> None:
    """Signed-in change (REC-4) or the forced change (LOGIN-7); the other sessions end.

    Raises Invalid naming the field that is wrong. The forced change does not ask for the old
    password (it was typed a moment ago to sign in) but refuses to keep it."""
    account = await login.account_by_id(conn, user_id)
    if account is None:
        raise Invalid("your account could not be found")
    if not isinstance(new_password, str) or new_password != confirm:
        msg = "The two new passwords do not match; type the same password twice."
        raise Invalid(msg, fields={"confirm": msg})
    problem = policy.check(new_password, email=account.email)
    if problem:
        raise Invalid(problem, fields={"new_password": problem})
    if forced:
        same, _ = await hasher.verify(account.password_hash, new_password)
        if same:
            msg = "Choose a password different from the temporary one."
            raise Invalid(msg, fields={"new_password": msg})
    else:
        old = old_password if isinstance(old_password, str) else ""
        ok = await login.check_password(
            conn, ctx, hasher, user_id=user_id, password=old, now=now, during="password_change",
            throttle=throttle or login.Throttle(),
        )  # fmt: skip
        if not ok:
            msg = "The current password is not right."
            raise Invalid(msg, fields={"old_password": msg})
    password_hash = await hasher.hash(new_password)
    async with conn.transaction():
        await users.write_password(conn, user_id, password_hash, must_change=False)
        await sessions.revoke(
            conn, ctx, reason="password_changed", user_id=user_id, except_session_id=session_id,
            now=now,
        )  # fmt: skip
        event = (
            events.forced_password_change_completed(user_id, account.email)
            if forced
            else events.password_changed_self(user_id, account.email)
        )
        await audit.record(conn, ctx, event)
        if not forced:  # a forced change follows a temporary password the owner was just given
            await _notify_changed(
                conn, ctx, email=account.email, site_name=policy.site_name,
                at=now or datetime.now(UTC),
            )  # fmt: skip
