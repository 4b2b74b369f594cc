"""Sign-in service: uniform failures, per-account and per-IP throttles in Postgres (LOGIN-1..5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import login, sessions
from app.authority.passwords import Hasher
from tests.authority.conftest import DEFAULT_PASSWORD
from tests.authority.conftest import make_user as make_user_row
from tests.helpers import cheap_hasher

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ABSOLUTE = 43200.0


@pytest.fixture
def web_ctx(ctx: Context) -> Context:
    """An anonymous request's context: who is unknown until the password is checked."""
    return replace(ctx, os_actor=None, argv=(), ip="203.0.113.50", user_agent="Firefox/128")


@pytest.fixture
async def hasher() -> AsyncIterator[Hasher]:
    """Cheap Argon2id (tests.helpers.CHEAP_HASHING): these tests are about throttles, sessions
    and audit rows, not hashing cost, which tests/authority/test_passwords.py checks at the
    production parameters (its dummy-verify timing included). Sign-ins here verify users made
    by `make_user` below with these same parameters, so none is rehashed by the way."""
    h = cheap_hasher()
    yield h
    h.close()


@pytest.fixture
async def production_hasher() -> AsyncIterator[Hasher]:
    """The production parameters (LOGIN-5), for the one test of upgrading to them."""
    h = Hasher()
    yield h
    h.close()


async def make_user(
    conn_or_url: psycopg.AsyncConnection[Any] | str,
    hasher: Hasher,
    *,
    email: str,
    active: bool = True,
    password: str = DEFAULT_PASSWORD,
) -> tuple[int, str]:
    """The authority conftest's user row, its password hashed with `hasher` (not at production
    cost): (id, password)."""
    if isinstance(conn_or_url, str):
        async with await psycopg.AsyncConnection.connect(conn_or_url, autocommit=True) as c:
            return await make_user(c, hasher, email=email, active=active, password=password)
    uid, _ = await make_user_row(conn_or_url, email=email, active=active, password=None)
    await conn_or_url.execute(
        "UPDATE keel_users SET password_hash = %s WHERE id = %s",
        (await hasher.hash(password), uid),
    )
    return uid, password


async def _try(conn, ctx, hasher, email, password, at=T0) -> login.LoginResult:
    return await login.login(
        login.using(conn), ctx, hasher, email=email, password=password, now=at, absolute=ABSOLUTE
    )


async def _audit(conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str | None]]:
    cur = await conn.execute(
        "SELECT event_type, metadata->>'reason' FROM keel_audit"
        " WHERE event_type IN ('login_succeeded', 'login_failed', 'account_locked') ORDER BY id"
    )
    return list(await cur.fetchall())


async def test_success_creates_a_session_and_audits_it(conn, web_ctx, hasher) -> None:
    """LOGIN-4: login_succeeded, with the new session id on the row."""
    uid, pw = await make_user(conn, hasher, email="ann@example.com")
    result = await _try(conn, web_ctx, hasher, "  Ann@Example.COM ", pw)
    assert result.ok and result.token and result.session and result.session.user_id == uid
    found = await sessions.lookup(conn, result.token, now=T0, idle=1800)
    assert found and found[1].email == "ann@example.com"
    cur = await conn.execute(
        "SELECT actor_id, session_id, ip FROM keel_audit WHERE event_type = 'login_succeeded'"
    )
    assert await cur.fetchone() == (uid, result.session.id, "203.0.113.50")
    cur = await conn.execute("SELECT last_login_at FROM keel_users WHERE id = %s", (uid,))
    assert (await cur.fetchone())[0] == T0


async def test_every_failure_cause_returns_the_same_shape(conn, web_ctx, hasher) -> None:
    """LOGIN-1, LOGIN-4: unknown email → no audit row; the others → login_failed(reason)."""
    _, pw = await make_user(conn, hasher, email="known@example.com")
    await make_user(conn, hasher, email="gone@example.com", active=False)
    locked, _ = await make_user(conn, hasher, email="locked@example.com")
    await conn.execute(
        "UPDATE keel_users SET locked_until = %s WHERE id = %s", (T0 + timedelta(hours=1), locked)
    )
    results = [
        await _try(conn, web_ctx, hasher, "nobody@example.com", pw),
        await _try(conn, web_ctx, hasher, "known@example.com", "wrong password 123"),
        await _try(conn, web_ctx, hasher, "gone@example.com", DEFAULT_PASSWORD),
        await _try(conn, web_ctx, hasher, "locked@example.com", DEFAULT_PASSWORD),
    ]
    assert [r.ok for r in results] == [False] * 4
    assert [r.reason for r in results] == ["unknown", "wrong_password", "inactive", "locked"]
    assert all(r.token is None and r.session is None for r in results)
    assert await _audit(conn) == [
        ("login_failed", "wrong_password"),
        ("login_failed", "inactive"),
        ("login_failed", "locked"),
    ]
    cur = await conn.execute("SELECT count(*) FROM keel_audit WHERE metadata::text LIKE '%nobody%'")
    assert (await cur.fetchone())[0] == 0


@pytest.mark.parametrize(
    "email",
    [
        "'; DROP TABLE keel_users; --",
        "<script>alert(1)</script>@example.com",
        "a\x00b@example.com",
        "bell\x07@example.com",
        "x" * 5000 + "@example.com",
        "",
        None,
        12345,
        ["a@example.com"],
    ],
)
async def test_hostile_emails_fail_like_unknown_ones(conn, web_ctx, hasher, email) -> None:
    """SEC-3: no exception, no SQL text, the uniform failure."""
    result = await _try(conn, web_ctx, hasher, email, "whatever password")
    assert not result.ok and result.reason == "unknown"


async def test_five_failures_in_ten_minutes_lock_for_fifteen(conn, web_ctx, hasher) -> None:
    """LOGIN-2: the lock is checked before verifying, so the right password is refused too."""
    uid, pw = await make_user(conn, hasher, email="bob@example.com")
    for i in range(5):
        r = await _try(conn, web_ctx, hasher, "bob@example.com", "nope", T0 + timedelta(minutes=i))
        assert r.reason == "wrong_password"
    cur = await conn.execute(
        "SELECT locked_until, failed_login_count FROM keel_users WHERE id = %s", (uid,)
    )
    assert await cur.fetchone() == (T0 + timedelta(minutes=4 + 15), 5)
    assert (await _audit(conn))[-1] == ("account_locked", None)
    cur = await conn.execute(
        "SELECT metadata->>'via' FROM keel_audit WHERE event_type = 'account_locked'"
    )
    assert (await cur.fetchone())[0] == "auto_throttle"
    cur = await conn.execute("SELECT to_addr, body_text FROM keel_outbox")
    [(to, body)] = await cur.fetchall()  # MAIL-3: the owner is told, with when it unlocks
    assert to == "bob@example.com" and "unlocks by itself" in body and "203.0.113.50" in body
    right = await _try(conn, web_ctx, hasher, "bob@example.com", pw, T0 + timedelta(minutes=10))
    assert not right.ok and right.reason == "locked"
    later = await _try(conn, web_ctx, hasher, "bob@example.com", pw, T0 + timedelta(minutes=20))
    assert later.ok


async def test_the_window_slides_and_success_resets_the_count(conn, web_ctx, hasher) -> None:
    """LOGIN-2: failures older than ten minutes no longer count; a success clears them."""
    _, pw = await make_user(conn, hasher, email="cy@example.com")
    for i in range(4):
        await _try(conn, web_ctx, hasher, "cy@example.com", "nope", T0 + timedelta(minutes=i))
    for i in range(4):  # 11+ minutes later: the first four slid out of the window
        r = await _try(
            conn, web_ctx, hasher, "cy@example.com", "nope", T0 + timedelta(minutes=12 + i)
        )
        assert r.reason == "wrong_password"
    assert (await _try(conn, web_ctx, hasher, "cy@example.com", pw, T0 + timedelta(minutes=17))).ok
    for _ in range(4):
        r = await _try(conn, web_ctx, hasher, "cy@example.com", "nope", T0 + timedelta(minutes=18))
        assert r.reason == "wrong_password"
    assert (await _try(conn, web_ctx, hasher, "cy@example.com", pw, T0 + timedelta(minutes=19))).ok


async def test_concurrent_guesses_get_at_most_five_verifications(database_url, web_ctx) -> None:
    """LOGIN-2 across connections (as across hosts): the sixth guess in flight is refused
    as locked without its password being checked."""
    fast = Hasher(time_cost=1, memory_cost=8192, parallelism=1, max_in_flight=4)
    try:
        await make_user(database_url, fast, email="dee@example.com")

        async def guess(i: int) -> str | None:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                ctx = replace(web_ctx, ip=f"198.51.100.{i}")
                return (await _try(c, ctx, fast, "dee@example.com", f"guess {i}")).reason

        reasons = await asyncio.gather(*(guess(i) for i in range(12)))
    finally:
        fast.close()
    assert reasons.count("wrong_password") == 5
    assert reasons.count("locked") == 7


async def test_per_ip_limit_answers_with_a_wait(conn, web_ctx, hasher) -> None:
    """LOGIN-3: 30 attempts a minute per address, across accounts, unknown emails included."""
    await conn.execute(
        "INSERT INTO keel_rate_events (bucket, key, at)"
        " SELECT 'login_ip', '203.0.113.50', %s FROM generate_series(1, 29)",
        (T0 - timedelta(seconds=50),),
    )
    r = await _try(conn, web_ctx, hasher, "nobody@example.com", "x")  # the 30th: allowed
    assert r.reason == "unknown"
    with pytest.raises(login.RateLimited) as refused:
        await _try(conn, web_ctx, hasher, "nobody@example.com", "x")
    assert 1 <= refused.value.retry_after <= 10
    other = replace(web_ctx, ip="203.0.113.51")
    assert (await _try(conn, other, hasher, "nobody@example.com", "x")).reason == "unknown"
    later = await _try(conn, web_ctx, hasher, "nobody@example.com", "x", T0 + timedelta(seconds=11))
    assert later.reason == "unknown"


async def test_outdated_hash_is_upgraded_on_success(
    conn, web_ctx, production_hasher, fast_hasher
) -> None:
    """LOGIN-5: a hash with old parameters is replaced at the next successful sign-in."""
    hasher = production_hasher
    uid, _ = await make_user_row(conn, email="eve@example.com", password=None)
    old = await fast_hasher.hash("an old but valid password")
    await conn.execute("UPDATE keel_users SET password_hash = %s WHERE id = %s", (old, uid))
    assert (await _try(conn, web_ctx, hasher, "eve@example.com", "an old but valid password")).ok
    cur = await conn.execute("SELECT password_hash FROM keel_users WHERE id = %s", (uid,))
    new = (await cur.fetchone())[0]
    assert new != old and new.startswith("$argon2id$") and not hasher.needs_rehash(new)
    cur = await conn.execute(
        "SELECT metadata->>'parameters_upgraded' FROM keel_audit WHERE event_type = 'login_succeeded'"
    )
    assert (await cur.fetchone())[0] == "true"


async def test_signing_in_again_retires_the_browsers_old_session(conn, web_ctx, hasher) -> None:
    """SESS-5: a new token on login; the previous one of this browser stops working."""
    uid, pw = await make_user(conn, hasher, email="fay@example.com")
    first = await _try(conn, web_ctx, hasher, "fay@example.com", pw)
    assert first.session is not None
    second = await login.login(
        login.using(conn), web_ctx, hasher, email="fay@example.com", password=pw, now=T0,
        absolute=ABSOLUTE, current=(first.session.id, uid),
    )  # fmt: skip
    assert second.session is not None and second.session.parent_id == first.session.id
    assert await sessions.lookup(conn, first.token or "", now=T0, idle=1800) is None


async def test_check_password_is_throttled_like_a_sign_in(conn, ctx, hasher) -> None:
    """REAUTH-1: a stolen session cannot be used to guess the password without limit."""
    uid, pw = await make_user(conn, hasher, email="gil@example.com")
    for _ in range(5):
        assert not await login.check_password(
            conn, ctx, hasher, user_id=uid, password="nope", now=T0
        )
    assert not await login.check_password(conn, ctx, hasher, user_id=uid, password=pw, now=T0)
    cur = await conn.execute(
        "SELECT metadata->>'reason', metadata->>'during' FROM keel_audit"
        " WHERE event_type = 'login_failed' ORDER BY id DESC LIMIT 1"
    )
    assert await cur.fetchone() == ("locked", "reauth")
