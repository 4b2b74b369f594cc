"""The second factor as a service: RFC 6238, stored secrets, backup codes, replay, policy."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyotp
import pytest

from app.audit import Context
from app.authority import login, mfa
from app.config import parse_mfa_policy
from app.errors import ConfigError, Invalid
from tests.authority.conftest import make_user

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
Conn = psycopg.AsyncConnection[Any]


# RFC 6238 appendix B, SHA-1: the ASCII seed "12345678901234567890", 8 digits.
RFC_SEED = b"12345678901234567890"
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("t", "expected"), RFC_VECTORS)
def test_rfc6238_vectors(t: int, expected: str) -> None:
    secret = base64.b32encode(RFC_SEED).decode()
    assert pyotp.TOTP(secret, digits=8, interval=30).at(t) == expected
    # Our six-digit codes are the last six digits of the same truncation.
    assert mfa.code_at(secret, t // 30) == expected[-6:]


def _independent_code(secret_b32: str, at: datetime) -> str:
    """RFC 4226/6238 written out here, not through pyotp: what any authenticator app does."""
    key = base64.b32decode(secret_b32)
    digest = hmac.new(key, struct.pack(">Q", int(at.timestamp()) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def test_matching_step_allows_one_step_of_skew_and_no_more() -> None:
    secret = pyotp.random_base32()
    step = int(T0.timestamp()) // 30
    for delta in (-1, 0, 1):
        assert mfa.matching_step(secret, mfa.code_at(secret, step + delta), T0) == step + delta
    for delta in (-2, 2):
        assert mfa.matching_step(secret, mfa.code_at(secret, step + delta), T0) is None
    assert mfa.matching_step(secret, "abcdef", T0) is None
    assert mfa.matching_step(secret, "", T0) is None


def test_policy_syntax() -> None:
    assert parse_mfa_policy("k", "Required: developer, administrator") == (
        "required:administrator,developer"
    )
    assert parse_mfa_policy("k", "disabled") == "off"
    policy = mfa.Policy.parse("required:administrator")
    assert policy.requires("administrator") and not policy.requires("staff")
    assert mfa.Policy.parse("required").requires("user")
    assert not mfa.Policy.parse("optional").requires("developer")
    assert not mfa.Policy.parse("off").enabled
    for bad in ("sometimes", "required:", "required:admins", "roles:staff"):
        with pytest.raises(ConfigError) as info:
            parse_mfa_policy("mfa_policy", bad)
        assert "mfa_policy" in info.value.problem and info.value.fix


def test_key_ring_keeps_old_enrolments_working() -> None:
    old = mfa.KeyRing.from_secret_keys("old-secret-key-0123456789abcdef")
    stored = mfa.new_stored(old)
    secret = mfa.secret_for(old, 7, stored)
    rotated = mfa.KeyRing.from_secret_keys(
        "new-secret-key-0123456789abcdef", "old-secret-key-0123456789abcdef"
    )
    assert mfa.secret_for(rotated, 7, stored) == secret
    assert mfa.new_stored(rotated)[1:5] != stored[1:5]  # new enrolments use the new key
    gone = mfa.KeyRing.from_secret_keys("new-secret-key-0123456789abcdef")
    with pytest.raises(LookupError):
        mfa.secret_for(gone, 7, stored)
    assert mfa.secret_for(old, 8, stored) != secret  # bound to the user


async def enrol(conn: Conn, ctx: Context, ring: mfa.KeyRing, user_id: int) -> tuple[str, list[str]]:
    secret = await mfa.start_enrolment(conn, ring, user_id)
    codes = await mfa.confirm_enrolment(
        conn, ctx, ring, user_id, _independent_code(secret, T0 - timedelta(seconds=30)), now=T0
    )
    return secret, codes


async def test_enrolment_needs_a_right_code(conn: Conn, ctx: Context, secret_key: str) -> None:
    ring = mfa.KeyRing.from_secret_keys(secret_key)
    user_id, _ = await make_user(conn)
    secret = await mfa.start_enrolment(conn, ring, user_id)
    wrong = f"{(int(_independent_code(secret, T0)) + 1) % 1_000_000:06d}"
    with pytest.raises(Invalid):
        await mfa.confirm_enrolment(conn, ctx, ring, user_id, wrong, now=T0)
    assert not (await mfa.state(conn, ring, user_id)).enabled
    codes = await mfa.confirm_enrolment(
        conn, ctx, ring, user_id, _independent_code(secret, T0), now=T0
    )
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 9 and c[4] == "-" for c in codes)
    state = await mfa.state(conn, ring, user_id)
    assert state.enabled and state.backup_codes_left == 10 and state.pending_secret is None


async def test_codes_are_single_use_and_failures_lock(
    conn: Conn, ctx: Context, secret_key: str
) -> None:
    ring = mfa.KeyRing.from_secret_keys(secret_key)
    user_id, _ = await make_user(conn)
    secret, backup = await enrol(conn, ctx, ring, user_id)
    at = T0 + timedelta(seconds=60)
    code = _independent_code(secret, at)
    assert await mfa.check_code(conn, ctx, ring, user_id=user_id, code=code, now=at) == "totp"
    # The same code again, also a second later inside the same step: refused (replay).
    assert await mfa.check_code(conn, ctx, ring, user_id=user_id, code=code, now=at) is None
    assert await mfa.check_code(conn, ctx, ring, user_id=user_id, code=backup[0], now=at) == (
        "backup_code"
    )
    assert await mfa.check_code(conn, ctx, ring, user_id=user_id, code=backup[0], now=at) is None
    assert await mfa.remaining_backup_codes(conn, user_id) == 9
    throttle = login.Throttle(failures=3)
    for _ in range(3):
        assert (
            await mfa.check_code(
                conn, ctx, ring, user_id=user_id, code="000000", now=at, throttle=throttle
            )
            is None
        )
    # Locked now: even a right backup code is refused.
    assert (
        await mfa.check_code(
            conn, ctx, ring, user_id=user_id, code=backup[1], now=at, throttle=throttle
        )
        is None
    )
    cur = await conn.execute("SELECT locked_until FROM keel_users WHERE id = %s", (user_id,))
    assert (await cur.fetchone())[0] is not None  # type: ignore[index]


def _candidates(value: object) -> list[bytes]:
    """Every way a value from a dump might be read as a TOTP key."""
    out: list[bytes] = []
    if isinstance(value, memoryview | bytes | bytearray):
        raw = bytes(value)
        out += [raw, raw[1:], raw[5:], raw[-20:]]
        text = raw.hex()
    else:
        text = str(value)
        out.append(text.encode())
    for attempt in (text, text.upper(), text.replace("-", "")):
        for decode in (base64.b32decode, bytes.fromhex, base64.b64decode):
            try:
                padded = (
                    attempt + "=" * (-len(attempt) % 8) if decode is base64.b32decode else attempt
                )
                out.append(decode(padded))
            except (binascii.Error, ValueError):
                pass
    return [c for c in out if c]


async def test_a_database_dump_cannot_make_a_code(
    conn: Conn, ctx: Context, secret_key: str
) -> None:
    ring = mfa.KeyRing.from_secret_keys(secret_key)
    user_id, _ = await make_user(conn)
    secret, _codes = await enrol(conn, ctx, ring, user_id)
    at = T0 + timedelta(seconds=90)
    wanted = {_independent_code(secret, at + timedelta(seconds=d)) for d in (-30, 0, 30)}
    cur = await conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY 1, 2"
    )
    columns = await cur.fetchall()
    seen = 0
    for table, column in columns:
        rows = await conn.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')
        for (value,) in await rows.fetchall():
            for key in _candidates(value):
                seen += 1
                made = _independent_code(base64.b32encode(key).decode(), at)
                assert made not in wanted, f"{table}.{column} gives a valid code"
    assert seen > 100
    cur = await conn.execute("SELECT mfa_secret_enc FROM keel_users WHERE id = %s", (user_id,))
    stored = bytes((await cur.fetchone())[0])  # type: ignore[index]
    assert base64.b32decode(secret) not in stored


async def test_break_glass_clears_enrolment_codes_and_sessions(
    conn: Conn, ctx: Context, secret_key: str
) -> None:
    from app.authority import breakglass, sessions

    ring = mfa.KeyRing.from_secret_keys(secret_key)
    user_id, _ = await make_user(conn, email="lostphone@example.com")
    await enrol(conn, ctx, ring, user_id)
    await sessions.create(conn, user_id=user_id, absolute=3600)
    await breakglass.disable_mfa(
        conn, ctx, email="lostphone@example.com", reason="lost the phone, ticket 42"
    )
    cur = await conn.execute(
        "SELECT mfa_secret_enc, mfa_enabled_at, mfa_last_step FROM keel_users WHERE id = %s",
        (user_id,),
    )
    assert await cur.fetchone() == (None, None, None)
    assert await mfa.remaining_backup_codes(conn, user_id) == 0
    cur = await conn.execute(
        "SELECT count(*) FROM keel_sessions WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    assert (await cur.fetchone())[0] == 0  # type: ignore[index]
    cur = await conn.execute(
        "SELECT count(*) FROM keel_audit WHERE event_type = 'emergency_recovery'"
        " AND target_id = %s",
        (str(user_id),),
    )
    assert (await cur.fetchone())[0] == 1  # type: ignore[index]
