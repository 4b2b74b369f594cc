"""Sessions: hashed tokens, lifetimes, the single revocation writer, rotation, sweeping (SESS-1..9)."""

from __future__ import annotations

import ast
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

# Where the one writer lives: this function of this file, and nowhere else (SESS-4, INV-4).
WRITER_FILE, WRITER_FUNCTION = Path("authority") / "sessions.py", "revoke"

# SQL that sets the columns (`SET …, revoked_at = …`), PL/pgSQL that assigns them in a
# trigger (`NEW.revoked_at := …`), or an INSERT that fills them; Python keyword arguments
# named revoked_reason are not writes.
_SETS = re.compile(
    r"(\bSET\s+(\w+\s*=\s*[^,;]+,\s*)*revoked_(at|reason)\s*="
    r"|\b(NEW|OLD)\s*\.\s*revoked_(at|reason)\s*:?="
    r"|INSERT\s+INTO\s+keel_sessions\b[^();]*\([^)]*\brevoked_(at|reason)\b)",
    re.IGNORECASE,
)
# Any UPDATE of the table at all: outside sessions.py nobody writes keel_sessions.
_UPDATES_TABLE = re.compile(r"UPDATE\s+(ONLY\s+)?keel_sessions\b", re.IGNORECASE)
# In SQL files (migrations): an UPDATE statement of the table that names the columns.
_SQL_UPDATE = re.compile(
    r"UPDATE\s+(ONLY\s+)?keel_sessions\b[^;]*\brevoked_(at|reason)\b", re.IGNORECASE
)
_WRITES = re.compile(f"{_SETS.pattern}|{_UPDATES_TABLE.pattern}", re.IGNORECASE)
# Inside sessions.py but outside revoke(), the columns may only be read (`… IS [NOT] NULL`),
# so a write composed some other way (sql.Identifier, string pieces) is caught too.
_MENTION = re.compile(r"\brevoked_(at|reason)\b(?!\s+IS\s+(NOT\s+)?NULL\b)", re.IGNORECASE)


def _blank_function(text: str, name: str) -> str:
    """`text` with the top-level function `name` blanked out (empty lines kept, so line
    numbers still point at the source); AssertionError if there is no such function."""
    tree = ast.parse(text)
    found = [
        n for n in tree.body if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
        and n.name == name
    ]  # fmt: skip
    assert len(found) == 1, f"the single writer {name}() is missing"
    lines = text.split("\n")
    first, last = found[0].lineno - 1, found[0].end_lineno or found[0].lineno
    for i in range(first, last):
        lines[i] = ""
    return "\n".join(lines)


def revocation_writes(relative: Path, text: str) -> list[str]:
    """Writes of revoked_at/revoked_reason in one file under app/ that the single-writer rule
    forbids: anywhere but inside sessions.revoke() (SQL migrations may define the columns)."""
    if relative == WRITER_FILE:
        text = _blank_function(text, WRITER_FUNCTION)
        patterns = (_SETS, _MENTION)
    elif relative.suffix == ".sql":
        patterns = (_SETS, _SQL_UPDATE)
    else:
        patterns = (_WRITES,)
    return _matches(relative, text, patterns)


def _matches(relative: Path, text: str, patterns: tuple[re.Pattern[str], ...]) -> list[str]:
    out = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{relative}:{line}: {m.group(0)}")
    return out


def test_only_sessions_revoke_writes_revocation_columns() -> None:
    """INV-4 / SESS-4: a test fails the build if any code but sessions.revoke() writes
    revoked_at/revoked_reason, in Python or in SQL anywhere under app/."""
    files = sorted([*APP.rglob("*.py"), *APP.rglob("*.sql")])
    assert any(p.suffix == ".sql" for p in files) and APP / WRITER_FILE in files
    offenders = []
    for path in files:
        offenders += revocation_writes(path.relative_to(APP), path.read_text(encoding="utf-8"))
    assert not offenders, "only sessions.revoke() may revoke sessions:\n" + "\n".join(offenders)
    # And the writer really is there: the scan is not vacuous.
    source = (APP / WRITER_FILE).read_text(encoding="utf-8")
    assert _SETS.search(source)


def test_the_single_writer_check_would_catch_a_second_writer() -> None:
    assert _WRITES.search('conn.execute("UPDATE keel_sessions SET revoked_at = now()")')
    assert _WRITES.search("sql = 'update keel_sessions set trust = 1'")
    assert _WRITES.search("SET trust = 'x', revoked_reason = 'logout'")
    assert not _WRITES.search("WHERE s.revoked_at IS NULL")
    assert not _WRITES.search(
        "events.sessions_revoked_self(uid, email, ids, revoked_reason=reason)"
    )


WRITER_SOURCE = """
async def revoke(conn, ctx, *, reason):
    await conn.execute("UPDATE keel_sessions AS s SET revoked_at = now(), revoked_reason = %s"
                       " WHERE s.revoked_at IS NULL", (reason,))


async def touch(conn, sid):
    await conn.execute("UPDATE keel_sessions SET last_seen_at = now() WHERE id = %s", (sid,))


async def live(conn):
    return await conn.execute("SELECT id FROM keel_sessions s WHERE s.revoked_at IS NULL")
"""


def test_the_single_writer_check_confines_writes_to_the_revoke_function() -> None:
    """Not just the file: a second function in sessions.py that revokes is caught too."""
    assert revocation_writes(WRITER_FILE, WRITER_SOURCE) == []
    second = WRITER_SOURCE + (
        "\n\nasync def quietly_end(conn, sid):\n"
        '    await conn.execute("UPDATE keel_sessions SET revoked_at = now() WHERE id = %s",'
        " (sid,))\n"
    )
    assert revocation_writes(WRITER_FILE, second)
    composed = WRITER_SOURCE + (
        "\n\nasync def sneaky(conn):\n"
        '    q = sql.SQL("UPDATE keel_sessions SET {} = now()").format(sql.Identifier("revoked_at"))\n'
    )
    assert revocation_writes(WRITER_FILE, composed)
    with pytest.raises(AssertionError, match="writer revoke"):
        revocation_writes(WRITER_FILE, WRITER_SOURCE.replace("def revoke", "def end"))
    # Other Python files may not even UPDATE the table.
    assert revocation_writes(Path("web") / "x.py", WRITER_SOURCE)


@pytest.mark.parametrize(
    "sql_text",
    [
        "UPDATE keel_sessions SET revoked_at = now(), revoked_reason = 'logout';",
        "UPDATE keel_sessions\n   SET trust = 'x',\n       revoked_reason = 'logout'\n WHERE id = 1;",
        "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN NEW.revoked_at := now(); RETURN NEW;"
        " END $$ LANGUAGE plpgsql;",
        "INSERT INTO keel_sessions (token_hash, user_id, revoked_at) VALUES ('x', 1, now());",
    ],
)
def test_the_single_writer_check_reads_sql_migrations(sql_text: str) -> None:
    assert revocation_writes(Path("db") / "migrations" / "9999_x.sql", sql_text)


def test_the_single_writer_check_allows_the_column_definitions() -> None:
    migration = (APP / "db" / "migrations" / "0005_sessions.sql").read_text(encoding="utf-8")
    assert "revoked_at" in migration
    assert revocation_writes(Path("db") / "migrations" / "0005_sessions.sql", migration) == []


async def test_lookup_reads_effective_permissions_fresh_with_the_session(conn) -> None:
    """AUTHZ-4, AUTHZ-5: direct ∪ groups', read in the session query on every lookup."""
    uid, _ = await make_user(conn, password=None)
    token, _sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
    assert found is not None and found[2] == frozenset()
    cur = await conn.execute("INSERT INTO keel_groups (name) VALUES ('lookup-test') RETURNING id")
    (gid,) = await cur.fetchone()
    await conn.execute(
        "INSERT INTO keel_group_permissions (group_id, permission) VALUES (%s, 'bookings.view'),"
        " (%s, 'bookings.change')",
        (gid, gid),
    )
    await conn.execute(
        "INSERT INTO keel_group_members (group_id, user_id) VALUES (%s, %s)", (gid, uid)
    )
    await conn.execute(
        "INSERT INTO keel_user_permissions (user_id, permission) VALUES (%s, 'bookings.view'),"
        " (%s, 'customers.view')",
        (uid, uid),
    )
    found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
    assert found is not None
    assert found[2] == {"bookings.view", "bookings.change", "customers.view"}
    assert found[:2] == await sessions.lookup(conn, token, now=T0, idle=IDLE)
    await conn.execute("DELETE FROM keel_group_members WHERE user_id = %s", (uid,))
    found = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
    assert found is not None and found[2] == {"bookings.view", "customers.view"}


async def test_lookup_along_reads_the_session_and_one_row_in_one_statement(conn) -> None:
    """app/web/prefetch.py: the page's first row comes with the session, and only with a live
    one; a failing statement still finds the session and says the rows are unknown."""
    uid, _ = await make_user(conn, password=None)
    token, _sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    alone = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
    row = ("SELECT %(n)s::int AS n, 'x' || %(n)s AS label", {"n": 7})
    found, rows = await sessions.lookup_along(conn, token, row, now=T0, idle=IDLE)
    assert found == alone and rows == [(7, "x7")]
    none = ("SELECT 1 AS n WHERE %(n)s::int < 0", {"n": 7})
    assert await sessions.lookup_along(conn, token, none, now=T0, idle=IDLE) == (alone, [])
    # Nulls are a row too: "no row" is told apart from a row of nulls.
    nulls = ("SELECT NULL::int AS n WHERE %(n)s::int > 0", {"n": 7})
    assert await sessions.lookup_along(conn, token, nulls, now=T0, idle=IDLE) == (alone, [(None,)])
    # A session that is not live gets nothing, the row included.
    for dead in (sessions.new_token(), "not a token"):
        assert await sessions.lookup_along(conn, dead, row, now=T0, idle=IDLE) == (None, None)
    later = T0 + timedelta(seconds=IDLE + 1)
    assert await sessions.lookup_along(conn, token, row, now=later, idle=IDLE) == (None, None)
    # A statement that fails: the session alone, rows unknown, the connection still usable.
    broken = ("SELECT %(n)s::int / 0 AS n", {"n": 7})
    assert await sessions.lookup_along(conn, token, broken, now=T0, idle=IDLE) == (alone, None)
    assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)


async def test_the_gate_function_agrees_with_the_lookup(conn, ctx) -> None:
    """keel_session_live (migration 0015) guards a page's query sent with the lookup: it must
    call a session live exactly when the lookup finds it, for each way a session dies."""
    uid, _ = await make_user(conn, password=None)
    other, _ = await make_user(conn, password=None)
    cases: list[tuple[str, str, datetime]] = []
    live, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    cases.append(("live", live, T0))
    cases.append(("idle", live, T0 + timedelta(seconds=IDLE + 1)))
    cases.append(("past its lifetime", live, T0 + timedelta(seconds=ABSOLUTE + 1)))
    cases.append(("unknown", sessions.new_token(), T0))
    revoked, sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    await sessions.revoke(conn, ctx, reason="administrative_revoke", session_id=sess.id, now=T0)
    cases.append(("revoked", revoked, T0))
    inactive, _ = await sessions.create(conn, user_id=other, now=T0, absolute=ABSOLUTE)
    await conn.execute("UPDATE keel_users SET is_active = false WHERE id = %s", (other,))
    cases.append(("user deactivated", inactive, T0))
    for name, token, at in cases:
        found = await sessions.lookup(conn, token, now=at, idle=IDLE)
        cur = await conn.execute(
            "SELECT keel_session_live(%s, %s, %s)",
            (sessions.hash_token(token), at, at - timedelta(seconds=IDLE)),
        )
        assert await cur.fetchone() == ((found is not None),), name
        assert (found is not None) == (name == "live"), name


async def test_lookup_with_batch_sends_a_pages_questions_with_the_session(conn) -> None:
    """app/web/prefetch.py: a list page's statements share the session lookup's pipeline. A
    LIVE one runs only for a live session (counted here by a sequence it advances), a COLUMN
    one is a value of the lookup's row about the session's user, and a failure leaves the
    session found and the rows unknown."""
    uid, _ = await make_user(conn, password=None)
    token, _sess = await sessions.create(conn, user_id=uid, now=T0, absolute=ABSOLUTE)
    alone = await sessions.lookup_with_permissions(conn, token, now=T0, idle=IDLE)
    await conn.execute("CREATE TEMP SEQUENCE ran")
    batch = [
        ("SELECT nextval('ran'), %s::text", ["a"], None, sessions.LIVE),
        ("(%s::text || s.user_id)", ["b"], None, sessions.COLUMN),
        ("SELECT %s::text", ["c"], None, sessions.NOTHING),
    ]
    found, results = await sessions.lookup_with_batch(conn, token, batch, now=T0, idle=IDLE)
    assert found == alone and isinstance(results, list)
    assert await results[0].fetchall() == [(1, "a")]
    assert results[1] == f"b{uid}"
    assert await results[2].fetchall() == [("c",)]
    # Columns alone need no pipeline: the lookup's one statement.
    only = [batch[1]]
    assert await sessions.lookup_with_batch(conn, token, only, now=T0, idle=IDLE) == (
        alone,
        [f"b{uid}"],
    )
    # A session that is not live gets nothing, and its LIVE statement never ran.
    later = T0 + timedelta(seconds=IDLE + 1)
    for dead, at in ((sessions.new_token(), T0), ("not a token", T0), (token, later)):
        assert await sessions.lookup_with_batch(conn, dead, batch, now=at, idle=IDLE) == (
            None,
            None,
        )
    assert (await (await conn.execute("SELECT nextval('ran')")).fetchone()) == (2,)
    # A statement that fails: the session alone, rows unknown, the connection still usable.
    broken = [*batch[:1], ("SELECT %s::int / 0", [7], None, sessions.LIVE)]
    assert await sessions.lookup_with_batch(conn, token, broken, now=T0, idle=IDLE) == (
        alone,
        None,
    )
    assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
    # A timeout is kept for the page to raise after its checks, not met twice.
    slow = [("SELECT pg_sleep(%s)", [1], None, sessions.LIVE)]
    await conn.execute("SET statement_timeout = 50")
    found, results = await sessions.lookup_with_batch(conn, token, slow, now=T0, idle=IDLE)
    await conn.execute("SET statement_timeout = 0")
    assert found == alone and isinstance(results, psycopg.errors.QueryCanceled)
