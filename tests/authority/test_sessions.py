"""Sessions: hashed tokens, lifetimes, the single revocation writer, rotation, sweeping (SESS-1..9)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app import audit
from app.authority import sessions, sweeper
from tests.authority.conftest import make_user

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
IDLE, ABSOLUTE = 1800.0, 43200.0
APP = Path(__file__).resolve().parents[2] / "app"


async def _events(conn: psycopg.AsyncConnection[Any], kind: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT metadata, actor_id, target_id FROM keel_audit WHERE event_type = %s ORDER BY id",
        (kind,),
    )
    return [{"meta": m, "actor": a, "target": t} for m, a, t in await cur.fetchall()]


async def test_token_is_32_random_bytes_and_only_its_sha256_is_stored(conn) -> None:
    """SESS-1, INV-1."""
    uid, _ = await make_user(conn, password=None)
    token, sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    cur = await conn.execute("SELECT token_hash FROM keel_sessions WHERE id = %s", (sess.id,))
    (stored,) = await cur.fetchone()
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    cur = await conn.execute("SELECT row_to_json(s)::text FROM keel_sessions s")
    assert token not in (await cur.fetchone())[0]
    other, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    assert other != token


async def test_lookup_enforces_idle_and_absolute_lifetimes_on_the_server(conn) -> None:
    """SESS-3: 30 minutes idle, 12 hours absolute; time is injected, not slept."""
    uid, _ = await make_user(conn, password=None)
    token, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    assert await sessions.lookup(conn, token, now=T0 + timedelta(minutes=29), idle=IDLE)
    assert await sessions.lookup(conn, token, now=T0 + timedelta(minutes=58), idle=IDLE)
    assert await sessions.lookup(conn, token, now=T0 + timedelta(minutes=89), idle=IDLE) is None
    token2, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    at = T0
    while at < T0 + timedelta(hours=11, minutes=30):  # active all day long ...
        at += timedelta(minutes=20)
        assert await sessions.lookup(conn, token2, now=at, idle=IDLE)
    # ... still ends 12 hours after sign-in.
    assert await sessions.lookup(conn, token2, now=T0 + timedelta(hours=12), idle=IDLE) is None


async def test_lookup_refuses_inactive_users_revoked_sessions_and_garbage(conn, ctx) -> None:
    """AUTHZ-5: a deactivated user's next request is anonymous."""
    uid, _ = await make_user(conn, password=None)
    token, sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    found = await sessions.lookup(conn, token, now=T0, idle=IDLE)
    assert found and found[1].user_id == uid and found[1].session_id == sess.id
    for bad in ("", "x" * 43 + "'; DROP TABLE keel_sessions; --", "<script>", "a" * 10_000):
        assert await sessions.lookup(conn, bad, now=T0, idle=IDLE) is None
    await conn.execute("UPDATE keel_users SET is_active = false WHERE id = %s", (uid,))
    assert await sessions.lookup(conn, token, now=T0, idle=IDLE) is None
    await conn.execute("UPDATE keel_users SET is_active = true WHERE id = %s", (uid,))
    await sessions.revoke(conn, ctx, reason="administrative_revoke", session_id=sess.id, now=T0)
    assert await sessions.lookup(conn, token, now=T0, idle=IDLE) is None


async def test_last_seen_is_written_at_most_once_a_minute(conn) -> None:
    """SESS-3."""
    uid, _ = await make_user(conn, password=None)
    token, sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)

    async def seen() -> datetime:
        cur = await conn.execute("SELECT last_seen_at FROM keel_sessions WHERE id = %s", (sess.id,))
        return (await cur.fetchone())[0]

    await sessions.lookup(conn, token, now=T0 + timedelta(seconds=30), idle=IDLE)
    assert await seen() == T0
    await sessions.lookup(conn, token, now=T0 + timedelta(seconds=61), idle=IDLE)
    assert await seen() == T0 + timedelta(seconds=61)
    await sessions.lookup(conn, token, now=T0 + timedelta(seconds=100), idle=IDLE)
    assert await seen() == T0 + timedelta(seconds=61)


async def test_revoke_targets_one_all_or_all_but_current_and_audits_each(
    conn, ctx, secret_key
) -> None:
    """SESS-4: the target shapes, the returned ids, an audit event per revocation."""
    uid, _ = await make_user(conn, password=None, email="owner@example.com")
    ids = [
        (await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE))[1].id
        for _ in range(4)
    ]
    own = audit.Context(
        audit_key=audit.derive_key(secret_key), actor_id=uid, actor_email="owner@example.com"
    )
    assert await sessions.revoke(conn, own, reason="logout", session_id=ids[0], now=T0) == [ids[0]]
    assert await sessions.revoke(conn, own, reason="logout", session_id=ids[0], now=T0) == []
    assert await sessions.revoke(
        conn, own, reason="user_requested", user_id=uid, except_session_id=ids[1], now=T0
    ) == sorted(ids[2:])
    assert await sessions.revoke(conn, ctx, reason="deactivated", user_id=uid, now=T0) == [ids[1]]
    logout = await _events(conn, "session_logout")
    assert [e["meta"]["session_id"] for e in logout] == [ids[0]]
    mine = await _events(conn, "sessions_revoked_self")
    assert mine[0]["meta"]["session_ids"] == sorted(ids[2:])
    assert mine[0]["meta"]["revoked_reason"] == "user_requested"
    other = await _events(conn, "sessions_revoked_by_other")
    assert other[0]["meta"]["session_ids"] == [ids[1]] and other[0]["target"] == str(uid)
    cur = await conn.execute(
        "SELECT revoked_reason, count(*) FROM keel_sessions GROUP BY 1 ORDER BY 1"
    )
    assert await cur.fetchall() == [("deactivated", 1), ("logout", 1), ("user_requested", 2)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reason": "because", "session_id": 1},
        {"reason": "'; DROP TABLE keel_sessions; --", "user_id": 1},
        {"reason": "logout"},
        {"reason": "logout", "session_id": 1, "user_id": 1},
        {"reason": "logout", "session_id": 1, "except_session_id": 2},
    ],
)
async def test_revoke_refuses_unknown_reasons_and_ambiguous_targets(conn, ctx, kwargs) -> None:
    """SESS-4: the reason comes from the closed list; the target is one of three shapes."""
    with pytest.raises(ValueError):
        await sessions.revoke(conn, ctx, **kwargs)


async def test_the_database_refuses_a_reason_outside_the_closed_list(conn) -> None:
    uid, _ = await make_user(conn, password=None)
    _, sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "UPDATE keel_sessions SET revoked_at = now(), revoked_reason = 'whim' WHERE id = %s",
            (sess.id,),
        )


async def test_rotation_issues_a_new_token_and_links_the_old_session(conn, ctx) -> None:
    """SESS-5: the old token stops working at once; the new one keeps the absolute expiry."""
    uid, _ = await make_user(conn, password=None)
    old_token, old = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    later = T0 + timedelta(minutes=5)
    token, new = await sessions.rotate(
        conn, ctx, old, trust="elevated", elevated_until=later + timedelta(minutes=15), now=later
    )
    assert token != old_token and new.parent_id == old.id and new.trust == "elevated"
    assert new.expires_at == old.expires_at
    assert await sessions.lookup(conn, old_token, now=later, idle=IDLE) is None
    found = await sessions.lookup(conn, token, now=later, idle=IDLE)
    assert found and found[1].trust == "elevated"
    cur = await conn.execute("SELECT revoked_reason FROM keel_sessions WHERE id = %s", (old.id,))
    assert (await cur.fetchone())[0] == "trust_escalation"
    with pytest.raises(LookupError):  # a revoked session cannot be rotated back to life
        await sessions.rotate(conn, ctx, old, trust="elevated", now=later)


async def test_list_for_user_shows_only_live_sessions_newest_first(conn, ctx) -> None:
    """SESS-7."""
    uid, _ = await make_user(conn, password=None)
    _, a = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE, ip="198.51.100.1")
    _, b = await sessions.create(
        conn, user_id=uid, now=T0 + timedelta(minutes=1), absolute=ABSOLUTE
    )
    _, c = await sessions.create(
        conn, user_id=uid, now=T0 + timedelta(minutes=2), absolute=ABSOLUTE
    )
    await sessions.revoke(conn, ctx, reason="administrative_revoke", session_id=b.id, now=T0)
    live = await sessions.list_for_user(conn, uid, T0 + timedelta(minutes=3), idle=IDLE)
    assert [s.id for s in live] == [c.id, a.id]
    assert live[1].ip == "198.51.100.1"
    late = await sessions.list_for_user(conn, uid, T0 + timedelta(minutes=31), idle=IDLE)
    assert [s.id for s in late] == [c.id]


async def test_sweeper_deletes_what_expired_and_keeps_the_rest(conn) -> None:
    """SESS-9: expired sessions, recovery tokens a week past expiry, old rate events, sent mail."""
    uid, _ = await make_user(conn, password=None)
    _, old = await sessions.create(
        conn, user_id=uid, now=T0 - timedelta(hours=13), absolute=ABSOLUTE
    )
    _, idle = await sessions.create(
        conn, user_id=uid, now=T0 - timedelta(hours=1), absolute=ABSOLUTE
    )
    _, live = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    for age in (timedelta(days=8), timedelta(days=2)):
        await conn.execute(
            "INSERT INTO keel_recovery_tokens (token_hash, user_id, kind, created_at, expires_at)"
            " VALUES (%s, %s, 'reset', %s, %s)",
            (hashlib.sha256(str(age).encode()).digest(), uid, T0 - age, T0 - age),
        )
    await conn.execute(
        "INSERT INTO keel_rate_events (bucket, key, at) VALUES ('login_ip', '1', %s),"
        " ('login_ip', '1', %s)",
        (T0 - timedelta(hours=2), T0 - timedelta(seconds=10)),
    )
    await conn.execute(
        "INSERT INTO keel_outbox (template, to_addr, subject, body_text, body_html, status,"
        " sent_at) VALUES ('test', 'a@example.com', 's', 't', 'h', 'sent', %s),"
        " ('test', 'b@example.com', 's', 't', 'h', 'sent', %s)",
        (T0 - timedelta(days=40), T0 - timedelta(days=1)),
    )
    swept = await sweeper.sweep(conn, idle=IDLE, now=T0)
    assert swept == sweeper.Swept(sessions=2, tokens=1, rate_events=1, mail=1)
    cur = await conn.execute("SELECT id FROM keel_sessions")
    assert [r[0] for r in await cur.fetchall()] == [live.id]
    assert old.id != idle.id
    assert (await sweeper.sweep(conn, idle=IDLE, now=T0)).total == 0


async def test_two_sweepers_at_once_delete_each_row_once(database_url: str) -> None:
    """SESS-9: SKIP LOCKED lets several hosts sweep together without errors or double work."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        uid, _ = await make_user(c, password=None)
        await c.execute(
            "INSERT INTO keel_sessions (token_hash, user_id, created_at, last_seen_at, expires_at)"
            " SELECT sha256(i::text::bytea), %s, %s, %s, %s FROM generate_series(1, 2500) i",
            (uid, T0 - timedelta(days=1), T0 - timedelta(days=1), T0 - timedelta(hours=1)),
        )

    async def one() -> int:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            return (await sweeper.sweep(c, idle=IDLE, now=T0)).sessions

    counts = await asyncio.gather(one(), one(), one())
    assert sum(counts) == 2500


async def test_sweeper_loop_stops_when_told(database_url: str) -> None:
    stop = asyncio.Event()

    def connect() -> Any:
        return psycopg.AsyncConnection.connect(database_url, autocommit=True)

    class Conn:
        async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
            self.c = await connect()
            return self.c

        async def __aexit__(self, *exc: object) -> None:
            await self.c.close()

    task = asyncio.create_task(sweeper.run_forever(Conn, stop, idle=IDLE, interval=0.05))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 5)


# ---- INV-4: the single writer -----------------------------------------------------------------

# SQL that sets the columns (`SET …, revoked_at = …`), or any UPDATE of the table, or an
# INSERT that fills them; Python keyword arguments named revoked_reason are not writes.
_WRITES = re.compile(
    r"(\bSET\s+(\w+\s*=\s*[^,;]+,\s*)*revoked_(at|reason)\s*="
    r"|UPDATE\s+keel_sessions|INSERT\s+INTO\s+keel_sessions[^;]*revoked)",
    re.IGNORECASE,
)


def test_only_sessions_py_writes_revocation_columns() -> None:
    """INV-4 / SESS-4: a test fails the build if any other module writes revoked_at/_reason."""
    offenders = []
    for path in sorted(APP.rglob("*.py")):
        if path == APP / "authority" / "sessions.py":
            continue
        text = path.read_text(encoding="utf-8")
        for m in _WRITES.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            offenders.append(f"{path.relative_to(APP.parent)}:{line}: {m.group(0)}")
    assert not offenders, "only app/authority/sessions.py may revoke sessions:\n" + "\n".join(
        offenders
    )


def test_the_single_writer_check_would_catch_a_second_writer() -> None:
    assert _WRITES.search('conn.execute("UPDATE keel_sessions SET revoked_at = now()")')
    assert _WRITES.search("sql = 'update keel_sessions set trust = 1'")
    assert _WRITES.search("SET trust = 'x', revoked_reason = 'logout'")
    assert not _WRITES.search("WHERE s.revoked_at IS NULL")
    assert not _WRITES.search(
        "events.sessions_revoked_self(uid, email, ids, revoked_reason=reason)"
    )
