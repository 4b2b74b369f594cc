"""Issue 3 acceptance, AUDIT-5, INV-3: a request killed mid-change leaves neither the change nor
its audit row.

A real change runs on its own connection and is held inside its transaction at a chosen point
— right after the data change, or right after its audit row is written — by a test trigger
that waits on an advisory lock the test holds. The test then kills it, either as Postgres
would (`pg_cancel_backend` from another connection) or as a dropped request would (the
asyncio task is cancelled), and checks from outside that nothing of it is left: not the
change, not the event, and the audit chain still verifies and goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg import pq, sql

from app import audit
from app.admin import writes
from app.admin.registry import site_registry
from app.admin.resources import bind
from app.authority import sessions, users
from app.authority.principal import Principal
from app.db.catalog import load_catalog
from tests.authority.conftest import context_for, make_user

Conn = psycopg.AsyncConnection[Any]
HOLD_LOCK = 0x686F6C64  # "hold": the test owns it while the change is parked at the trigger
KILLS = ("pg_cancel_backend", "task_cancel")


async def park_after(conn: Conn, table: str, event: str) -> None:
    """A trigger on `table` that, after each `event` (UPDATE, INSERT) of a row, waits for the
    test's advisory lock: the changing transaction stops there, with its work done but not
    committed."""
    await conn.execute(
        "CREATE OR REPLACE FUNCTION keel_test_park() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN PERFORM pg_advisory_xact_lock({HOLD_LOCK}); RETURN NULL; END $$"
    )
    await conn.execute(
        sql.SQL(
            "CREATE TRIGGER keel_test_park AFTER {} ON {} FOR EACH ROW"
            " EXECUTE FUNCTION keel_test_park()"
        ).format(sql.SQL(event), sql.Identifier(table))
    )


async def kill_while_parked(
    database_url: str, change: Callable[[Conn], Awaitable[Any]], kill: str
) -> BaseException:
    """Run `change` on a fresh connection, wait until it is parked at the trigger, kill it,
    and return what it raised. The connection it used must end idle and usable."""
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as holder,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as worker,
    ):
        await holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        pid = worker.info.backend_pid
        task = asyncio.create_task(change(worker))
        for _ in range(1000):  # parked = waiting on our advisory lock, mid-transaction
            cur = await holder.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                (pid,),
            )
            if await cur.fetchone():
                break
            assert not task.done(), task.exception() if not task.cancelled() else "cancelled"
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the change never reached the hold point")
        if kill == "pg_cancel_backend":
            cur = await holder.execute("SELECT pg_cancel_backend(%s)", (pid,))
            assert (await cur.fetchone())[0]
        else:
            task.cancel()
        try:
            await asyncio.wait_for(task, 30)
        except BaseException as exc:  # what it raised is the result
            raised: BaseException = exc
        else:
            raise AssertionError("the change finished although it was killed")
        await holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
        # The killed request's connection is not left inside a transaction (a pool reuses it).
        assert worker.info.transaction_status == pq.TransactionStatus.IDLE
        assert (await (await worker.execute("SELECT 1")).fetchone()) == (1,)
        return raised


def assert_killed(raised: BaseException, kill: str) -> None:
    if kill == "pg_cancel_backend":
        assert isinstance(raised, pgerrors.QueryCanceled), repr(raised)
    else:
        assert isinstance(raised, asyncio.CancelledError), repr(raised)


async def audit_types(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT event_type FROM keel_audit ORDER BY id")
    return [r[0] for r in await cur.fetchall()]


# ---- an authority change: users.set_role (a demotion, which also ends sessions) ------------


@pytest.mark.parametrize("kill", KILLS)
@pytest.mark.parametrize(
    "hold",
    [("keel_users", "UPDATE"), ("keel_audit", "INSERT")],
    ids=["after-update", "after-audit"],
)
async def test_a_role_change_killed_mid_transaction_leaves_nothing(
    conn: Conn, admin: Principal, secret_key: str, database_url: str, hold: tuple[str, str],
    kill: str,
) -> None:  # fmt: skip
    target_id, _ = await make_user(conn, role="supervisor", email="target@example.com")
    token, _sess = await sessions.create(conn, user_id=target_id, absolute=3600)
    actx = context_for(secret_key, admin)
    await park_after(conn, *hold)

    async def change(worker: Conn) -> None:
        await users.set_role(worker, actx, admin, target_id, "staff")

    assert_killed(await kill_while_parked(database_url, change, kill), kill)

    assert (await users.get(conn, target_id)).role == "supervisor"  # no change …
    assert await audit_types(conn) == []  # … and no audit row of it
    assert await sessions.lookup(conn, token, idle=1800) is not None  # nor its revocation
    # The chain is whole, and the next change appends to it as if nothing had happened.
    await conn.execute("DROP TRIGGER keel_test_park ON " + hold[0])
    await users.set_role(conn, actx, admin, target_id, "staff")
    assert await audit_types(conn) == ["role_changed", "sessions_revoked_by_other"]
    result = await audit.verify(conn, actx.audit_key)
    assert result.ok and result.rows == 2, result


# ---- an admin-surface edit: writes.update_row ------------------------------------------------


@pytest.mark.parametrize("kill", KILLS)
@pytest.mark.parametrize(
    "hold", [("technicians", "UPDATE"), ("keel_audit", "INSERT")],
    ids=["after-update", "after-audit"],
)  # fmt: skip
async def test_an_admin_edit_killed_mid_transaction_leaves_nothing(
    conn: Conn, secret_key: str, database_url: str, hold: tuple[str, str], kill: str
) -> None:
    registry = site_registry()
    bound = bind(registry, await load_catalog(conn, registry.tables()))["technicians"]
    cur = await conn.execute(
        "INSERT INTO technicians (name, email) VALUES ('Tess', 't@x.test') RETURNING id"
    )
    pk = (await cur.fetchone())[0]
    before = await writes.fetch_row(conn, bound, pk)
    assert before is not None
    version = writes.row_version(bound.table, before)
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), actor_email="ed@example.com")
    await park_after(conn, *hold)

    async def change(worker: Conn) -> None:
        await writes.update_row(worker, ctx, bound, pk, {"name": "Changed"}, version=version)

    assert_killed(await kill_while_parked(database_url, change, kill), kill)

    after = await writes.fetch_row(conn, bound, pk)
    assert after is not None and after["name"] == "Tess"
    assert writes.row_version(bound.table, after) == version
    assert await audit_types(conn) == []
    await conn.execute("DROP TRIGGER keel_test_park ON " + hold[0])
    await writes.update_row(conn, ctx, bound, pk, {"name": "Changed"}, version=version)
    assert await audit_types(conn) == ["update"]
    assert (await audit.verify(conn, ctx.audit_key)).ok
