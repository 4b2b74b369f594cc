"""R4-1 break-glass services called directly: role changes end sessions like every other (AUTHZ-5).

The command-line behaviour (banner, TTY rule, exit codes) is in test_cli_breakglass.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import breakglass, sessions
from tests.authority.conftest import make_user

Conn = psycopg.AsyncConnection[Any]
REASON = "nobody can sign in after the outage"


async def open_session(conn: Conn, user_id: int) -> str:
    token, _sess = await sessions.create(conn, user_id=user_id, absolute=3600)
    return token


async def revoked_reasons(conn: Conn, user_id: int) -> list[str | None]:
    cur = await conn.execute(
        "SELECT revoked_reason FROM keel_sessions WHERE user_id = %s ORDER BY id", (user_id,)
    )
    return [r[0] for r in await cur.fetchall()]


async def event_types(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT event_type FROM keel_audit ORDER BY id")
    return [r[0] for r in await cur.fetchall()]


@pytest.mark.parametrize(
    ("before", "after"),
    [("administrator", "staff"), ("supervisor", "user"), ("staff", "administrator")],
)
async def test_promote_to_another_role_ends_the_users_sessions(
    conn: Conn, ctx: Context, before: str, after: str
) -> None:
    """A demotion through break-glass ends sessions like `users.set_role` (AUTHZ-5); so does a
    promotion: authority granted out of band starts with a fresh sign-in."""
    await make_user(conn, role="administrator", email="other-admin@example.com")
    uid, _ = await make_user(conn, role=before, email="target@example.com")
    token = await open_session(conn, uid)
    await open_session(conn, uid)
    result = await breakglass.promote(
        conn, ctx, email="target@example.com", reason=REASON, role=after
    )
    assert result.user.role == after
    assert await revoked_reasons(conn, uid) == ["role_changed", "role_changed"]
    assert await sessions.lookup(conn, token, idle=1800) is None  # refused on the next request
    types = await event_types(conn)
    assert types.count("emergency_recovery") == 1  # R4-1: exactly one
    assert "sessions_revoked_by_other" in types


async def test_promote_reactivating_an_account_leaves_no_old_session_alive(
    conn: Conn, ctx: Context
) -> None:
    """Sessions of an account deactivated behind the service's back would come back to life on
    reactivation; break-glass ends them."""
    uid, _ = await make_user(conn, role="administrator", email="target@example.com")
    token = await open_session(conn, uid)
    await conn.execute("UPDATE keel_users SET is_active = false WHERE id = %s", (uid,))
    await breakglass.promote(conn, ctx, email="target@example.com", reason=REASON)
    assert await revoked_reasons(conn, uid) == ["emergency_recovery"]
    assert await sessions.lookup(conn, token, idle=1800) is None


async def test_promote_that_changes_nothing_keeps_sessions(conn: Conn, ctx: Context) -> None:
    uid, _ = await make_user(conn, role="administrator", email="target@example.com")
    token = await open_session(conn, uid)
    await breakglass.promote(conn, ctx, email="target@example.com", reason=REASON)
    assert await revoked_reasons(conn, uid) == [None]
    assert await sessions.lookup(conn, token, idle=1800) is not None
    assert await event_types(conn) == ["emergency_recovery"]
