"""AUTHZ-4, AUTHZ-6, INV-3: groups, members, permissions, and the default groups seeded once."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import groups, permissions
from app.config import Config
from app.errors import Conflict, Invalid, NotFound
from tests.authority.conftest import make_user

Conn = psycopg.AsyncConnection[Any]


async def events(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT event_type FROM keel_audit ORDER BY id")
    return [r[0] for r in await cur.fetchall()]


async def test_default_groups_are_seeded_once_with_their_permissions(
    conn: Conn, ctx: Context
) -> None:
    assert await groups.ensure_default_groups(conn, ctx)
    by_name = {g.name: g for g in await groups.list_groups(conn)}
    assert sorted(by_name) == ["administrator", "editor", "viewer"]
    declared = {n for n, _ in permissions.all_permissions()}
    admin_perms = set(await groups.group_permissions(conn, by_name["administrator"].id))
    editor = set(await groups.group_permissions(conn, by_name["editor"].id))
    viewer = set(await groups.group_permissions(conn, by_name["viewer"].id))
    assert admin_perms == declared
    assert "bookings.change" in editor and "bookings.delete" not in editor
    assert "bookings.confirm" not in editor  # custom actions are not "view/add/change"
    assert viewer == {n for n in declared if n.endswith(".view")}
    assert not await groups.ensure_default_groups(conn, ctx)  # second start: nothing
    assert (await events(conn)).count("group_created") == 3


async def test_deleted_default_groups_are_never_recreated(conn: Conn, ctx: Context) -> None:
    """AUTHZ-6: "never re-created over the operator's choices"."""
    await groups.ensure_default_groups(conn, ctx)
    for g in await groups.list_groups(conn):
        await groups.delete(conn, ctx, None, g.id)
    assert await groups.list_groups(conn) == []
    assert not await groups.ensure_default_groups(conn, ctx)
    assert await groups.list_groups(conn) == []


async def test_an_operator_with_groups_already_gets_no_defaults(conn: Conn, ctx: Context) -> None:
    await groups.create(conn, ctx, None, "dispatch")
    assert not await groups.ensure_default_groups(conn, ctx)
    await groups.delete(conn, ctx, None, "dispatch")
    assert not await groups.ensure_default_groups(conn, ctx)  # the decision was made once
    assert await groups.list_groups(conn) == []


async def test_serve_seeds_the_default_groups_and_holds_one_hasher(
    client: Any, config: Config
) -> None:
    from app.authority.passwords import Hasher
    from app.authority.setup import HASHER, POLICY

    async with await psycopg.AsyncConnection.connect(config.database_url) as conn:
        names = [g.name for g in await groups.list_groups(conn)]
    assert names == ["administrator", "editor", "viewer"]
    app = client.server.app
    assert isinstance(app[HASHER], Hasher) and app[POLICY].min_length == config.password_min_length


async def test_create_grant_revoke_and_delete_are_each_audited(conn: Conn, ctx: Context) -> None:
    group = await groups.create(
        conn, ctx, None, "Support Team", description="Front desk", grant=["bookings.view"]
    )
    assert (group.name, group.description, group.permissions) == ("Support Team", "Front desk", 1)
    assert await groups.grant(
        conn, ctx, None, "support team", ["bookings.view", "bookings.add"]
    ) == ["bookings.add"]
    assert await groups.grant(conn, ctx, None, group.id, ["bookings.add"]) == []  # no event
    assert await groups.revoke(conn, ctx, None, group.id, ["bookings.view", "customers.view"]) == [
        "bookings.view"
    ]
    user_id, _ = await make_user(conn, role="staff", email="member@example.com")
    assert await groups.add_member(conn, ctx, None, group.id, user_id)
    assert not await groups.add_member(conn, ctx, None, group.id, user_id)
    assert await groups.members(conn, group.id) == [(user_id, "member@example.com", "staff")]
    await groups.delete(conn, ctx, None, group.id)
    assert await events(conn) == [
        "group_created", "permission_granted", "permission_granted", "permission_revoked",
        "group_updated", "group_deleted",
    ]  # fmt: skip
    with pytest.raises(NotFound):
        await groups.get(conn, group.id)


async def test_names_are_unique_ignoring_case(conn: Conn, ctx: Context) -> None:
    await groups.create(conn, ctx, None, "Editors")
    with pytest.raises(Conflict, match="already exists"):
        await groups.create(conn, ctx, None, "editors")


@pytest.mark.parametrize(
    "name",
    ["", " ", "-leading-dash", "x" * 81, "semi;colon", "<b>bold</b>", "tab\tname", "a'; DROP--"],
)
async def test_bad_group_names_are_refused(conn: Conn, ctx: Context, name: str) -> None:
    with pytest.raises(Invalid, match="not a usable group name"):
        await groups.create(conn, ctx, None, name)
    assert await groups.list_groups(conn) == []


async def test_unknown_group_and_unknown_permission(conn: Conn, ctx: Context) -> None:
    with pytest.raises(NotFound, match="there is no group 'ghosts'") as err:
        await groups.grant(conn, ctx, None, "ghosts", ["bookings.view"])
    assert "keel group list" in err.value.fix
    await groups.create(conn, ctx, None, "real")
    with pytest.raises(Invalid, match="unknown permission"):
        await groups.grant(conn, ctx, None, "real", ["bookings.teleport"])
    with pytest.raises(Invalid, match="at most 500"):
        await groups.create(conn, ctx, None, "described", description="d" * 501)
