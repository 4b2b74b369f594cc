"""Break-glass recovery for when nobody can sign in: one transaction, one audit event each (R4-1).

Run by the machine's operator (`keel user reset-password|unlock|disable-mfa|promote|
emergency-access`), not by a signed-in user: the rank guards do not apply, the orphan guard
does (AUTHZ-3). Each operation writes exactly one `emergency_recovery` event carrying the
reason; the Context carries the OS actor and the argv without secrets (CLI-5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from app import audit
from app import audit_events as events
from app.authority import guards, mfa, users
from app.authority.roles import parse_role
from app.errors import Invalid, KeelError

Operation = Literal["reset-password", "unlock", "disable-mfa", "promote", "emergency-access"]
OPERATIONS: tuple[Operation, ...] = (
    "reset-password", "unlock", "disable-mfa", "promote", "emergency-access",
)  # fmt: skip
REASON_MIN, REASON_MAX = 8, 500
LINK_MINUTES = (1, 60)  # R4-1: the emergency link is valid 1–60 minutes, 15 by default


def check_reason(raw: object) -> str:
    """A reason that says something (≥ 8 characters), bounded, printable; it goes in the audit log."""
    value = raw.strip() if isinstance(raw, str) else ""
    if len(value) < REASON_MIN:
        raise Invalid(
            f"the reason must be at least {REASON_MIN} characters",
            fields={"reason": f"at least {REASON_MIN} characters"},
            why="every break-glass action is explained in the audit log",
            fix='say why in a few words, e.g. --reason "locked out after phone loss"',
        )
    if len(value) > REASON_MAX or any(not c.isprintable() for c in value):
        raise Invalid(
            f"the reason must be at most {REASON_MAX} printable characters",
            fields={"reason": "printable, at most 500 characters"},
            fix="shorten it and remove control characters",
        )
    return value


def check_minutes(raw: int) -> int:
    lo, hi = LINK_MINUTES
    if not lo <= raw <= hi:
        raise Invalid(
            f"the link lifetime must be {lo} to {hi} minutes, not {raw}",
            fields={"minutes": f"{lo}–{hi}"},
            fix="use --minutes 15 (the default) or another value in range",
        )
    return raw


@dataclass(frozen=True)
class Result:
    user: users.User
    link: str | None = None
    expires_at: datetime | None = None


async def _begin(conn: psycopg.AsyncConnection[Any], email: str) -> users.User:
    await guards.lock_authority(conn)
    return await users.get_by_email(conn, email, for_update=True)


async def _record(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    operation: Operation,
    user: users.User,
    reason: str,
    **details: Any,
) -> None:
    event = events.emergency_recovery(operation, user.id, user.email, reason, details=details)
    await audit.record(conn, ctx, event)


async def reset_password(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    *,
    email: str,
    reason: str,
    password_hash: str,
) -> Result:
    """A temporary password (hashed by the caller): must be changed at the next sign-in; the
    account is unlocked and every session ends (the password may have been known)."""
    reason = check_reason(reason)
    async with conn.transaction():
        user = await _begin(conn, email)
        await users.write_password(conn, user.id, password_hash, must_change=True)
        await users.write_unlock(conn, user.id)
        await _record(conn, ctx, "reset-password", user, reason, must_change_password=True)
        await users.revoke_sessions(conn, ctx, user.id, "emergency_recovery")
    return Result(await users.get(conn, user.id))


async def unlock(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, *, email: str, reason: str
) -> Result:
    reason = check_reason(reason)
    async with conn.transaction():
        user = await _begin(conn, email)
        await users.write_unlock(conn, user.id)
        was = user.locked_until.isoformat() if user.locked_until else None
        await _record(conn, ctx, "unlock", user, reason, locked_until_was=was)
    return Result(await users.get(conn, user.id))


async def disable_mfa(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, *, email: str, reason: str
) -> Result:
    """Clear the second factor (lost phone); sessions end, the next sign-in is password only."""
    reason = check_reason(reason)
    async with conn.transaction():
        user = await _begin(conn, email)
        await mfa.clear_enrolment(conn, user.id)  # the secret's nonce and every backup code
        await _record(conn, ctx, "disable-mfa", user, reason, mfa_was_enabled=user.mfa_enabled)
        await users.revoke_sessions(conn, ctx, user.id, "mfa_disabled_by_other")
    return Result(await users.get(conn, user.id))


async def promote(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    *,
    email: str,
    reason: str,
    role: str = "administrator",
) -> Result:
    """Give the role (administrator by default) and reactivate the account, so someone can
    sign in and administer again. Moving the last developer still trips the orphan guard.

    Any change of role or activation ends the user's sessions (AUTHZ-5), a promotion too:
    authority granted out of band starts with a fresh sign-in, never on a session that may
    not be the account holder's. Nothing changed (already that role, active): nothing ends."""
    reason = check_reason(reason)
    new_role = parse_role(role)
    async with conn.transaction():
        user = await _begin(conn, email)
        await guards.check_orphan(conn, user, new_role=new_role)
        await users.write_role(conn, user.id, new_role)
        await conn.execute(
            "UPDATE keel_users SET is_active = true, updated_at = now() WHERE id = %s", (user.id,)
        )
        await _record(
            conn, ctx, "promote", user, reason,
            changes={"role": {"from": user.role, "to": new_role},
                     "is_active": {"from": user.is_active, "to": True}},
        )  # fmt: skip
        if new_role != user.role:
            await users.revoke_sessions(conn, ctx, user.id, "role_changed")
        elif not user.is_active:
            await users.revoke_sessions(conn, ctx, user.id, "emergency_recovery")
    return Result(await users.get(conn, user.id))


async def emergency_access(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    *,
    email: str,
    reason: str,
    public_url: str,
    minutes: int = 15,
    now: datetime | None = None,
) -> Result:
    """A one-time link to choose a new password, valid `minutes` (R4-1), built from
    `public_url` only (REC-1). Only the token's hash is stored; the event holds a fingerprint."""
    from app.authority import recovery

    reason = check_reason(reason)
    minutes = check_minutes(minutes)
    if not public_url:
        raise KeelError(
            "public_url is not set, so no link can be built",
            why="links are built from public_url only, never guessed from the host",
            fix="set public_url (KEEL_PUBLIC_URL or public_url in keel.toml) to the site's address",
        )
    at = now or datetime.now(UTC)
    async with conn.transaction():
        user = await _begin(conn, email)
        token = await recovery.issue_token(
            conn, user_id=user.id, ttl_seconds=minutes * 60, kind="emergency", now=at
        )
        await _record(
            conn, ctx, "emergency-access", user, reason,
            token_fingerprint=audit.fingerprint(token), valid_minutes=minutes,
        )  # fmt: skip
    link = f"{public_url.rstrip('/')}/reset/{token}"
    return Result(user, link=link, expires_at=at + timedelta(minutes=minutes))
