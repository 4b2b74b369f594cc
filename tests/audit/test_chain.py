"""AUDIT-3..5: the chain is append-only, tamper-evident, atomic with the change it records."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from app import audit
from app import audit_events as ev
from app.audit import Context


async def _scenario(conn: psycopg.AsyncConnection[Any], ctx: Context) -> list[int]:
    events = [
        ev.user_created(2, "bob@example.com", "staff"),
        ev.login_failed("bob@example.com", "wrong_password", user_id=2),
        ev.login_succeeded(2, "bob@example.com"),
        ev.create("tickets", 10, "#10", {"title": "Printer on fire", "priority": 2}),
        ev.update("tickets", 10, "#10", audit.diff({"priority": 2}, {"priority": 1})),
        ev.role_changed(2, "bob@example.com", "staff", "supervisor"),
        ev.sessions_revoked_by_other(2, "bob@example.com", [3, 4], "role_changed"),
        ev.delete("tickets", 10, "#10"),
    ]
    return [await audit.record(conn, ctx, e) for e in events]


async def test_a_full_scenario_verifies(conn: psycopg.AsyncConnection[Any], ctx: Context) -> None:
    ids = await _scenario(conn, ctx)
    result = await audit.verify(conn, ctx.audit_key)
    assert result.ok and result.rows == len(ids) and result.head_id == ids[-1]
    assert result.head_hash and len(result.head_hash) == 64


async def test_empty_log_verifies(conn: psycopg.AsyncConnection[Any], key: bytes) -> None:
    result = await audit.verify(conn, key)
    assert result.ok and result.rows == 0 and result.head_id is None


async def test_rows_carry_who_where_and_the_request_id(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """AUDIT-1, AUDIT-6: actor snapshot, session, IP, device and request id on every row."""
    row_id = await audit.record(conn, ctx, ev.password_changed_self(1, "admin@example.com"))
    [row] = await audit.recent(conn, 1)
    assert row.id == row_id and row.event_type == "password_changed_self"
    assert (row.actor_id, row.actor_email, row.session_id) == (1, "admin@example.com", 7)
    assert (row.ip, row.user_agent, row.request_id) == (
        "203.0.113.9",
        "Firefox 128 on Linux",
        "req-0123456789abcdef",
    )
    assert (row.target_resource, row.target_id, row.outcome) == ("users", "1", "success")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE keel_audit SET summary = 'nothing happened'",
        "DELETE FROM keel_audit",
        "TRUNCATE keel_audit",
    ],
)
async def test_history_cannot_be_changed(
    conn: psycopg.AsyncConnection[Any], ctx: Context, statement: str
) -> None:
    """AUDIT-3: the trigger refuses UPDATE, DELETE and TRUNCATE with a clear message."""
    await _scenario(conn, ctx)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        await conn.execute(statement)
    assert (await audit.verify(conn, ctx.audit_key)).rows == 8


async def test_an_altered_row_is_named_by_verify(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """AUDIT-4: editing a row behind the trigger's back names exactly that row."""
    ids = await _scenario(conn, ctx)
    target = ids[3]
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute(
        "UPDATE keel_audit SET metadata = jsonb_set(metadata, '{values,priority}', '5')"
        " WHERE id = %s",
        (target,),
    )
    result = await audit.verify(conn, ctx.audit_key)
    assert not result.ok
    assert (result.broken_id, result.broken_type) == (target, "create")
    assert result.rows == 3 and "altered" in result.reason
    assert result.as_dict()["broken"]["id"] == target


async def test_a_key_id_changed_to_escape_the_check_is_caught(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """A row whose key is not in the ring cannot be checked; relabelling an altered row with an
    invented key id must not turn "altered" into "key retired". The next row seals the key id
    of the row before it, and the newest row must name a key in the ring."""
    ids = await _scenario(conn, ctx)
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute(
        "UPDATE keel_audit SET summary = 'nothing happened', key_id = 'deadbeef' WHERE id = %s",
        (ids[3],),
    )
    result = await audit.verify(conn, ctx.audit_key)
    assert not result.ok and result.broken_id == ids[4] and "key id" in result.reason


async def test_the_newest_row_must_name_a_key_in_the_ring(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """Nothing comes after the newest row to vouch for its key id: it must be checkable."""
    ids = await _scenario(conn, ctx)
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute(
        "UPDATE keel_audit SET summary = 'nothing', key_id = 'deadbeef' WHERE id = %s",
        (ids[-1],),
    )
    result = await audit.verify(conn, ctx.audit_key)
    assert not result.ok and "newest row names a key" in result.reason


async def test_a_removed_row_breaks_the_link_of_the_next(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    ids = await _scenario(conn, ctx)
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute("DELETE FROM keel_audit WHERE id = %s", (ids[2],))
    result = await audit.verify(conn, ctx.audit_key)
    assert not result.ok and result.broken_id == ids[3] and "removed" in result.reason


async def test_another_key_does_not_verify(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    ids = await _scenario(conn, ctx)
    # Every row names the key that sealed it: with another key, none is verified. They are
    # reported as unverifiable (their key is not in the ring), not as verified.
    result = await audit.verify(conn, audit.derive_key("another key entirely"))
    assert result.unverified == len(ids) and result.retired == (audit.key_id(ctx.audit_key),)
    # …and the newest row always names the signing key, so this is not a passing chain.
    assert not result.ok and "newest row names a key" in result.reason
    # A row that names the key it was sealed with is checked with it: the wrong key fails.
    other = audit.derive_key("another key entirely")
    result = await audit.verify(conn, {audit.key_id(ctx.audit_key): other})
    assert not result.ok and result.broken_id == ids[0]


async def test_verify_walks_in_batches(conn: psycopg.AsyncConnection[Any], ctx: Context) -> None:
    for i in range(7):
        await audit.record(conn, ctx, ev.create("tickets", i, f"#{i}", {}))
    assert (await audit.verify(conn, ctx.audit_key, batch=2)).rows == 7


async def test_a_rolled_back_change_leaves_no_audit_row(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """AUDIT-5: the event goes with the change; if the change fails, neither happens."""
    await conn.execute("CREATE TABLE widgets (id int PRIMARY KEY)")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with conn.transaction():
            await conn.execute("INSERT INTO widgets VALUES (1)")
            await audit.record(conn, ctx, ev.create("widgets", 1, "#1", {}))
            raise Boom
    assert await (await conn.execute("SELECT count(*) FROM widgets")).fetchone() == (0,)
    assert await audit.recent(conn) == []
    # The lost sequence value leaves a gap, never a broken chain.
    await audit.record(conn, ctx, ev.create("widgets", 2, "#2", {}))
    assert (await audit.verify(conn, ctx.audit_key)).ok


async def test_a_committed_change_keeps_its_event(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    async with conn.transaction():
        await audit.record(conn, ctx, ev.group_created(3, "editors"))
    assert [r.event_type for r in await audit.recent(conn)] == ["group_created"]


async def test_concurrent_writers_keep_one_chain(database_url: str, ctx: Context) -> None:
    """AUDIT-4: inserts are serialised per database, so parallel writers never fork it."""

    async def writer(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as c:
            for i in range(5):
                async with c.transaction():
                    await audit.record(c, ctx, ev.create("tickets", n * 10 + i, "t", {}))

    await asyncio.gather(*(writer(n) for n in range(6)))
    async with await psycopg.AsyncConnection.connect(database_url) as c:
        result = await audit.verify(c, ctx.audit_key)
    assert result.ok and result.rows == 30


async def test_repeatable_read_is_refused(conn: psycopg.AsyncConnection[Any], ctx: Context) -> None:
    """An old snapshot could miss the chain head; refuse instead of forking the chain."""
    with pytest.raises(RuntimeError, match="READ COMMITTED"):
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await audit.record(conn, ctx, ev.user_deleted(2, "bob@example.com"))


async def test_unknown_event_type_is_refused_by_the_database(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """AUDIT-2: the CHECK refuses an id the registry does not know."""
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "INSERT INTO keel_audit (at, event_type, summary, prev_hash, row_hash)"
            " VALUES (now(), 'coffee_brewed', 'x', %s, %s)",
            (bytes(32), bytes(32)),
        )


async def test_the_head_check_reads_only_the_newest_rows(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """OPS-5: doctor re-verifies the head, anchored on the row just before it."""
    ids = await _scenario(conn, ctx)
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute("UPDATE keel_audit SET summary = 'x' WHERE id = %s", (ids[0],))
    head = await audit.verify(conn, ctx.audit_key, last=3)
    assert head.ok and head.rows == 3 and head.head_id == ids[-1]
    await conn.execute("UPDATE keel_audit SET summary = 'x' WHERE id = %s", (ids[-2],))
    head = await audit.verify(conn, ctx.audit_key, last=3)
    assert not head.ok and head.broken_id == ids[-2]
    assert (await audit.verify(conn, ctx.audit_key, last=100)).broken_id == ids[0]


async def test_doctor_reports_the_chain(
    config: Any, conn: psycopg.AsyncConnection[Any], key: bytes
) -> None:
    ctx = Context(audit_key=audit.derive_key(config.secret_key), os_actor="ops@host")
    ids = await _scenario(conn, ctx)
    [check] = await audit.doctor_check(config)
    assert (check.name, check.status) == ("audit chain", "ok") and "8 rows" in check.detail
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute("DELETE FROM keel_audit WHERE id = %s", (ids[4],))
    [check] = await audit.doctor_check(config)
    assert check.status == "fail" and f"row {ids[5]}" in check.detail
    [check] = await audit.doctor_check(config.with_values(secret_key=""))
    assert check.status == "warn"


def test_sealed_text_of_times_and_strings_is_what_earlier_versions_wrote() -> None:
    """The chain seals `iso` and `clean_text` output: a faster path must write the same text,
    or rows sealed before an upgrade stop verifying."""
    from datetime import UTC, datetime, timedelta, timezone

    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
    for year in (1, 9, 99, 999, 1000, 1970, 2026, 9999):
        for tz in zones:
            for micro in (0, 7, 999_999):
                at = datetime(year, 6, 15, 12, 30, 5, micro, tzinfo=tz)
                old = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                assert audit.iso(at) == old
    for text in ("plain", "", "nul\x00here", "é café", "lone \udc80 surrogate", "\x00"):
        old = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
        assert audit.clean_text(text) == old
