"""Recovery: hashed single-use tokens, silent limits, atomic consumption, password change (REC-1..4)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import recovery, sessions
from app.authority.passwords import Policy
from app.errors import Invalid
from tests.authority.conftest import DEFAULT_PASSWORD, make_user
from tests.helpers import outbox_mail

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://ops.example.com"
POLICY = Policy(12, "Keel")
NEW = "a brand new long passphrase"


@pytest.fixture
def web_ctx(ctx: Context) -> Context:
    return replace(ctx, os_actor=None, argv=(), ip="203.0.113.60", user_agent="Firefox/128")


async def _ask(conn, ctx, email: object, at: datetime = T0) -> bool:
    return await recovery.request_reset(conn, ctx, email=email, public_url=PUBLIC, now=at)


async def _outbox(conn: psycopg.AsyncConnection[Any], ctx: Context) -> list[tuple[str, str]]:
    """The mail as the delivery worker sends it (tokens unsealed with the test's key)."""
    return await outbox_mail(conn, ctx.audit_key)


def _token_from(body: str) -> str:
    m = re.search(r"https://ops\.example\.com/reset/([A-Za-z0-9_-]{43})", body)
    assert m, body
    return m.group(1)


async def test_request_queues_mail_with_a_public_url_link_and_stores_only_a_hash(
    conn, web_ctx
) -> None:
    """REC-1: 32 random bytes, 30 minutes, hash only, mail in the same transaction."""
    uid, _ = await make_user(conn, email="ann@example.com")
    assert await _ask(conn, web_ctx, "ANN@example.com")
    [(to, body)] = await _outbox(conn, web_ctx)
    token = _token_from(body)
    assert to == "ann@example.com" and "203.0.113.60" in body and "30 minutes" in body
    cur = await conn.execute(
        "SELECT token_hash, kind, expires_at, requested_ip FROM keel_recovery_tokens"
    )
    stored, kind, expires, ip = await cur.fetchone()
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    assert (kind, expires, ip) == ("reset", T0 + timedelta(minutes=30), "203.0.113.60")
    cur = await conn.execute(
        "SELECT target_id, metadata->>'token_fingerprint', metadata::text FROM keel_audit"
        " WHERE event_type = 'password_reset_self_request'"
    )
    target, fingerprint, meta = await cur.fetchone()
    assert target == str(uid) and len(fingerprint) == 8 and token not in meta


@pytest.mark.parametrize(
    "email", ["nobody@example.com", "gone@example.com", "", "'; DROP TABLE x; --", None, 42]
)
async def test_unknown_inactive_and_hostile_requests_send_nothing(conn, web_ctx, email) -> None:
    """REC-1: nothing is sent, nothing is raised; the page is the same (tested on the web)."""
    await make_user(conn, email="gone@example.com", active=False)
    assert not await _ask(conn, web_ctx, email)
    assert await _outbox(conn, web_ctx) == []


async def test_limits_are_silent_per_account_and_per_address(conn, web_ctx) -> None:
    """REC-3: 3 requests an hour per account; 5 per 15 minutes per IP."""
    await make_user(conn, email="bo@example.com")
    sent = [
        await _ask(conn, web_ctx, "bo@example.com", T0 + timedelta(minutes=i)) for i in range(4)
    ]
    assert sent == [True, True, True, False]
    assert await _ask(conn, web_ctx, "bo@example.com", T0 + timedelta(minutes=61))
    other_ip = replace(web_ctx, ip="198.51.100.9")
    for i in range(5):
        await _ask(conn, other_ip, f"n{i}@example.com", T0)
    await make_user(conn, email="cy@example.com")
    assert not await _ask(conn, other_ip, "cy@example.com", T0 + timedelta(minutes=1))
    assert await _ask(conn, other_ip, "cy@example.com", T0 + timedelta(minutes=16))


async def test_without_public_url_no_link_is_built_from_anything_else(conn, web_ctx) -> None:
    await make_user(conn, email="dee@example.com")
    assert not await recovery.request_reset(conn, web_ctx, email="dee@example.com", public_url="")
    assert await _outbox(conn, web_ctx) == []


async def test_consume_checks_policy_first_then_uses_the_token_once(conn, web_ctx, hasher) -> None:
    """REC-2: a refused password keeps the link; success ends every session, signs nobody in."""
    uid, _ = await make_user(conn, email="eli@example.com")
    s1, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    await _ask(conn, web_ctx, "eli@example.com")
    await _ask(conn, web_ctx, "eli@example.com")
    first, second = (_token_from(b) for _, b in await _outbox(conn, web_ctx))
    with pytest.raises(Invalid, match="Too short"):
        await recovery.consume(
            conn, web_ctx, hasher, token=first, new_password="short", policy=POLICY, now=T0
        )
    assert await recovery.peek(conn, first, now=T0)
    assert (
        await recovery.consume(
            conn, web_ctx, hasher, token=first, new_password=NEW, policy=POLICY, now=T0
        )
        == uid
    )
    for used in (first, second):  # the other outstanding link died with it
        with pytest.raises(recovery.LinkInvalid):
            await recovery.consume(
                conn, web_ctx, hasher, token=used, new_password=NEW, policy=POLICY, now=T0
            )
    assert await sessions.lookup(conn, s1, now=T0, idle=1800) is None
    cur = await conn.execute("SELECT count(*) FROM keel_sessions WHERE revoked_at IS NULL")
    assert (await cur.fetchone())[0] == 0, "nobody is signed in by a reset"
    cur = await conn.execute("SELECT password_hash FROM keel_users WHERE id = %s", (uid,))
    assert (await hasher.verify((await cur.fetchone())[0], NEW))[0]
    cur = await conn.execute(
        "SELECT metadata->>'sessions_revoked_count' FROM keel_audit"
        " WHERE event_type = 'password_reset_self_consume'"
    )
    assert (await cur.fetchone())[0] == "1"
    cur = await conn.execute(
        "SELECT to_addr, subject FROM keel_outbox WHERE template = 'password_changed'"
    )
    assert await cur.fetchall() == [("eli@example.com", "Your Keel password was changed")]


async def test_expired_garbage_and_over_limit_links_are_all_just_invalid(
    conn, web_ctx, hasher
) -> None:
    uid, _ = await make_user(conn, email="fay@example.com")
    token = await recovery.issue_token(conn, user_id=uid, ttl_seconds=60, kind="reset", now=T0)
    late = T0 + timedelta(minutes=2)
    for bad, at in ((token, late), ("x" * 43, T0), ("../../etc/passwd", T0), ("", T0)):
        assert await recovery.peek(conn, bad, now=at) is None
        with pytest.raises(recovery.LinkInvalid):
            await recovery.consume(
                conn, web_ctx, hasher, token=bad, new_password=NEW, policy=POLICY, now=at
            )
    fresh = await recovery.issue_token(conn, user_id=uid, ttl_seconds=600, kind="reset", now=T0)
    for _ in range(6):  # 4 tries above + 6 = 10 consumptions in 5 minutes from this address
        with pytest.raises(recovery.LinkInvalid):
            await recovery.consume(
                conn, web_ctx, hasher, token="y" * 43, new_password=NEW, policy=POLICY, now=T0
            )
    with pytest.raises(recovery.LinkInvalid):  # REC-3: silent, even for a good link
        await recovery.consume(
            conn, web_ctx, hasher, token=fresh, new_password=NEW, policy=POLICY, now=T0
        )
    assert await recovery.peek(conn, fresh, now=T0)


async def test_emergency_tokens_revoke_with_their_own_reason(conn, web_ctx, hasher) -> None:
    """R4-1: the CLI's emergency link consumes like a reset, recorded as emergency_recovery."""
    uid, _ = await make_user(conn, email="gus@example.com")
    await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    token = await recovery.issue_token(conn, user_id=uid, ttl_seconds=900, kind="emergency", now=T0)
    await recovery.consume(
        conn, web_ctx, hasher, token=token, new_password=NEW, policy=POLICY, now=T0
    )
    cur = await conn.execute("SELECT revoked_reason FROM keel_sessions")
    assert (await cur.fetchone())[0] == "emergency_recovery"
    with pytest.raises(ValueError):
        await recovery.issue_token(conn, user_id=uid, ttl_seconds=900, kind="forever")  # type: ignore[arg-type]


async def test_signed_in_change_needs_the_old_password_and_ends_other_sessions(
    conn, ctx, hasher
) -> None:
    """REC-4."""
    uid, _ = await make_user(conn, email="hal@example.com")
    _, mine = await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    other, _ = await sessions.create(conn, user_id=uid, now=T0, absolute=43200)
    common = {"user_id": uid, "session_id": mine.id, "policy": POLICY, "now": T0}
    cases = [
        ({"old_password": "wrong", "new_password": NEW, "confirm": NEW}, "old_password"),
        ({"old_password": DEFAULT_PASSWORD, "new_password": NEW, "confirm": NEW + "x"}, "confirm"),
        (
            {"old_password": DEFAULT_PASSWORD, "new_password": "hal", "confirm": "hal"},
            "new_password",
        ),
        ({"old_password": DEFAULT_PASSWORD, "new_password": None, "confirm": None}, "confirm"),
    ]
    for fields, bad in cases:
        with pytest.raises(Invalid) as refused:
            await recovery.change_password(conn, ctx, hasher, **common, **fields)
        assert bad in refused.value.fields
    await recovery.change_password(
        conn, ctx, hasher, **common, old_password=DEFAULT_PASSWORD, new_password=NEW, confirm=NEW
    )
    assert await sessions.lookup(conn, other, now=T0, idle=1800) is None
    cur = await conn.execute("SELECT revoked_at FROM keel_sessions WHERE id = %s", (mine.id,))
    assert (await cur.fetchone())[0] is None
    cur = await conn.execute(
        "SELECT count(*) FROM keel_audit WHERE event_type = 'password_changed_self'"
    )
    assert (await cur.fetchone())[0] == 1
    # MAIL-3: the owner hears of it, with when and where
    [(to, body)] = await _outbox(conn, ctx)
    assert to == "hal@example.com" and "was changed" in body and "other sessions" in body


async def test_forced_change_refuses_to_keep_the_temporary_password(conn, ctx, hasher) -> None:
    """LOGIN-7."""
    uid, _ = await make_user(conn, email="ida@example.com", must_change_password=True)
    kw = {"user_id": uid, "session_id": None, "old_password": "", "policy": POLICY, "forced": True}
    with pytest.raises(Invalid, match="different"):
        await recovery.change_password(
            conn, ctx, hasher, **kw, new_password=DEFAULT_PASSWORD, confirm=DEFAULT_PASSWORD
        )
    await recovery.change_password(conn, ctx, hasher, **kw, new_password=NEW, confirm=NEW)
    cur = await conn.execute("SELECT must_change_password FROM keel_users WHERE id = %s", (uid,))
    assert (await cur.fetchone())[0] is False
    cur = await conn.execute(
        "SELECT count(*) FROM keel_audit WHERE event_type = 'forced_password_change_completed'"
    )
    assert (await cur.fetchone())[0] == 1


async def test_a_reset_lifts_the_throttle_lock_but_never_an_administrators(
    conn, web_ctx, hasher, admin
) -> None:
    """REC-2 with LOGIN-2/REC-5: proving control of the mailbox ends the automatic 15-minute
    lock, but a lock an administrator set (here: until unlocked) outlives a self-service reset."""
    from app.authority import login, users

    async def sign_in(email: str, password: str, at: datetime) -> login.LoginResult:
        return await login.login(
            login.using(conn),
            web_ctx,
            hasher,
            email=email,
            password=password,
            now=at,
            absolute=43200,
        )

    async def reset(email: str, at: datetime) -> None:
        await conn.execute("DELETE FROM keel_outbox")
        await _ask(conn, web_ctx, email, at)
        [(_, body)] = [m for m in await _outbox(conn, web_ctx) if m[0] == email]
        await recovery.consume(
            conn,
            web_ctx,
            hasher,
            token=_token_from(body),
            new_password=NEW,
            policy=POLICY,
            now=at,
        )

    await make_user(conn, email="gus@example.com")
    for i in range(5):
        await sign_in("gus@example.com", "wrong guess", T0 + timedelta(minutes=i))
    assert (
        await sign_in("gus@example.com", "wrong guess", T0 + timedelta(minutes=5))
    ).reason == "locked"
    await reset("gus@example.com", T0 + timedelta(minutes=6))
    assert (await sign_in("gus@example.com", NEW, T0 + timedelta(minutes=7))).ok

    uid, _ = await make_user(conn, email="hal@example.com")
    await users.lock(conn, web_ctx, admin, uid, until=None, reason="laptop reported stolen")
    await reset("hal@example.com", T0 + timedelta(minutes=8))
    refused = await sign_in("hal@example.com", NEW, T0 + timedelta(minutes=9))
    assert not refused.ok and refused.reason == "locked"
    cur = await conn.execute("SELECT locked_until FROM keel_users WHERE id = %s", (uid,))
    assert (await cur.fetchone())[0] == users.LOCKED_INDEFINITELY
