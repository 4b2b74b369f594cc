"""Re-authentication: safe return paths and the rotated, elevated session (REAUTH-1/2, SESS-5/6)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.audit import Context
from app.authority import reauth, sessions
from tests.authority.conftest import make_user

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "/admin/",
        "/admin/users/3/",
        "/admin/bookings/?q=x&sort=-id",
        "/account",
        "/account/sessions",
        "/account?tab=1",
    ],
)
def test_local_admin_and_account_paths_are_kept(value: str) -> None:
    assert reauth.safe_return_to(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "//evil.example.com/admin/",
        "https://evil.example.com/admin/",
        "http:/admin/",
        "javascript:alert(1)",
        "/admin/\\evil",
        "/\\evil.example.com",
        "/admin/../login",
        "/admin/%2e%2e/login",
        "/admin/%252e%252e/x",
        "/admin/\r\nSet-Cookie: x=1",
        "/admin/\x00",
        "/admin/%0d%0a",
        "/admin/\x7f",
        "/login",
        "/reset/abc",
        "/accounts-of-others",
        "/",
        "",
        "admin/",
        "/admin/" + "x" * 3000,
        None,
        42,
        ["/admin/"],
    ],
)
def test_everything_else_falls_back_to_the_dashboard(value: object) -> None:
    """REAUTH-2: `//host`, backslashes, `..`, control characters, absolute URLs, non-strings."""
    assert reauth.safe_return_to(value) == "/admin/"


async def test_right_password_rotates_to_an_elevated_session(conn, ctx: Context, hasher) -> None:
    """REAUTH-1: elevation lasts the window and comes with a new token (SESS-5)."""
    uid, pw = await make_user(conn, email="ann@example.com")
    old_token, old = await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    me = replace(ctx, actor_id=uid, actor_email="ann@example.com", session_id=old.id)
    assert (
        await reauth.elevate(conn, me, hasher, current=old, password="nope", window=900, now=T0)
        is None
    )
    result = await reauth.elevate(conn, me, hasher, current=old, password=pw, window=900, now=T0)
    assert result is not None
    token, new = result
    assert token != old_token and new.parent_id == old.id
    assert new.trust == "elevated" and new.elevated_until == T0 + timedelta(seconds=900)
    assert await sessions.lookup(conn, old_token, now=T0, idle=1800) is None
    cur = await conn.execute(
        "SELECT session_id, metadata->>'rotated_from' FROM keel_audit"
        " WHERE event_type = 'reauth_succeeded'"
    )
    assert await cur.fetchone() == (new.id, str(old.id))
    cur = await conn.execute(
        "SELECT metadata->>'during' FROM keel_audit WHERE event_type = 'login_failed'"
    )
    assert (await cur.fetchone())[0] == "reauth"


async def test_a_revoked_session_cannot_be_elevated(conn, ctx: Context, hasher) -> None:
    uid, pw = await make_user(conn, email="bo@example.com")
    _, old = await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    await sessions.revoke(conn, ctx, reason="administrative_revoke", session_id=old.id, now=T0)
    with pytest.raises(LookupError):
        await reauth.elevate(conn, ctx, hasher, current=old, password=pw, window=900, now=T0)
