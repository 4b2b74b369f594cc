"""The re-authentication wall: password again → a rotated, elevated session (REAUTH-1/2, SESS-5)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import psycopg

from app import audit
from app import audit_events as events
from app.authority import login, mfa, sessions
from app.authority.passwords import Hasher

Conn = psycopg.AsyncConnection[Any]
DEFAULT_RETURN = "/admin/"
# REAUTH-2: only our own admin and account pages are places to go back to.
_LOCAL = re.compile(r"^/(admin/|account(/|$|\?))")
_MAX_LEN = 2000


def safe_return_to(value: object, default: str = DEFAULT_RETURN) -> str:
    """`value` when it is a local admin or account path, else `default` (REAUTH-2).

    Refused: anything not a string, too long, absolute URLs, scheme-relative `//host`,
    backslashes, `..` segments and control characters, also when percent-encoded."""
    if not isinstance(value, str) or not value or len(value) > _MAX_LEN:
        return default
    decoded = value
    for _ in range(3):  # percent-encoding may be nested: %252e → %2e → .
        decoded = unquote(decoded)
    for text in (value, decoded):
        if any(ord(c) < 32 or ord(c) == 127 for c in text) or "\\" in text:
            return default
        if text.startswith("//") or ".." in text or not _LOCAL.match(text):
            return default
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return default
    return value


async def elevate(
    conn: Conn,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    current: sessions.Session,
    password: str,
    window: float,
    now: datetime | None = None,
    throttle: login.Throttle | None = None,
    code: str = "",
    ring: mfa.KeyRing | None = None,
) -> tuple[str, sessions.Session] | None:
    """Check the password (throttled like a sign-in) and rotate to an elevated session lasting
    `window` seconds (REAUTH-1); None when the password is wrong or the account locked.

    With `ring` (the second factor is in use on this server) a user who set one up must also
    give a current code or an unused backup code."""
    at = now or datetime.now(UTC)
    ok = await login.check_password(
        conn,
        ctx,
        hasher,
        user_id=current.user_id,
        password=password,
        now=at,
        throttle=throttle or login.Throttle(),
    )
    if not ok:
        return None
    method: Literal["password", "password+mfa"] = "password"
    account = await login.account_by_id(conn, current.user_id)
    if ring is not None and account is not None and account.mfa_enabled:
        kind = await mfa.check_code(
            conn, ctx, ring, user_id=current.user_id, code=code, now=at,
            throttle=throttle or login.Throttle(), during="reauth",
        )  # fmt: skip
        if kind is None:
            return None
        method = "password+mfa"
    # mfa_verified stays mfa_verified: the second factor was proven for this sign-in (SESS-6).
    trust = "mfa_verified" if current.trust == "mfa_verified" else "elevated"
    async with conn.transaction():
        token, new = await sessions.rotate(
            conn, ctx, current, trust=trust, elevated_until=at + timedelta(seconds=window), now=at,
            ip=ctx.ip, user_agent=ctx.user_agent,
        )  # fmt: skip
        email = ctx.actor_email or ""
        await audit.record(
            conn,
            replace(ctx, session_id=new.id),
            events.reauth_succeeded(
                current.user_id,
                email,
                method=method,
                details={"session_id": new.id, "rotated_from": current.id},
            ),
        )
    return token, new
