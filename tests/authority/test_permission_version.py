"""The permission version (migration 0014) and the names kept against it (AUTHZ-4, AUTHZ-5).

Each process keeps a user's effective permission names with the version they were read at;
every request reads the version with its session. So the whole guarantee rests on one fact:
no change to who holds what can leave the version as it was. These tests make every kind of
change, through the services and behind their back, and check the version and the next
lookup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app import audit
from app.authority import permissions, sessions
from app.db import migrate as migrations
from tests.authority.conftest import make_user
from tests.authority.test_sessions import ABSOLUTE, IDLE, T0

pytestmark = pytest.mark.asyncio
Conn = psycopg.AsyncConnection[Any]


async def version(conn: Conn) -> object:
    return (await (await conn.execute("SELECT version FROM keel_authz_generation")).fetchone())[0]


async def group(conn: Conn, name: str, *perms: str) -> int:
    cur = await conn.execute("INSERT INTO keel_groups (name) VALUES (%s) RETURNING id", (name,))
    (gid,) = await cur.fetchone()
    for perm in perms:
        await conn.execute(
            "INSERT INTO keel_group_permissions (group_id, permission) VALUES (%s, %s)",
            (gid, perm),
        )
    return int(gid)


async def test_every_kind_of_change_replaces_the_version(conn: Conn) -> None:
    uid, _ = await make_user(conn, password=None)
    other, _ = await make_user(conn, password=None)
    gid = await group(conn, "version-a", "bookings.view")
    changes: list[tuple[str, str, tuple[Any, ...]]] = [
        ("direct grant", "INSERT INTO keel_user_permissions VALUES (%s, 'bookings.view')", (uid,)),
        ("renamed grant", "UPDATE keel_user_permissions SET permission = 'bookings.change'"
         " WHERE user_id = %s", (uid,)),
        ("direct revoke", "DELETE FROM keel_user_permissions WHERE user_id = %s", (uid,)),
        ("joined a group", "INSERT INTO keel_group_members (group_id, user_id) VALUES (%s, %s)",
         (gid, uid)),
        ("group gained one", "INSERT INTO keel_group_permissions VALUES (%s, 'customers.view')",
         (gid,)),
        ("group lost one", "DELETE FROM keel_group_permissions WHERE group_id = %s"
         " AND permission = 'customers.view'", (gid,)),
        ("left the group", "DELETE FROM keel_group_members WHERE user_id = %s", (uid,)),
        ("moved groups", "INSERT INTO keel_group_members (group_id, user_id) VALUES (%s, %s)",
         (gid, other)),
        ("group deleted (cascade)", "DELETE FROM keel_groups WHERE id = %s", (gid,)),
        ("members emptied", "TRUNCATE keel_group_members", ()),
    ]  # fmt: skip
    for what, statement, params in changes:
        before = await version(conn)
        await conn.execute(statement, params)  # type: ignore[arg-type]
        assert await version(conn) != before, what
    await conn.execute("INSERT INTO keel_user_permissions VALUES (%s, 'bookings.view')", (other,))
    before = await version(conn)
    await conn.execute("DELETE FROM keel_users WHERE id = %s", (other,))  # its grants cascade
    assert await version(conn) != before, "user deleted (cascade)"
    # A change rolled back leaves it as it was: nothing changed.
    before = await version(conn)
    async with conn.transaction(force_rollback=True):
        await conn.execute("INSERT INTO keel_user_permissions VALUES (%s, 'x.y')", (uid,))
    assert await version(conn) == before


async def test_the_names_are_kept_until_any_change_and_read_again_after_it(
    conn: Conn, database_url: str
) -> None:
    uid, _ = await make_user(conn, password=None)
    token, _s = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    gid = await group(conn, "version-b", "bookings.view")

    async def names() -> frozenset[str]:
        found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
        assert found is not None
        return found[2]

    first = await names()
    assert first == frozenset()
    assert await names() is first  # kept: no query for the names

    # Changes made on another connection, as another host or `psql` would make them.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as there:
        steps: list[tuple[Callable[[], Awaitable[Any]], frozenset[str]]] = [
            (lambda: there.execute(
                "INSERT INTO keel_group_members (group_id, user_id) VALUES (%s, %s)", (gid, uid)
            ), frozenset({"bookings.view"})),
            (lambda: there.execute(
                "INSERT INTO keel_user_permissions VALUES (%s, 'customers.view')", (uid,)
            ), frozenset({"bookings.view", "customers.view"})),
            (lambda: there.execute(
                "DELETE FROM keel_group_permissions WHERE group_id = %s", (gid,)
            ), frozenset({"customers.view"})),
            # Someone else's change replaces the version too: the names are read again, the same.
            (lambda: group(there, "version-c", "customers.change"),
             frozenset({"customers.view"})),
        ]  # fmt: skip
        for change, expected in steps:
            before = await version(conn)
            await change()
            assert await version(conn) != before
            assert await names() == expected
    # The kept set is bounded.
    assert len(permissions._NAMES) <= permissions.NAMES_KEPT


async def test_the_trigger_takes_the_audit_chain_lock_first() -> None:
    """The migration names the audit chain's lock by number: it must be audit.CHAIN_LOCK."""
    text = (
        Path(migrations.__file__).parent / "migrations" / "0014_authz_generation.sql"
    ).read_text()
    assert f"pg_advisory_xact_lock({audit.CHAIN_LOCK})" in text


async def test_auditing_first_and_changing_first_do_not_deadlock(database_url: str) -> None:
    """Deleting a user audits (revoking its sessions) before its grants go; granting changes
    first and audits after. Both orders at once: each waits its turn, neither deadlocks."""
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as setup,
        await psycopg.AsyncConnection.connect(database_url) as first,
        await psycopg.AsyncConnection.connect(database_url) as second,
    ):
        uid, _ = await make_user(setup, password=None)
        other, _ = await make_user(setup, password=None)
        # `first` audits, as the revocation writer would, then changes a grant.
        await first.execute("SELECT pg_advisory_xact_lock(%s)", (audit.CHAIN_LOCK,))
        # `second` changes a grant, then audits: its change waits for `first`'s audit lock.
        changing = asyncio.ensure_future(
            second.execute(
                "INSERT INTO keel_user_permissions VALUES (%s, 'bookings.view')", (other,)
            )
        )
        await asyncio.sleep(0.3)
        assert not changing.done()
        await first.execute(
            "INSERT INTO keel_user_permissions VALUES (%s, 'bookings.view')", (uid,)
        )
        await first.commit()
        await asyncio.wait_for(changing, 5)
        await second.execute("SELECT pg_advisory_xact_lock(%s)", (audit.CHAIN_LOCK,))
        await second.commit()


async def test_without_a_version_the_names_are_read_every_time(conn: Conn) -> None:
    """The version's row deleted by hand: nothing is kept against a missing version."""
    uid, _ = await make_user(conn, password=None)
    token, _s = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    await conn.execute("DELETE FROM keel_authz_generation")
    try:
        found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
        assert found is not None and found[2] == frozenset()
        await conn.execute("INSERT INTO keel_user_permissions VALUES (%s, 'bookings.view')", (uid,))
        found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
        assert found is not None and found[2] == {"bookings.view"}
    finally:
        await conn.execute("INSERT INTO keel_authz_generation (only_row) VALUES (true)")
