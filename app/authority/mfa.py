"""The second factor: TOTP with replay protection, backup codes, enrolment, policy (MFA-1..4).

The TOTP secret is never stored. The database keeps a random nonce and the id of the key it was
made under; the secret is `HMAC-SHA256(key, "totp" | user id | nonce)`, so only a server that
holds `secret_key` can compute codes (docs/decisions.md, "Second factor secrets"). Backup codes
are stored as keyed HMACs too. Each function that changes state opens its own transaction and
records its audit event inside it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import pyotp
import segno

from app import audit
from app import audit_events as events
from app.authority import guards, login, ratelimit, sessions, users
from app.authority.principal import Principal
from app.config import parse_mfa_policy
from app.errors import Conflict, Invalid, PermissionDenied

Conn = psycopg.AsyncConnection[Any]

DIGITS = 6
PERIOD = 30
SKEW_STEPS = 1  # one step either side: a phone clock 30 s off still works
BACKUP_CODE_COUNT = 10
# Unambiguous letters and digits: no 0/O, 1/I/L.
BACKUP_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_FORMAT = b"\x01"
_NONCE_LEN = 20
_KEY_ID_LEN = 4
Kind = Literal["totp", "backup_code"]
_DEFAULT_THROTTLE = login.Throttle()


# ---- keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRing:
    """The keys second-factor secrets are derived under, by id; `current` makes new ones.

    One entry per key of the secret key ring (`secret_keys`, the signing key first), so
    enrolments made before a key rotation keep working while their key stays in the ring."""

    current: bytes
    keys: dict[bytes, bytes]

    @classmethod
    def from_secret_keys(cls, secret_key: str, *older: str) -> KeyRing:
        derived = [_derive(k) for k in (secret_key, *older)]
        return cls(current=_key_id(derived[0]), keys={_key_id(k): k for k in derived})

    def key(self, key_id: bytes) -> bytes:
        found = self.keys.get(key_id)
        if found is None:
            raise LookupError("the key this second factor was made with is no longer configured")
        return found


def key_id_for(secret_key: str) -> bytes:
    """The id second factors made under this secret key carry (app/keyring.py asks)."""
    return _key_id(_derive(secret_key))


def _derive(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"keel second factor v1", hashlib.sha256).digest()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"keel key id\x00" + key).digest()[:_KEY_ID_LEN]


def new_stored(ring: KeyRing) -> bytes:
    """What `mfa_secret_enc` keeps for a new enrolment: format, key id, nonce."""
    return _FORMAT + ring.current + secrets.token_bytes(_NONCE_LEN)


def secret_for(ring: KeyRing, user_id: int, stored: bytes) -> str:
    """The base32 TOTP secret of a user from the stored nonce (20 bytes, 160 bits)."""
    if len(stored) != 1 + _KEY_ID_LEN + _NONCE_LEN or stored[:1] != _FORMAT:
        raise LookupError("the stored second factor has an unknown format")
    key = ring.key(stored[1 : 1 + _KEY_ID_LEN])
    raw = hmac.new(
        key, b"totp\x00" + user_id.to_bytes(8, "big") + stored[1:], hashlib.sha256
    ).digest()[:20]
    return base64.b32encode(raw).decode("ascii")


# ---- TOTP (RFC 6238) ----------------------------------------------------------------------


def code_at(secret_b32: str, step: int) -> str:
    return pyotp.TOTP(secret_b32, digits=DIGITS, interval=PERIOD).generate_otp(step)


def matching_step(secret_b32: str, code: str, at: datetime) -> int | None:
    """The time step (±1) whose code is `code`, or None. Constant-time comparison."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    now_step = int(at.timestamp()) // PERIOD
    found = None
    for step in range(now_step - SKEW_STEPS, now_step + SKEW_STEPS + 1):
        if hmac.compare_digest(code_at(secret_b32, step), code):
            found = step
    return found


def provisioning_uri(secret_b32: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret_b32, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=email, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The QR code as an inline <svg> element (no data: URL, which the CSP refuses)."""
    qr = segno.make(uri, error="m")
    svg: str = qr.svg_inline(scale=4, dark="#000", light="#fff", omitsize=False)
    return svg


# ---- backup codes -------------------------------------------------------------------------


def new_backup_code() -> str:
    chars = "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(8))
    return chars[:4] + "-" + chars[4:]


def normalise_backup_code(raw: str) -> str | None:
    text = raw.strip().upper().replace("-", "").replace(" ", "")
    if len(text) != 8 or any(c not in BACKUP_ALPHABET for c in text):
        return None
    return text


def _backup_hash(key: bytes, user_id: int, normalised: str) -> bytes:
    msg = b"backup\x00" + user_id.to_bytes(8, "big") + normalised.encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).digest()


async def _write_backup_codes(conn: Conn, ring: KeyRing, user_id: int) -> list[str]:
    await conn.execute("DELETE FROM keel_mfa_backup_codes WHERE user_id = %s", (user_id,))
    codes = [new_backup_code() for _ in range(BACKUP_CODE_COUNT)]
    key = ring.key(ring.current)
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO keel_mfa_backup_codes (user_id, key_id, code_hash) VALUES (%s, %s, %s)",
            [
                (user_id, ring.current, _backup_hash(key, user_id, normalise_backup_code(c) or ""))
                for c in codes
            ],
        )
    return codes


async def remaining_backup_codes(conn: Conn, user_id: int) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM keel_mfa_backup_codes WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# ---- policy (MFA-4) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """`off`, `optional`, `required`, or `required:<role>,<role>` (required for those roles)."""

    mode: Literal["off", "optional", "required"]
    roles: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str, key: str = "mfa_policy") -> Policy:
        text = parse_mfa_policy(key, raw)
        if text.startswith("required:"):
            return cls("required", frozenset(text[len("required:") :].split(",")))
        return cls("off" if text == "off" else "optional" if text == "optional" else "required")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def requires(self, role: str) -> bool:
        return self.mode == "required" and (not self.roles or role in self.roles)


def must_enrol(policy: Policy, who: Principal) -> bool:
    """Whether this signed-in user is held on the enrolment page until they set it up."""
    return policy.requires(who.role) and not who.mfa_enabled


# ---- state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    enabled: bool
    pending_secret: str | None  # shown while enrolment waits for its first code
    backup_codes_left: int


async def _row(conn: Conn, user_id: int, *, lock: bool = False) -> tuple[Any, ...]:
    cur = await conn.execute(
        "SELECT email, role, mfa_secret_enc, mfa_enabled_at, mfa_last_step, mfa_required_since"
        " FROM keel_users WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (user_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError("no such user")
    return tuple(row)


async def state(conn: Conn, ring: KeyRing, user_id: int) -> State:
    _email, _role, stored, enabled_at, _step, _since = await _row(conn, user_id)
    pending = None
    if stored is not None and enabled_at is None:
        try:
            pending = secret_for(ring, user_id, bytes(stored))
        except LookupError:
            pending = None
    return State(enabled_at is not None, pending, await remaining_backup_codes(conn, user_id))


# ---- enrolment ----------------------------------------------------------------------------


async def start_enrolment(conn: Conn, ring: KeyRing, user_id: int) -> str:
    """A fresh secret, kept unconfirmed until `confirm_enrolment`; returns it (base32)."""
    async with conn.transaction():
        _email, _role, _stored, enabled_at, _step, _since = await _row(conn, user_id, lock=True)
        if enabled_at is not None:
            raise Conflict("Two-step sign-in is already on for this account.")
        stored = new_stored(ring)
        await conn.execute(
            "UPDATE keel_users SET mfa_secret_enc = %s, mfa_last_step = NULL, updated_at = now()"
            " WHERE id = %s",
            (stored, user_id),
        )
    return secret_for(ring, user_id, stored)


async def confirm_enrolment(
    conn: Conn,
    ctx: audit.Context,
    ring: KeyRing,
    user_id: int,
    code: str,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Turn the second factor on once the user proves their app shows the right code; returns
    the ten backup codes, shown once. Other sessions of the user end."""
    at = now or datetime.now(UTC)
    async with conn.transaction():
        email, _role, stored, enabled_at, _step, _since = await _row(conn, user_id, lock=True)
        if enabled_at is not None:
            raise Conflict("Two-step sign-in is already on for this account.")
        if stored is None:
            raise Invalid("Start again: no setup is waiting.", fields={"code": "no setup"})
        step = matching_step(secret_for(ring, user_id, bytes(stored)), code, at)
        if step is None:
            raise Invalid(
                "That code is not right. Enter the six digits your app shows now.",
                fields={"code": "wrong code"},
            )
        await conn.execute(
            "UPDATE keel_users SET mfa_enabled_at = %s, mfa_last_step = %s,"
            " mfa_required_since = NULL, updated_at = now() WHERE id = %s",
            (at, step, user_id),
        )
        codes = await _write_backup_codes(conn, ring, user_id)
        await audit.record(conn, ctx, events.mfa_enabled(user_id, email))
        others = await sessions.list_for_user(conn, user_id, at, idle=10**9)
        for other in others:
            if other.id != ctx.session_id:
                await sessions.revoke(conn, ctx, reason="mfa_enabled", session_id=other.id)
    return codes


async def regenerate_backup_codes(
    conn: Conn, ctx: audit.Context, ring: KeyRing, user_id: int
) -> list[str]:
    async with conn.transaction():
        email, _role, _stored, enabled_at, _step, _since = await _row(conn, user_id, lock=True)
        if enabled_at is None:
            raise Conflict("Two-step sign-in is off, so there are no backup codes to replace.")
        codes = await _write_backup_codes(conn, ring, user_id)
        await audit.record(conn, ctx, events.backup_codes_regenerated(user_id, email))
    return codes


async def clear_enrolment(conn: Conn, user_id: int) -> None:
    """Remove the second factor and its backup codes (inside the caller's transaction)."""
    await conn.execute(
        "UPDATE keel_users SET mfa_secret_enc = NULL, mfa_enabled_at = NULL, mfa_last_step = NULL,"
        " mfa_required_since = NULL, updated_at = now() WHERE id = %s",
        (user_id,),
    )
    await conn.execute("DELETE FROM keel_mfa_backup_codes WHERE user_id = %s", (user_id,))


async def disable_own(conn: Conn, ctx: audit.Context, policy: Policy, who: Principal) -> None:
    """The user turns it off (behind the re-auth wall); refused where the policy requires it."""
    if policy.requires(who.role):
        raise PermissionDenied(
            "Two-step sign-in is required for your account, so it cannot be turned off.",
            "an administrator's reset",
            fix="if you lost your phone, ask an administrator to reset it",
        )
    async with conn.transaction():
        email, _role, _stored, enabled_at, _step, _since = await _row(conn, who.user_id, lock=True)
        if enabled_at is None:
            raise Conflict("Two-step sign-in is already off.")
        await clear_enrolment(conn, who.user_id)
        await audit.record(conn, ctx, events.mfa_disabled(who.user_id, email))
        others = await sessions.list_for_user(conn, who.user_id, datetime.now(UTC), idle=10**9)
        for other in others:
            if other.id != ctx.session_id:
                await sessions.revoke(conn, ctx, reason="mfa_disabled", session_id=other.id)


async def disable_for_user(
    conn: Conn, ctx: audit.Context, actor: Principal, user_id: int, *, reason: str = ""
) -> None:
    """An administrator turns off someone else's second factor (lost phone): the usual rank
    guard applies; their sessions end and the next sign-in is password only."""
    async with conn.transaction():
        target = await users.get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        if not target.mfa_enabled:
            raise Conflict(f"Two-step sign-in is already off for {target.email}.")
        await clear_enrolment(conn, target.id)
        note = reason.strip()[:500] or "turned off by an administrator"
        await audit.record(conn, ctx, events.mfa_reset_by_other(target.id, target.email, note))
        await users.revoke_sessions(conn, ctx, target.id, "mfa_disabled_by_other")


# ---- the sign-in step (MFA-3) -------------------------------------------------------------


async def _consume_totp(conn: Conn, ring: KeyRing, user_id: int, code: str, at: datetime) -> bool:
    _email, _role, stored, enabled_at, _last, _since = await _row(conn, user_id)
    if stored is None or enabled_at is None:
        return False
    step = matching_step(secret_for(ring, user_id, bytes(stored)), code, at)
    if step is None:
        return False
    # Conditional: of two servers accepting the same code at once, only one row update wins;
    # any step at or before the last one used is refused (replay).
    cur = await conn.execute(
        "UPDATE keel_users SET mfa_last_step = %s WHERE id = %s AND mfa_enabled_at IS NOT NULL"
        " AND (mfa_last_step IS NULL OR mfa_last_step < %s) RETURNING id",
        (step, user_id, step),
    )
    return await cur.fetchone() is not None


async def _consume_backup(conn: Conn, ring: KeyRing, user_id: int, code: str) -> bool:
    normalised = normalise_backup_code(code)
    if normalised is None:
        return False
    for key_id, key in ring.keys.items():
        cur = await conn.execute(
            "UPDATE keel_mfa_backup_codes SET used_at = now() WHERE user_id = %s AND key_id = %s"
            " AND code_hash = %s AND used_at IS NULL RETURNING id",
            (user_id, key_id, _backup_hash(key, user_id, normalised)),
        )
        if await cur.fetchone() is not None:
            return True
    return False


async def check_code(
    conn: Conn,
    ctx: audit.Context,
    ring: KeyRing,
    *,
    user_id: int,
    code: str,
    now: datetime | None = None,
    throttle: login.Throttle = _DEFAULT_THROTTLE,
    during: str = "sign_in",
) -> Kind | None:
    """Verify and use up a code (authenticator or backup) under the sign-in throttle: a wrong
    code counts toward the same account lock as a wrong password (LOGIN-2)."""
    at = now or datetime.now(UTC)
    account = await login.account_by_id(conn, user_id)
    if account is None or not account.is_active:
        return None
    if not await login.reserve(conn, user_id, at, throttle):
        await audit.record(
            conn,
            ctx,
            events.login_failed(
                account.email, "locked", user_id=user_id, details={"during": during}
            ),
        )
        return None
    kind: Kind | None = None
    async with conn.transaction():
        if await _consume_totp(conn, ring, user_id, code, at):
            kind = "totp"
        elif await _consume_backup(conn, ring, user_id, code):
            kind = "backup_code"
        if kind is not None:
            await ratelimit.clear(conn, throttle.fail_limit, user_id)
            left = await remaining_backup_codes(conn, user_id)
            event = events.mfa_code_consumed(
                user_id, account.email, kind, remaining_backup_codes=left,
                details={"during": during},
            )  # fmt: skip
            await audit.record(conn, ctx, event)
    if kind is None:
        await login.failed(conn, ctx, account, at, throttle, reason="wrong_code", during=during)
        return None
    return kind


async def complete_sign_in(
    conn: Conn,
    ctx: audit.Context,
    ring: KeyRing,
    *,
    current: sessions.Session,
    code: str,
    absolute: float,
    now: datetime | None = None,
    throttle: login.Throttle = _DEFAULT_THROTTLE,
) -> tuple[str, sessions.Session, Kind] | None:
    """The second step: a right code rotates the pending session to `mfa_verified`, lasting
    the normal session lifetime from now; None for a wrong, used or throttled code."""
    at = now or datetime.now(UTC)
    if current.trust != "pending":
        return None
    kind = await check_code(
        conn, ctx, ring, user_id=current.user_id, code=code, now=at, throttle=throttle
    )
    if kind is None:
        return None
    account = await login.account_by_id(conn, current.user_id)
    assert account is not None
    async with conn.transaction():
        token, new = await sessions.rotate(
            conn, ctx, current, trust="mfa_verified", now=at,
            expires_at=at + timedelta(seconds=absolute),
        )  # fmt: skip
        await login.finish(
            conn, ctx, account, session_id=new.id, now=at, throttle=throttle, mfa=True
        )
    return token, new, kind


async def enrolment_overdue(
    conn: Conn,
    ctx: audit.Context,
    policy: Policy,
    *,
    user_id: int,
    email: str,
    role: str,
    grace: float,
    now: datetime,
) -> bool:
    """For a user the policy requires to enrol and who has not: start the grace period at the
    first such sign-in; True once it has run out (the password alone no longer signs in).
    Either way the sign-in is audited as the policy enforced: sent to set up, or refused."""
    if not policy.requires(role):
        return False
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE keel_users SET mfa_required_since = coalesce(mfa_required_since, %s)"
            " WHERE id = %s AND mfa_enabled_at IS NULL RETURNING mfa_required_since",
            (now, user_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False  # enrolled
        ends: datetime = row[0] + timedelta(seconds=grace)
        overdue = now > ends
        event = events.mfa_policy_enforced(
            user_id, email, action="refused_setup_overdue" if overdue else "sent_to_setup",
            grace_ends_at=ends,
        )  # fmt: skip
        await audit.record(conn, ctx, event)
    return overdue
