"""Database sessions: hashed tokens, lifetimes, rotation, and the single revocation writer (SESS)."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from app import audit
from app import audit_events as events
from app.authority.permissions import VERSION_SQL, names_at
from app.authority.principal import Principal
from app.db.pool import Query

# SESS-4: the closed list of reasons (the migration's CHECK holds the same list).
REASONS = frozenset(
    {
        "logout",
        "user_requested",
        "administrative_revoke",
        "password_changed",
        "password_reset",
        "password_reset_by_other",
        "role_changed",
        "deactivated",
        "mfa_enabled",
        "mfa_disabled",
        "mfa_disabled_by_other",
        "trust_escalation",
        "emergency_recovery",
    }
)
TRUST_LEVELS = ("pending", "authenticated", "elevated", "mfa_verified")
TOUCH_INTERVAL = timedelta(minutes=1)  # SESS-3: last_seen written at most once a minute
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_UA_MAX = 300

Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")
log = logging.getLogger("keel.auth")


def new_token() -> str:
    """32 random bytes, URL-safe base64 without padding: 43 characters (SESS-1)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """What the database keeps: SHA-256 of the token, never the token (SESS-1, INV-1)."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def well_formed(token: object) -> bool:
    return isinstance(token, str) and bool(_TOKEN.match(token))


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


@dataclass(frozen=True)
class Session:
    id: int
    user_id: int
    trust: str
    elevated_until: datetime | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    parent_id: int | None


_COLUMNS = (
    "s.id, s.user_id, s.trust, s.elevated_until, s.created_at, s.last_seen_at, s.expires_at,"
    " s.ip, s.user_agent, s.parent_id"
)


async def create(
    conn: Conn,
    *,
    user_id: int,
    now: datetime | None = None,
    absolute: float,
    trust: str = "authenticated",
    elevated_until: datetime | None = None,
    expires_at: datetime | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    parent_id: int | None = None,
) -> tuple[str, Session]:
    """A new session; returns the token (for the cookie, never stored) and the row."""
    if trust not in TRUST_LEVELS:
        raise ValueError(f"unknown trust level {trust!r}")
    at = _now(now)
    token = new_token()
    cur = await conn.execute(
        "INSERT INTO keel_sessions AS s (token_hash, user_id, trust, elevated_until, created_at,"
        " last_seen_at, expires_at, ip, user_agent, parent_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
        (
            hash_token(token),
            user_id,
            trust,
            elevated_until,
            at,
            at,
            expires_at or at + timedelta(seconds=absolute),
            audit.clean_text(ip)[:64] if ip else None,
            audit.clean_text(user_agent)[:_UA_MAX] if user_agent else None,
            parent_id,
        ),
    )
    return token, Session(*(await cur.fetchone()))  # type: ignore[misc]


async def lookup(
    conn: Conn, token: str, *, now: datetime | None = None, idle: float
) -> tuple[Session, Principal] | None:
    """The live session of a token joined to its active user, or None (SESS-3, AUTHZ-5).

    Revoked, idle-expired and absolutely expired sessions and inactive users all read as
    "no session"; the check runs on the server for every request."""
    found = await lookup_with_permissions(conn, token, now=now, idle=idle)
    return None if found is None else found[:2]


async def lookup_with_permissions(
    conn: Conn, token: str, *, now: datetime | None = None, idle: float
) -> tuple[Session, Principal, frozenset[str]] | None:
    """`lookup`, plus the user's effective permission names.

    One round trip answers "who is this and what may they do" for the whole request. The
    query reads the permission version with the session; the names are the ones kept for
    that version or, after any change, read again (`permissions.names_at`), so a revocation
    or a removed permission applies to the next request on every host (AUTHZ-5)."""
    if not well_formed(token):
        return None
    at = _now(now)
    cur = await conn.execute(_LOOKUP, _lookup_params(token, at, idle))
    return await _found(conn, await cur.fetchone(), at)


async def lookup_along(
    conn: Conn,
    token: str,
    statement: tuple[Query, Mapping[str, Any]],
    *,
    now: datetime | None = None,
    idle: float,
) -> tuple[tuple[Session, Principal, frozenset[str]] | None, list[tuple[Any, ...]] | None]:
    """`lookup_with_permissions` and a one-row `statement` (named parameters) in one query:
    one round trip for the session and the page's first question (app/web/prefetch.py).

    The statement is joined to the session, so its row leaves the database only with a live
    session; `([], …)` when it found none. Its rows are None when it failed: the caller runs
    it again on its own and meets the error where that is handled."""
    if not well_formed(token):
        return None, None
    at = _now(now)
    query, params = statement
    bound = {
        "keel_token": hash_token(token),
        "keel_at": at,
        "keel_seen": at - timedelta(seconds=idle),
    }
    try:
        cur = await conn.execute(_joined(query), {**params, **bound})
        row = await cur.fetchone()
    except psycopg.Error as exc:
        if conn.closed or conn.broken or isinstance(exc, psycopg.errors.QueryCanceled):
            # The database went away, or the statement ran out of time: the same error the
            # plain lookup would meet, without waiting twice for it.
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("the page's first query failed with the session lookup: %s", first)
        return await lookup_with_permissions(conn, token, now=at, idle=idle), None
    if row is None:
        return None, None
    found = await _found(conn, row[:_WIDTH], at)
    return found, [] if row[_WIDTH] is None else [row[_WIDTH + 1 :]]


# A statement of a batch (app/web/prefetch.py, `Sent`): its text, positional parameters,
# whether psycopg may prepare it, and what it needs of the session: LIVE (it runs only for a
# live one), COLUMN (a one-value expression about the session's user, `s.user_id`, read as one
# more column of the lookup's own row) or NOTHING (sent as it is).
Sent = tuple[Query, Sequence[Any], bool | None, str]
LIVE, COLUMN, NOTHING = "live", "column", "nothing"


async def lookup_with_batch(
    conn: Conn,
    token: str,
    batch: Sequence[Sent],
    *,
    now: datetime | None = None,
    idle: float,
) -> tuple[tuple[Session, Principal, frozenset[str]] | None, list[Any] | BaseException | None]:
    """`lookup_with_permissions` and a page's statements in one round trip: one pipeline for
    the session and a list page's questions (app/web/prefetch.py).

    A LIVE statement runs inside a condition on the same live session, so a token that names
    none makes PostgreSQL skip it: a made-up cookie costs the statement's planning and one
    index lookup more, never its execution (a search, say). A COLUMN expression rides in the
    lookup's row: no statement of its own, which in a pipeline costs the client about as much
    as a small page's rows. Returns, in the batch's order, each statement's cursor or each
    column's value; a timeout they met, for the handler to raise after its checks; or None
    when one failed otherwise (the caller runs them again on its own and meets the error where
    that is handled), or when there is no session."""
    if not well_formed(token):
        return None, None
    at = _now(now)
    bound = _lookup_params(token, at, idle)
    columns = [(_text(q), own) for q, own, _, needs in batch if needs == COLUMN]
    lookup = _lookup_with(tuple(q for q, _ in columns))
    lookup_params = [*(p for _, own in columns for p in own), *bound]
    sent = [(q, own, prepare, needs) for q, own, prepare, needs in batch if needs != COLUMN]
    cursors: list[psycopg.AsyncCursor[Any]] = []
    failed: psycopg.Error | None = None
    try:
        if not sent:
            cur = await conn.execute(lookup, lookup_params)
        else:
            async with conn.pipeline():
                cur = await conn.execute(lookup, lookup_params)
                for query, own, prepare, needs in sent:
                    text = _gated(query) if needs == LIVE else query
                    params = [*own, *bound] if needs == LIVE else own
                    cursors.append(await conn.execute(text, params, prepare=prepare))
    except psycopg.Error as exc:
        if conn.closed or conn.broken or not sent:
            raise
        failed = exc
    try:
        row = await cur.fetchone()
    except psycopg.ProgrammingError:  # the lookup itself failed: nothing came back
        assert failed is not None
        raise failed from None
    found = await _found(conn, None if row is None else row[:_WIDTH], at)
    if found is None:
        return None, None
    if failed is None:
        assert row is not None
        values, curs = iter(row[_WIDTH:]), iter(cursors)
        return found, [next(values if b[3] == COLUMN else curs) for b in batch]
    if isinstance(failed, psycopg.errors.QueryCanceled):
        return found, failed  # waiting for it a second time would only double the wait
    first = str(failed).strip().splitlines()[0] if str(failed).strip() else type(failed).__name__
    log.warning("the page's queries failed with the session lookup: %s", first)
    return found, None


# Statement texts worked out once: one per page kind (a resource's record page, its list).
_TEXTS: dict[tuple[str, Any], Any] = {}
_TEXTS_MAX = 1024


def _kept(kind: str, key: Any, make: Callable[[], T]) -> T:
    """`make()`, kept by (kind, key) in a bounded memo (emptied when full)."""
    found: T | None = _TEXTS.get((kind, key))
    if found is None:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        found = _TEXTS[(kind, key)] = make()
    return found


def _lookup_with(columns: tuple[str, ...]) -> str:
    """`_LOOKUP` with more columns after its own (COLUMN expressions of a batch)."""
    if not columns:
        return _LOOKUP
    return _kept("with", columns, lambda: f"{_SELECT_LIST}, {', '.join(columns)}{_FROM}{_WHERE}")


def _gated(query: Query) -> str:
    """The statement run only for a live session. The condition is a function of parameters
    alone (migration 0015, the lookup's WHERE), so PostgreSQL checks it once, before anything
    else (a one-time filter), and reads nothing when it is false; the statement's own plan and
    row order stay as they were."""
    return _kept(
        "gated",
        _text(query),
        lambda: f"SELECT x.* FROM ({_text(query)}) AS x WHERE keel_session_live(%s, %s, %s)",
    )


def _text(query: Query) -> str:
    text = query.as_string(None) if isinstance(query, sql.Composable) else query
    return text.decode() if isinstance(text, bytes) else text


def _joined(query: Query) -> sql.SQL:
    """The lookup and a one-row statement in one: `keel_hit` tells "no row" from a row of
    nulls."""
    inner = _text(query)
    return _kept(
        "joined",
        inner,
        lambda: sql.SQL(
            f"SELECT l.*, a.* FROM ({_LOOKUP_NAMED}) AS l LEFT JOIN LATERAL"
            f" (SELECT true AS keel_hit, x.* FROM ({inner}) AS x) AS a ON true"
        ),
    )


def _lookup_params(token: str, at: datetime, idle: float) -> tuple[bytes, datetime, datetime]:
    return hash_token(token), at, at - timedelta(seconds=idle)


async def _found(
    conn: Conn, row: tuple[Any, ...] | None, at: datetime
) -> tuple[Session, Principal, frozenset[str]] | None:
    """The session, principal and permission names of a `_LOOKUP` row."""
    if row is None:
        return None
    sess = Session(*row[:10])
    email, role, display, must_change, mfa_on, version = row[10:]
    if sess.last_seen_at <= at - TOUCH_INTERVAL:
        # Conditional, so two hosts touching at once write once (SESS-3).
        await conn.execute(
            "UPDATE keel_sessions SET last_seen_at = %s WHERE id = %s AND last_seen_at < %s",
            (at, sess.id, at - TOUCH_INTERVAL),
        )
    who = Principal(
        user_id=sess.user_id,
        email=email,
        role=role,
        display_name=display,
        session_id=sess.id,
        trust=sess.trust,
        elevated_until=sess.elevated_until,
        must_change_password=bool(must_change),
        mfa_enabled=bool(mfa_on),
    )
    return sess, who, await names_at(conn, sess.user_id, version)


_FROM = " FROM keel_sessions s JOIN keel_users u ON u.id = s.user_id"
_SELECT_LIST = (
    f"SELECT {_COLUMNS}, u.email, u.role, coalesce(nullif(u.display_name, ''),"
    " nullif(u.full_name, ''), u.email), u.must_change_password,"
    f" u.mfa_enabled_at IS NOT NULL, {VERSION_SQL}"
)
_SELECT = _SELECT_LIST + _FROM
# A live session: not revoked, not past either lifetime, its user active.
_WHERE = (
    " WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s"
    " AND s.last_seen_at > %s AND u.is_active"
)
_LOOKUP = _SELECT + _WHERE
_LOOKUP_NAMED = _SELECT + (
    _WHERE.replace("%s", "%(keel_token)s", 1)
    .replace("%s", "%(keel_at)s", 1)
    .replace("%s", "%(keel_seen)s", 1)
)
_WIDTH = 16  # the columns of a `_SELECT` row


async def get(conn: Conn, session_id: int) -> Session | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM keel_sessions s WHERE s.id = %s", (session_id,)
    )
    row = await cur.fetchone()
    return Session(*row) if row else None


async def list_for_user(
    conn: Conn, user_id: int, now: datetime | None = None, *, idle: float = 1800.0
) -> list[Session]:
    """The user's live sessions, most recently seen first (SESS-7, AUTHZ-7)."""
    at = _now(now)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM keel_sessions s WHERE s.user_id = %s AND s.revoked_at IS NULL"
        " AND s.expires_at > %s AND s.last_seen_at > %s ORDER BY s.last_seen_at DESC, s.id DESC",
        (user_id, at, at - timedelta(seconds=idle)),
    )
    return [Session(*row) for row in await cur.fetchall()]


async def revoke(
    conn: Conn,
    ctx: audit.Context,
    *,
    reason: str,
    session_id: int | None = None,
    user_id: int | None = None,
    except_session_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> list[int]:
    """THE single writer of `revoked_at`/`revoked_reason` (SESS-4, INV-4).

    Target: one session (`session_id`), all of a user's (`user_id`), or all of a user's but
    one (`user_id` + `except_session_id`). Returns the revoked ids, and records the audit
    event for them in the caller's transaction: `session_logout` for a logout, otherwise
    `sessions_revoked_self` when the actor is the owner and `sessions_revoked_by_other` when
    not (with the administrator's `note`, REC-5). Rotation (`trust_escalation`) is recorded by
    the login or re-auth event that caused it, which names both sessions."""
    if reason not in REASONS:
        raise ValueError(f"unknown revocation reason {reason!r}")
    if (session_id is None) == (user_id is None):
        raise ValueError("give exactly one of session_id or user_id")
    if except_session_id is not None and user_id is None:
        raise ValueError("except_session_id needs user_id")
    at = _now(now)
    params: dict[str, Any]
    if session_id is not None:
        target, params = "s.id = %(sid)s", {"sid": session_id}
    else:
        target, params = "s.user_id = %(uid)s", {"uid": user_id}
        if except_session_id is not None:
            target += " AND s.id <> %(except)s"
            params["except"] = except_session_id
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE keel_sessions AS s SET revoked_at = %(now)s, revoked_reason = %(reason)s"
            " FROM keel_users u WHERE u.id = s.user_id AND s.revoked_at IS NULL"
            f" AND s.expires_at > %(now)s AND {target} RETURNING s.id, s.user_id, u.email",
            {**params, "now": at, "reason": reason},
        )
        rows = await cur.fetchall()
        by_user: dict[tuple[int, str], list[int]] = defaultdict(list)
        for sid, uid, email in rows:
            by_user[(uid, email)].append(sid)
        for (uid, email), ids in by_user.items():
            event = _revocation_event(ctx, reason, user_id=uid, email=email, ids=ids, note=note)
            if event is not None:
                await audit.record(conn, ctx, event)
    return sorted(sid for sid, _uid, _email in rows)


def _revocation_event(
    ctx: audit.Context, reason: str, *, user_id: int, email: str, ids: list[int], note: str | None
) -> audit.Event | None:
    if reason == "trust_escalation":
        return None
    if reason == "logout" and len(ids) == 1:
        return events.session_logout(user_id, email, ids[0])
    if ctx.actor_id == user_id:
        return events.sessions_revoked_self(user_id, email, ids, reason)
    return events.sessions_revoked_by_other(user_id, email, ids, reason, note=note)


async def rotate(
    conn: Conn,
    ctx: audit.Context,
    old: Session,
    *,
    trust: str,
    elevated_until: datetime | None = None,
    now: datetime | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, Session]:
    """A new token for a trust change; the old session is revoked and linked as parent (SESS-5).

    The new session keeps the old one's absolute expiry: re-authenticating never stretches a
    session beyond `session_absolute` from sign-in. The one exception is `expires_at`, given
    when a short-lived session owing its second factor becomes a full one (MFA-3)."""
    async with conn.transaction():
        revoked = await revoke(conn, ctx, reason="trust_escalation", session_id=old.id, now=now)
        if not revoked:
            raise LookupError("the session ended before it could be rotated")
        return await create(
            conn,
            user_id=old.user_id,
            now=now,
            absolute=0,
            trust=trust,
            elevated_until=elevated_until,
            expires_at=expires_at or old.expires_at,
            ip=ip or old.ip,
            user_agent=user_agent or old.user_agent,
            parent_id=old.id,
        )
