"""Sign-in: one uniform failure, per-account and per-IP throttles in Postgres (LOGIN-1..5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from app import audit, mail
from app import audit_events as events
from app.authority import ratelimit, sessions, users
from app.authority.passwords import Hasher
from app.config import Config
from app.errors import KeelError

log = logging.getLogger("keel.login")
Conn = psycopg.AsyncConnection[Any]
# Lends a connection for one step: the app's `pool.connection`, or `using(conn)`.
Db = Callable[[], AbstractAsyncContextManager[Conn]]
Reason = Literal["unknown", "wrong_password", "inactive", "locked", "enrolment_overdue"]
EMAIL_MAX = 320


class RateLimited(Exception):
    """Too many attempts from one client address (LOGIN-3): answer 429 with Retry-After."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Throttle:
    """LOGIN-2/3 numbers: 5 failures in a sliding 10 minutes lock for 15; 30 tries/min per IP."""

    failures: int = 5
    window: float = 600.0
    lock_for: float = 900.0
    ip_limit: int = 30
    ip_window: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> Throttle:
        return cls(
            failures=config.login_lock_failures,
            window=config.login_lock_window,
            lock_for=config.login_lock_duration,
            ip_limit=config.login_ip_limit,
        )

    @property
    def fail_limit(self) -> ratelimit.Limit:
        return ratelimit.Limit(ratelimit.LOGIN_FAIL.bucket, self.failures, self.window)

    @property
    def ip(self) -> ratelimit.Limit:
        return ratelimit.Limit(ratelimit.LOGIN_IP.bucket, self.ip_limit, self.ip_window)


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    password_hash: str | None
    is_active: bool
    locked_until: datetime | None
    role: str
    must_change_password: bool
    mfa_enabled: bool


@dataclass(frozen=True)
class SecondFactor:
    """What sign-in needs to know about the second factor (MFA-3/4), given by the caller so this
    module does not import the MFA module: how long a session owing a code lives (None: the
    feature is off, the password alone signs in), and whether the grace period to set one up
    is over for an account."""

    pending_lifetime: float | None = None
    overdue: Callable[[Conn, audit.Context, Account, datetime], Awaitable[bool]] | None = None


@dataclass(frozen=True)
class LoginResult:
    """The outcome; the web layer shows the same page for every failure (LOGIN-1)."""

    ok: bool
    reason: Reason | None = None
    account: Account | None = None
    token: str | None = None
    session: sessions.Session | None = None


_ACCOUNT = (
    "SELECT id, email, password_hash, is_active, locked_until, role, must_change_password,"
    " mfa_enabled_at IS NOT NULL FROM keel_users"
)


def normalise_email(raw: object) -> str | None:
    """Lowercase and trimmed (AUTHZ-1), or None when it cannot be an address at all."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_MAX or not email.isprintable() or "@" not in email:
        return None
    return email


async def account_by_email(conn: Conn, email: str) -> Account | None:
    cur = await conn.execute(_ACCOUNT + " WHERE email = %s", (email,))
    row = await cur.fetchone()
    return Account(*row) if row else None


async def account_by_id(conn: Conn, user_id: int, *, for_update: bool = False) -> Account | None:
    cur = await conn.execute(
        _ACCOUNT + " WHERE id = %s" + (" FOR UPDATE" if for_update else ""), (user_id,)
    )
    row = await cur.fetchone()
    return Account(*row) if row else None


async def reserve(conn: Conn, user_id: int, now: datetime, throttle: Throttle) -> bool:
    """Check the lock BEFORE verifying (LOGIN-2) and count this try as a failure until proven
    right, so even concurrent guesses on several hosts get at most `failures` verifications."""
    async with conn.transaction():
        account = await account_by_id(conn, user_id, for_update=True)
        if account is None:
            return False
        if account.locked_until is not None and account.locked_until > now:
            return False
        if await ratelimit.count(conn, throttle.fail_limit, user_id, now=now) >= throttle.failures:
            return False
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key, at) VALUES (%s, %s, %s)",
            (throttle.fail_limit.bucket, str(user_id), now),
        )
    return True


async def failed(
    conn: Conn,
    ctx: audit.Context,
    account: Account,
    now: datetime,
    throttle: Throttle,
    *,
    site_name: str = "Keel",
    reason: Literal["wrong_password", "wrong_code"] = "wrong_password",
    **meta: Any,
) -> None:
    """A wrong password or second-factor code: count it, lock on the threshold, audit both (LOGIN-2, LOGIN-4)."""
    async with conn.transaction():
        await account_by_id(conn, account.id, for_update=True)
        failures = await ratelimit.count(conn, throttle.fail_limit, account.id, now=now)
        until = now + timedelta(seconds=throttle.lock_for)
        cur = await conn.execute(
            "UPDATE keel_users SET failed_login_count = failed_login_count + 1,"
            " last_failed_login_at = %s,"
            " locked_until = CASE WHEN %s AND (locked_until IS NULL OR locked_until <= %s)"
            " THEN %s ELSE locked_until END WHERE id = %s RETURNING locked_until",
            (now, failures >= throttle.failures, now, until, account.id),
        )
        row = await cur.fetchone()
        await audit.record(
            conn,
            ctx,
            events.login_failed(account.email, reason, user_id=account.id, details=meta),
        )
        if failures >= throttle.failures and row and row[0] == until:
            await audit.record(
                conn,
                ctx,
                events.account_locked(account.id, account.email, via="auto_throttle", until=until),
            )
            await _notify_locked(conn, ctx, account.email, until, site_name)


async def _notify_locked(
    conn: Conn, ctx: audit.Context, email: str, until: datetime, site_name: str
) -> None:
    """MAIL-3: the owner learns of the lock; a mail problem never undoes the lock."""
    try:
        async with conn.transaction():
            await mail.enqueue(
                conn,
                to=email,
                template="account_locked",
                context={
                    "site_name": site_name, "email": email, "when": until, "ip": ctx.ip,
                    "device": ctx.user_agent, "until": until,
                    "reason": "too many failed sign-in attempts",
                },
            )  # fmt: skip
    except (KeelError, psycopg.Error):
        log.warning("account-locked mail not queued", exc_info=True)


async def check_password(
    conn: Conn,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    user_id: int,
    password: str,
    now: datetime | None = None,
    throttle: Throttle = Throttle(),
    during: str = "reauth",
) -> bool:
    """Verify a signed-in user's password (re-auth, password change) under the same throttle,
    so a stolen session cannot be used to guess the password (LOGIN-2, REAUTH-1)."""
    at = now or datetime.now(UTC)
    account = await account_by_id(conn, user_id)
    if account is None or not account.is_active:
        await hasher.dummy_verify(password)
        return False
    if not await reserve(conn, account.id, at, throttle):
        await hasher.dummy_verify(password)
        await audit.record(
            conn,
            ctx,
            events.login_failed(
                account.email, "locked", user_id=account.id, details={"during": during}
            ),
        )
        return False
    ok, _rehash = await hasher.verify(account.password_hash, password)
    if ok:
        await ratelimit.clear(conn, throttle.fail_limit, account.id)
        return True
    await failed(conn, ctx, account, at, throttle, during=during)
    return False


def using(conn: Conn) -> Db:
    """A `Db` over one connection, for the CLI and tests."""

    @asynccontextmanager
    async def db() -> AsyncIterator[Conn]:
        yield conn

    return db


async def login(
    db: Db,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    email: object,
    password: str,
    now: datetime | None = None,
    absolute: float,
    throttle: Throttle = Throttle(),
    current: tuple[int, int] | None = None,
    site_name: str = "Keel",
    second_factor: SecondFactor | None = None,
) -> LoginResult:
    """One sign-in attempt (`current` = (session id, user id) of a session this browser already
    holds; it is retired, SESS-5). Raises RateLimited past the per-IP limit (LOGIN-3); otherwise a
    LoginResult whose failures differ only in `reason`, which never reaches the page.

    `db()` lends a connection for each database step, so none is held while Argon2 runs: a burst
    of sign-ins waits for the hashing pool, not for the connection pool (LOGIN-5, DB-6)."""
    at = now or datetime.now(UTC)
    async with db() as conn:
        retry = await ratelimit.hit(conn, throttle.ip, ctx.ip or "unknown", now=at)
        if retry is not None:
            log.warning("sign-in refused: too many attempts from here", extra={"ip": ctx.ip})
            raise RateLimited(retry)
        address = normalise_email(email)
        account = await account_by_email(conn, address) if address else None
    if account is None:
        # LOGIN-1/4: spend what a real verify costs; no audit row; log without the address.
        await hasher.dummy_verify(password)
        log.info("sign-in failed for an unknown account", extra={"ip": ctx.ip})
        return LoginResult(False, "unknown")
    if not account.is_active:
        await hasher.verify(account.password_hash, password)
        async with db() as conn:
            event = events.login_failed(account.email, "inactive", user_id=account.id)
            await audit.record(conn, ctx, event)
        return LoginResult(False, "inactive", account)
    async with db() as conn:
        allowed = await reserve(conn, account.id, at, throttle)
    if not allowed:
        await hasher.dummy_verify(password)
        async with db() as conn:
            event = events.login_failed(account.email, "locked", user_id=account.id)
            await audit.record(conn, ctx, event)
        return LoginResult(False, "locked", account)
    ok, needs_rehash = await hasher.verify(account.password_hash, password)
    async with db() as conn:
        if not ok:
            await failed(conn, ctx, account, at, throttle, site_name=site_name)
            return LoginResult(False, "wrong_password", account)
        rehashed = False
        if needs_rehash and account.password_hash:
            # LOGIN-5: compare-and-set on the old hash, in the users module that owns the column.
            rehashed = await users.rehash_on_login(
                conn, hasher, user_id=account.id, stored_hash=account.password_hash,
                password=password,
            )  # fmt: skip
        factor = second_factor or SecondFactor()
        if factor.overdue is not None and await factor.overdue(conn, ctx, account, at):
            # MFA-4: the grace period to set up the second factor is over; the password is
            # right but alone it no longer signs in. Not a failure of the password: no count.
            async with conn.transaction():
                await ratelimit.clear(conn, throttle.fail_limit, account.id)
                event = events.login_failed(
                    account.email, "locked", user_id=account.id,
                    details={"cause": "second_factor_setup_overdue"},
                )  # fmt: skip
                await audit.record(conn, ctx, event)
            return LoginResult(False, "enrolment_overdue", account)
        pending = account.mfa_enabled and factor.pending_lifetime is not None
        return await _succeeded(
            conn, ctx, account, now=at, absolute=absolute, throttle=throttle, current=current,
            rehashed=rehashed, pending_for=factor.pending_lifetime if pending else None,
        )  # fmt: skip


async def _succeeded(
    conn: Conn,
    ctx: audit.Context,
    account: Account,
    *,
    now: datetime,
    absolute: float,
    throttle: Throttle,
    current: tuple[int, int] | None,
    rehashed: bool,
    pending_for: float | None = None,
) -> LoginResult:
    async with conn.transaction():
        parent = None
        if current is not None:
            # SESS-5: a new token on login; a session already in this browser is retired.
            old_id, old_user = current
            await sessions.revoke(conn, ctx, reason="trust_escalation", session_id=old_id, now=now)
            parent = old_id if old_user == account.id else None
        token, sess = await sessions.create(
            conn,
            user_id=account.id,
            now=now,
            absolute=absolute,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            parent_id=parent,
            trust="pending" if pending_for is not None else "authenticated",
            expires_at=now + timedelta(seconds=pending_for) if pending_for is not None else None,
        )
        if pending_for is None:
            details = {"parameters_upgraded": True} if rehashed else None
            await finish(
                conn, ctx, account, session_id=sess.id, now=now, throttle=throttle, details=details
            )
        # MFA-3: with a second factor owed, the failure count is NOT reset here, so wrong codes
        # keep counting toward the same lock as wrong passwords; `finish` runs after the code.
    return LoginResult(True, None, account, token, sess)


async def finish(
    conn: Conn,
    ctx: audit.Context,
    account: Account,
    *,
    session_id: int,
    now: datetime,
    throttle: Throttle,
    mfa: bool = False,
    details: dict[str, Any] | None = None,
) -> None:
    """A sign-in is complete (password, and the second factor when owed): reset the counter
    (LOGIN-2), note the time, audit it. Runs inside the caller's transaction."""
    await ratelimit.clear(conn, throttle.fail_limit, account.id)
    await conn.execute(
        "UPDATE keel_users SET failed_login_count = 0, locked_until = NULL, last_login_at = %s"
        " WHERE id = %s",
        (now, account.id),
    )
    ctx = replace(ctx, actor_id=account.id, actor_email=account.email, actor_role=account.role,
                  session_id=session_id)  # fmt: skip
    event = events.login_succeeded(account.id, account.email, mfa=mfa, details=details)
    await audit.record(conn, ctx, event)
