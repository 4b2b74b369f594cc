"""AUDIT-8: history with filters and keyset pages, per-object and per-user views, dashboard."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app import audit
from app import audit_events as ev
from app.audit import Context
from app.errors import Invalid


async def _fill(conn: psycopg.AsyncConnection[Any], ctx: Context, n: int) -> list[int]:
    return [await audit.record(conn, ctx, ev.create("tickets", i, f"#{i}", {})) for i in range(n)]


async def test_pages_walk_older_and_back_newer(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    ids = await _fill(conn, ctx, 7)
    newest_first = ids[::-1]
    first = await audit.history(conn, limit=3)
    assert [r.id for r in first.rows] == newest_first[:3]
    assert first.newer is None and first.older
    second = await audit.history(conn, after_cursor=first.older, limit=3)
    assert [r.id for r in second.rows] == newest_first[3:6]
    assert second.newer and second.older
    third = await audit.history(conn, after_cursor=second.older, limit=3)
    assert [r.id for r in third.rows] == newest_first[6:] and third.older is None
    back = await audit.history(conn, before_cursor=third.newer, limit=3)
    assert [r.id for r in back.rows] == newest_first[3:6]
    assert back.newer and back.older
    top = await audit.history(conn, before_cursor=back.newer, limit=3)
    assert [r.id for r in top.rows] == newest_first[:3] and top.newer is None


async def test_filters_by_event_actor_resource_and_dates(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    other = Context(audit_key=ctx.audit_key, actor_id=5, actor_email="eve@example.com")
    await audit.record(conn, ctx, ev.create("tickets", 1, "#1", {}))
    await audit.record(conn, other, ev.login_succeeded(5, "eve@example.com"))
    await audit.record(conn, other, ev.delete("tickets", 1, "#1"))
    types = lambda page: [r.event_type for r in page.rows]  # noqa: E731
    assert types(await audit.history(conn, event="login_succeeded")) == ["login_succeeded"]
    assert types(await audit.history(conn, actor="EVE@example.com")) == [
        "delete",
        "login_succeeded",
    ]
    assert types(await audit.history(conn, actor=1)) == ["create"]
    assert types(await audit.history(conn, actor="1")) == ["create"]
    assert types(await audit.history(conn, resource="tickets")) == ["delete", "create"]
    assert types(await audit.history(conn, resource="tickets", actor=5)) == ["delete"]
    future = datetime.now(UTC) + timedelta(days=1)
    assert types(await audit.history(conn, since=future)) == []
    assert len((await audit.history(conn, until=future)).rows) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "coffee_brewed"},
        {"event": "<script>"},
        {"actor": "not an email"},
        {"actor": "x\x00@y"},
        {"resource": "Tickets; DROP TABLE keel_audit"},
        {"resource": "a" * 101},
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"limit": "10"},
        {"after_cursor": "garbage!"},
        {"after_cursor": "x" * 500},
        {"after_cursor": base64.urlsafe_b64encode(b"2024-01-01|1").decode()},
        {"after_cursor": base64.urlsafe_b64encode(b"2024-01-01T00:00:00.000000Z|-4").decode()},
        {"before_cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
        {
            "since": datetime(2024, 2, 1, tzinfo=UTC),
            "until": datetime(2024, 1, 1, tzinfo=UTC),
        },
    ],
)
async def test_bad_filters_and_forged_cursors_are_invalid(
    conn: psycopg.AsyncConnection[Any], kwargs: dict[str, Any]
) -> None:
    """SEC-3: every value is checked against an allow-list; Invalid renders as 400."""
    with pytest.raises(Invalid) as info:
        await audit.history(conn, **kwargs)
    assert info.value.http_status == 400 and info.value.problem


async def test_object_history_shows_field_changes(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await audit.record(conn, ctx, ev.create("tickets", 1, "#1", {"status": "open"}))
    change = audit.diff({"status": "open"}, {"status": "closed"})
    await audit.record(conn, ctx, ev.update("tickets", 1, "#1", change))
    await audit.record(conn, ctx, ev.update("tickets", 2, "#2", change))
    rows = await audit.object_history(conn, "tickets", 1)
    assert [r.event_type for r in rows] == ["update", "create"]
    assert rows[0].changes == {"status": {"from": "open", "to": "closed"}}
    assert rows[1].changes == {}


async def test_user_activity_has_their_actions_and_actions_on_them(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    bob = Context(audit_key=ctx.audit_key, actor_id=2, actor_email="bob@example.com")
    await audit.record(conn, ctx, ev.user_created(2, "bob@example.com", "staff"))
    await audit.record(conn, bob, ev.create("tickets", 1, "#1", {}))
    await audit.record(conn, ctx, ev.user_created(3, "carol@example.com", "staff"))
    await audit.record(conn, bob, ev.login_succeeded(2, "bob@example.com"))
    rows = await audit.user_activity(conn, 2)
    assert [r.event_type for r in rows] == ["login_succeeded", "create", "user_created"]
    assert len(await audit.user_activity(conn, 2, limit=2)) == 2


async def test_recent_and_daily_counts_for_the_dashboard(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _fill(conn, ctx, 3)
    now = datetime.now(UTC)
    for days_ago in (2, 2, 9):  # older rows written directly: only their day matters here
        await conn.execute(
            "INSERT INTO keel_audit (at, event_type, summary, prev_hash, row_hash)"
            " VALUES (%s, 'create', 'old', %s, %s)",
            (now - timedelta(days=days_ago), bytes(32), bytes(32)),
        )
    assert len(await audit.recent(conn, 2)) == 2
    counts = await audit.daily_counts(conn, 7, now=now)
    assert len(counts) == 7 and counts[-1] == (now.date(), 3)
    assert counts[-3][1] == 2 and sum(n for _d, n in counts) == 5
