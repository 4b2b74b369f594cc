"""Administrator changes that span tables are one service call each, all or nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import accounts, groups, permissions, sessions, users
from app.authority.principal import Principal
from app.errors import NotFound, PermissionDenied
from tests.authority.conftest import context_for, make_user


async def _audit_count(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT count(*) FROM keel_audit")).fetchone()
    assert row is not None
    return int(row[0])


async def test_save_user_applies_the_whole_form_in_one_call(
    conn: psycopg.AsyncConnection[Any], ctx: Context, admin: Principal, secret_key: str
) -> None:
    await groups.ensure_default_groups(conn, ctx)
    user_id, _ = await make_user(conn, role="staff", email="sam@example.com")
    wanted = accounts.UserEdit(
        profile={"email": "sam@example.com", "full_name": "Sam Field"},
        role="supervisor",
        is_active=True,
        groups=["editor"],
        permissions=["bookings.view"],
    )
    actor_ctx = context_for(secret_key, admin)
    assert await accounts.save_user(conn, actor_ctx, admin, user_id, wanted)
    user = await users.get(conn, user_id)
    assert (user.full_name, user.role) == ("Sam Field", "supervisor")
    assert await users.group_names(conn, user_id) == ["editor"]
    assert await permissions.direct_permissions(conn, user_id) == ["bookings.view"]
    # The same form again changes nothing and records nothing.
    before = await _audit_count(conn)
    assert not await accounts.save_user(conn, actor_ctx, admin, user_id, wanted)
    assert await _audit_count(conn) == before


async def test_a_refused_step_rolls_back_the_steps_before_it(
    conn: psycopg.AsyncConnection[Any], ctx: Context, admin: Principal, secret_key: str
) -> None:
    user_id, _ = await make_user(conn, role="staff", email="kim@example.com")
    before = await _audit_count(conn)
    # The profile change comes first and would pass; the role above the actor's own is refused.
    wanted = accounts.UserEdit(
        profile={"email": "kim@example.com", "full_name": "Changed"},
        role="developer",
        is_active=True,
        groups=[],
        permissions=[],
    )
    with pytest.raises(PermissionDenied):
        await accounts.save_user(conn, context_for(secret_key, admin), admin, user_id, wanted)
    assert (await users.get(conn, user_id)).full_name == "Test Staff"
    assert await _audit_count(conn) == before


async def test_end_sessions_refuses_a_session_of_someone_else(
    conn: psycopg.AsyncConnection[Any], ctx: Context, admin: Principal, secret_key: str
) -> None:
    alice, _ = await make_user(conn, role="staff")
    bob, _ = await make_user(conn, role="staff")
    _token, bobs = await sessions.create(conn, user_id=bob, absolute=86400)
    actor_ctx = context_for(secret_key, admin)
    with pytest.raises(NotFound):
        await accounts.end_sessions(conn, actor_ctx, admin, alice, reason="x", session_id=bobs.id)
    ended = await accounts.end_sessions(conn, actor_ctx, admin, bob, reason="left the company")
    assert ended == [bobs.id]
