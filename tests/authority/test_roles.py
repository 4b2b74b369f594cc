"""AUTHZ-2..5: the role ladder, the four authority guards in order, permission checks, no cache."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import groups, guards, permissions, roles, users
from app.authority.principal import Principal
from app.errors import Invalid, PermissionDenied
from tests.authority.conftest import context_for, make_user, principal_of

Conn = psycopg.AsyncConnection[Any]


async def actor(conn: Conn, role: str, email: str | None = None) -> Principal:
    user_id, _ = await make_user(conn, role=role, email=email)
    return await principal_of(conn, user_id)


async def audit_count(conn: Conn) -> int:
    return int((await (await conn.execute("SELECT count(*) FROM keel_audit")).fetchone())[0])  # type: ignore[index]


# ---- guard 1: self ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"active": False}, "You cannot deactivate your own account."),
        ({"role": "staff"}, "You cannot lower your own role (from administrator to staff)."),
        ({"delete": True}, "You cannot delete your own account."),
    ],
)
async def test_guard_1_no_self_deactivation_demotion_or_deletion(
    conn: Conn, secret_key: str, change: dict[str, Any], message: str
) -> None:
    me = await actor(conn, "administrator")
    await actor(conn, "administrator")  # another admin: the orphan guard is not what stops it
    ctx = context_for(secret_key, me)
    with pytest.raises(PermissionDenied) as err:
        if "active" in change:
            await users.set_active(conn, ctx, me, me.user_id, False)
        elif "role" in change:
            await users.set_role(conn, ctx, me, me.user_id, change["role"])
        else:
            await users.delete(conn, ctx, me, me.user_id)
    assert err.value.problem == message and err.value.http_status == 403
    assert (await users.get(conn, me.user_id)).role == "administrator"
    assert await audit_count(conn) == 0


# ---- guard 2: rank ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor_role", "target_role"),
    [
        ("administrator", "administrator"),
        ("administrator", "developer"),
        ("developer", "developer"),
    ],
)
async def test_guard_2_no_action_on_equal_or_higher_rank(
    conn: Conn, secret_key: str, actor_role: str, target_role: str
) -> None:
    me = await actor(conn, actor_role)
    target_id, _ = await make_user(conn, role=target_role, email="peer@example.com")
    await make_user(conn, role=target_role)  # keep the orphan guard out of the way
    with pytest.raises(PermissionDenied) as err:
        await users.set_active(conn, context_for(secret_key, me), me, target_id, False)
    assert err.value.problem == (
        f"You cannot change peer@example.com: their role ({target_role}) is not below yours "
        f"({actor_role})."
    )
    assert err.value.missing == f"a role above {target_role}"


async def test_only_developers_act_on_administrators(conn: Conn, secret_key: str) -> None:
    """AUTHZ-2: a developer outranks administrators and may demote one."""
    dev = await actor(conn, "developer")
    target_id, _ = await make_user(conn, role="administrator")
    await make_user(conn, role="administrator")
    user = await users.set_role(conn, context_for(secret_key, dev), dev, target_id, "staff")
    assert user.role == "staff"


async def test_rank_guard_covers_grants_and_group_membership(conn: Conn, secret_key: str) -> None:
    """Changing what a user may do is a change of that user (AUTHZ-3)."""
    me = await actor(conn, "administrator")
    peer_id, _ = await make_user(conn, role="administrator")
    await groups.create(conn, context_for(secret_key, me), me, "ops")
    ctx = context_for(secret_key, me)
    with pytest.raises(PermissionDenied, match="not below yours"):
        await users.grant(conn, ctx, me, peer_id, ["bookings.view"])
    with pytest.raises(PermissionDenied, match="not below yours"):
        await groups.add_member(conn, ctx, me, "ops", peer_id)
    with pytest.raises(PermissionDenied, match="your own"):
        await groups.add_member(conn, ctx, me, "ops", me.user_id)


# ---- guard 3: ceiling ---------------------------------------------------------------------


async def test_guard_3_no_assigning_a_role_above_ones_own(conn: Conn, secret_key: str) -> None:
    me = await actor(conn, "administrator")
    target_id, _ = await make_user(conn, role="staff")
    with pytest.raises(PermissionDenied) as err:
        await users.set_role(conn, context_for(secret_key, me), me, target_id, "developer")
    assert err.value.problem == (
        "You cannot assign the role developer: it is above your own (administrator)."
    )
    assert err.value.missing == "role developer"
    # Equal to one's own is allowed.
    user = await users.set_role(conn, context_for(secret_key, me), me, target_id, "administrator")
    assert user.role == "administrator"


async def test_creating_a_user_above_ones_role_is_refused(conn: Conn, secret_key: str) -> None:
    me = await actor(conn, "administrator")
    with pytest.raises(PermissionDenied, match="above your own"):
        await users.create(
            conn, context_for(secret_key, me), me, email="x@example.com", role="developer"
        )


# ---- guard 4: orphans ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["administrator", "developer"])
async def test_guard_4_the_last_active_holder_stays(conn: Conn, ctx: Context, role: str) -> None:
    """The operator (CLI, actor None) skips guards 1–3 but never the orphan guard."""
    last_id, _ = await make_user(conn, role=role, email="last@example.com")
    await make_user(conn, role=role, active=False)  # inactive holders do not count
    for attempt in (
        users.set_role(conn, ctx, None, last_id, "staff"),
        users.set_active(conn, ctx, None, last_id, False),
        users.delete(conn, ctx, None, last_id),
    ):
        with pytest.raises(PermissionDenied) as err:
            await attempt
        assert f"last@example.com is the last active {role}" in err.value.problem
        assert err.value.missing == f"another active {role}"
    assert (await users.get(conn, last_id)).is_active


async def test_guards_apply_in_spec_order(conn: Conn, secret_key: str) -> None:
    """A self-demotion of the last administrator reports guard 1, not guard 4."""
    me = await actor(conn, "administrator")
    with pytest.raises(PermissionDenied, match="lower your own role"):
        await users.set_role(conn, context_for(secret_key, me), me, me.user_id, "staff")


async def test_two_concurrent_demotions_cannot_both_pass(database_url: str, ctx: Context) -> None:
    """AUTHZ-3: the count is taken under row locks, so one of two racing demotions is refused."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as setup:
        a_id, _ = await make_user(setup, role="administrator")
        b_id, _ = await make_user(setup, role="administrator")
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c1,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c2,
    ):
        tx1 = c1.transaction()
        await tx1.__aenter__()
        await users.set_role(c1, ctx, None, a_id, "staff")  # holds its locks, not committed
        second = asyncio.create_task(users.set_role(c2, ctx, None, b_id, "staff"))
        await asyncio.sleep(0.3)
        assert not second.done(), "the second demotion must wait for the first"
        await tx1.__aexit__(None, None, None)  # commit
        with pytest.raises(PermissionDenied, match="last active administrator"):
            await second
        roles_now = await (
            await c1.execute(
                "SELECT role FROM keel_users WHERE id IN (%s, %s) ORDER BY id", (a_id, b_id)
            )
        ).fetchall()
    assert roles_now == [("staff",), ("administrator",)]


async def test_guards_refuse_outside_a_transaction(conn: Conn) -> None:
    target_id, _ = await make_user(conn, role="administrator")
    target = await users.get(conn, target_id)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        await guards.check_orphan(conn, target, deactivate=True)


# ---- who manages users at all ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "staff", "supervisor"])
async def test_below_administrator_nobody_manages_users(
    conn: Conn, secret_key: str, role: str
) -> None:
    me = await actor(conn, role)
    target_id, _ = await make_user(conn, role="user")
    with pytest.raises(PermissionDenied) as err:
        await users.set_active(conn, context_for(secret_key, me), me, target_id, False)
    assert err.value.missing == "role administrator"


# ---- permission checks (AUTHZ-2, AUTHZ-4, AUTHZ-5) ----------------------------------------


async def test_can_follows_the_ladder_and_grants(conn: Conn, ctx: Context) -> None:
    user = await actor(conn, "user")
    staff = await actor(conn, "staff")
    admin = await actor(conn, "administrator")
    dev = await actor(conn, "developer")
    assert not await roles.can(conn, None, "bookings.view")
    assert not await roles.can(conn, staff, "bookings.view")
    assert await roles.can(conn, admin, "bookings.delete")  # bypass
    assert await roles.can(conn, dev, "anything.at_all")
    await users.grant(conn, ctx, None, staff.user_id, ["bookings.view"])
    assert await roles.can(conn, staff, "bookings.view")  # the very next check sees it
    await users.grant(conn, ctx, None, user.user_id, ["bookings.view"])
    assert not await roles.can(conn, user, "bookings.view")  # `user` never enters the admin
    await users.revoke(conn, ctx, None, staff.user_id, ["bookings.view"])
    assert not await roles.can(conn, staff, "bookings.view")


async def test_ensure_names_what_is_missing(conn: Conn) -> None:
    """AUTHZ-8: the 403 names the missing permission or role."""
    staff = await actor(conn, "staff")
    with pytest.raises(PermissionDenied) as err:
        await roles.ensure(conn, staff, "bookings.change")
    assert err.value.missing == "bookings.change" and "bookings.change" in err.value.problem
    user = await actor(conn, "user")
    with pytest.raises(PermissionDenied) as err:
        await roles.ensure(conn, user, "bookings.view")
    assert err.value.missing == "role staff"


async def test_deactivated_users_hold_no_permission(conn: Conn, ctx: Context) -> None:
    staff = await actor(conn, "staff")
    await users.grant(conn, ctx, None, staff.user_id, ["bookings.view"])
    await users.set_active(conn, ctx, None, staff.user_id, False)
    assert not await roles.can(conn, staff, "bookings.view")


async def test_effective_permissions_name_their_sources(conn: Conn, ctx: Context) -> None:
    """AUTHZ-4, AUTHZ-7: direct ∪ groups', each with "direct" or "via <group>"."""
    staff = await actor(conn, "staff")
    await groups.create(conn, ctx, None, "desk", grant=["bookings.view", "bookings.change"])
    await groups.create(conn, ctx, None, "field", grant=["bookings.view", "technicians.view"])
    await groups.add_member(conn, ctx, None, "desk", staff.user_id)
    await groups.add_member(conn, ctx, None, "field", staff.user_id)
    await users.grant(conn, ctx, None, staff.user_id, ["bookings.view", "customers.add"])
    assert await permissions.effective_permissions(conn, staff.user_id) == {
        "bookings.change": ["via desk"],
        "bookings.view": ["direct", "via desk", "via field"],
        "customers.add": ["direct"],
        "technicians.view": ["via field"],
    }
    await groups.remove_member(conn, ctx, None, "field", staff.user_id)
    assert "technicians.view" not in await permissions.effective_permissions(conn, staff.user_id)


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["bookings.fly"], "unknown permission bookings.fly"),
        (["nope"], "is not a permission name"),
        (["x'; DROP TABLE keel_users;--"], "is not a permission name"),
        (["<b>bold</b>.view"], "is not a permission name"),
        ([], "no permission given"),
    ],
)
async def test_unknown_or_malformed_permissions_are_refused(
    conn: Conn, ctx: Context, names: list[str], words: str
) -> None:
    staff = await actor(conn, "staff")
    with pytest.raises(Invalid, match=words.replace("(", r"\(")):
        await users.grant(conn, ctx, None, staff.user_id, names)
    assert await permissions.effective_permissions(conn, staff.user_id) == {}


def test_every_declared_permission_is_resource_dot_action() -> None:
    names = [n for n, _ in permissions.all_permissions()]
    assert "bookings.view" in names and "bookings.confirm" in names
    assert all(permissions.NAME.match(n) for n in names)


def test_parse_role_lists_the_ladder() -> None:
    assert roles.parse_role(" Staff ") == "staff"
    with pytest.raises(Invalid) as err:
        roles.parse_role("root\x00")
    assert "user, staff, supervisor, administrator, developer" in err.value.fix
