"""API tokens for scripts: made, listed, revoked and looked up; one transaction per change.

A token is `keel_` and 43 random URL-safe characters. Only its SHA-256 is stored (like session
tokens: 256 random bits need no slow hash); it is shown once, when it is made. A token acts
as its owner with at most its `scope`, a subset of the permission names the owner held when
it was made; every request also needs the owner to hold them still (read fresh, AUTHZ-5).
Tokens are only ever accepted in an `Authorization: Bearer` header, and never reach the
operations behind the re-authentication wall (app/web/auth.py refuses them there).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from app import audit
from app import audit_events as events
from app.authority import permissions
from app.authority.principal import BYPASS_ROLE, Principal
from app.authority.ratelimit import Limit
from app.errors import Invalid, NotFound, PermissionDenied

Conn = psycopg.AsyncConnection[Any]

PREFIX = "keel_"
_SHAPE = re.compile(r"^keel_[A-Za-z0-9_-]{43}$")
SHOWN_PREFIX = 12  # "keel_" and 7 characters: enough to tell tokens apart in a list
DEFAULT_DAYS = 30
MAX_DAYS = 366
TOUCH_INTERVAL = timedelta(seconds=60)  # last use is written at most once a minute
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
# Requests per token and per minute, counted across hosts (app/authority/ratelimit.py).
PER_TOKEN = Limit("api_token", 600, 60.0)
# Requests with an unknown, expired or revoked token, per client address and minute.
BAD_TOKEN_IP = Limit("api_token_bad_ip", 30, 60.0)


@dataclass(frozen=True)
class ApiToken:
    """A token as the rest of the code sees it: never the token itself, nor its hash."""

    id: int
    user_id: int
    created_by: int | None
    name: str
    prefix: str
    scope: list[str]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_on: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """active, expired or revoked."""
        if self.revoked_on is not None:
            return "revoked"
        return "expired" if self.expires_at <= (now or datetime.now(UTC)) else "active"

    @property
    def read_only(self) -> bool:
        return all(p.endswith(".view") for p in self.scope)


_COLUMNS = (
    "t.id, t.user_id, t.created_by, t.name, t.prefix, t.scope, t.created_at, t.expires_at,"
    " t.last_used_at, t.last_used_ip, t.revoked_on"
)


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def well_formed(token: object) -> bool:
    return isinstance(token, str) and bool(_SHAPE.match(token))


# ---- what a token may be given ----------------------------------------------------------


async def grantable(conn: Conn, user_id: int, role: str) -> list[str]:
    """The permission names `user_id` may put in a token: every declared one for the roles that
    bypass per-resource checks, else those held directly or through a group."""
    if Principal(user_id, "", role, "").at_least(BYPASS_ROLE):
        return sorted(permissions.known_names())
    return sorted(await permissions.effective_permissions(conn, user_id))


def read_only_scope(held: Iterable[str]) -> list[str]:
    """The default scope: every `.view` permission of what may be granted."""
    return sorted(p for p in held if p.endswith(".view"))


def _check_name(name: str) -> str:
    text = " ".join(str(name).split())
    if not _NAME.match(text):
        raise Invalid(
            "A token needs a name of 1 to 100 printable characters.",
            fields={"name": "1 to 100 printable characters"},
            fix="name it after the script that uses it, e.g. nightly-sync",
        )
    return text


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(
            f"A token expires after 1 to {MAX_DAYS} days, not {days}.",
            fields={"expires_days": f"1 to {MAX_DAYS}"},
            why="a token that never expires outlives the script it was made for",
            fix=f"choose a number of days from 1 to {MAX_DAYS}; make a new token when it runs out",
        )
    return days


def _check_scope(wanted: Iterable[str] | None, held: list[str]) -> list[str]:
    if wanted is None:
        scope = read_only_scope(held)
    else:
        scope = permissions.well_formed(wanted)
        beyond = [p for p in scope if p not in held]
        if beyond:
            raise Invalid(
                f"A token cannot be given {beyond[0]}: its owner does not hold it.",
                fields={"scope": f"{beyond[0]} is not held"},
                why="a token may do at most what its owner may do",
                fix="choose from the owner's permissions (`keel user show --email …` lists them)",
            )
    if not scope:
        raise Invalid(
            "There is nothing this token could be allowed to do.",
            fields={"scope": "no permission"},
            why="the owner holds no permission on any resource",
            fix="give the account a group or permissions first",
        )
    return scope


# ---- changes ------------------------------------------------------------------------------


async def create(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    *,
    owner_id: int,
    name: str,
    days: int = DEFAULT_DAYS,
    scope: Iterable[str] | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `owner_id` and its plaintext, which is never shown again.

    `actor` is the signed-in user making it (None: `keel token create` over SSH). A user makes
    tokens for themself; an administrator may make one for another account (a service
    account). `scope` None means read-only: every `.view` permission the owner holds."""
    from app.authority import users

    name = _check_name(name)
    days = _check_days(days)
    at = now or datetime.now(UTC)
    async with conn.transaction():
        owner = await users.get(conn, owner_id)
        if actor is not None and actor.user_id != owner_id and not actor.at_least(BYPASS_ROLE):
            raise PermissionDenied(
                "Only an administrator may make a token for another account.",
                missing="role administrator",
            )
        if not owner.is_active or not Principal(owner.id, "", owner.role, "").enters_admin:
            raise Invalid(
                f"{owner.email} cannot have an API token.",
                why="tokens reach the admin's API, which needs an active account of role staff"
                " or above",
                fix="make the token for an account that signs in to the admin",
            )
        held = await grantable(conn, owner.id, owner.role)
        if actor is not None and actor.user_id != owner_id:
            mine = set(await grantable(conn, actor.user_id, actor.role))
            held = [p for p in held if p in mine]
        chosen = _check_scope(scope, held)
        token = new_token()
        async with conn.cursor(row_factory=class_row(ApiToken)) as cur:
            await cur.execute(
                "INSERT INTO keel_api_tokens AS t (user_id, created_by, name, token_hash, prefix,"
                " scope, created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (
                    owner.id,
                    actor.user_id if actor is not None else None,
                    name,
                    hash_token(token),
                    token[:SHOWN_PREFIX],
                    chosen,
                    at,
                    at + timedelta(days=days),
                ),
            )
            made = await cur.fetchone()
        assert made is not None
        await audit.record(
            conn,
            ctx,
            events.api_token_created(
                owner.id,
                owner.email,
                made.id,
                made.name,
                scope=made.scope,
                expires_at=audit.iso(made.expires_at),
            ),
        )
    return made, token


async def revoke(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    token_id: int,
    *,
    now: datetime | None = None,
) -> ApiToken:
    """Revoke a token: its owner, an administrator, or `keel token revoke` (actor None).
    Revoking a revoked token changes nothing and records nothing."""
    from app.authority import users

    at = now or datetime.now(UTC)
    async with conn.transaction():
        found = await _get(conn, token_id, for_update=True)
        if found is None or (
            actor is not None and actor.user_id != found.user_id and not actor.at_least(BYPASS_ROLE)
        ):
            # The same answer for a token of someone else: its existence is not disclosed.
            mine = " of yours" if actor is not None else ""
            raise NotFound(f"there is no API token {token_id}{mine}", fix="list the tokens")
        if found.revoked_on is not None:
            return found
        async with conn.cursor(row_factory=class_row(ApiToken)) as cur:
            await cur.execute(
                f"UPDATE keel_api_tokens AS t SET revoked_on = %s WHERE id = %s RETURNING {_COLUMNS}",
                (at, token_id),
            )
            done = await cur.fetchone()
        assert done is not None
        owner = await users.find(conn, done.user_id)
        email = owner.email if owner else f"user {done.user_id}"
        await audit.record(
            conn, ctx, events.api_token_revoked(done.user_id, email, done.id, done.name)
        )
    return done


# ---- reading ------------------------------------------------------------------------------


async def _get(conn: Conn, token_id: int, *, for_update: bool = False) -> ApiToken | None:
    lock = " FOR UPDATE" if for_update else ""
    async with conn.cursor(row_factory=class_row(ApiToken)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM keel_api_tokens t WHERE t.id = %s{lock}", (token_id,)
        )
        return await cur.fetchone()


async def get(conn: Conn, token_id: int) -> ApiToken:
    found = await _get(conn, token_id)
    if found is None:
        raise NotFound(f"there is no API token {token_id}", fix="`keel token list` shows them")
    return found


async def list_for_user(conn: Conn, user_id: int | None = None) -> list[ApiToken]:
    """A user's tokens (all users' for None), newest first, revoked and expired included."""
    where = "WHERE t.user_id = %s" if user_id is not None else ""
    async with conn.cursor(row_factory=class_row(ApiToken)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM keel_api_tokens t {where}"
            " ORDER BY t.created_at DESC, t.id DESC LIMIT 1000",
            (user_id,) if user_id is not None else (),
        )
        return await cur.fetchall()


async def list_made_for_others(conn: Conn, creator_id: int) -> list[ApiToken]:
    """Tokens an administrator made for other accounts (service accounts), newest first."""
    async with conn.cursor(row_factory=class_row(ApiToken)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM keel_api_tokens t WHERE t.created_by = %s"
            " AND t.user_id <> %s ORDER BY t.created_at DESC, t.id DESC LIMIT 1000",
            (creator_id, creator_id),
        )
        return await cur.fetchall()


async def lookup(
    conn: Conn, token: str, *, now: datetime | None = None, ip: str | None = None
) -> tuple[ApiToken, Principal, frozenset[str]] | None:
    """The live token, its active owner and the owner's effective permission names (kept
    while the permission version read with the token is unchanged: `permissions.names_at`);
    None for an unknown, revoked or expired token or an inactive owner."""
    if not well_formed(token):
        return None
    at = now or datetime.now(UTC)
    async with conn.cursor() as cur:
        await cur.execute(_LOOKUP, (hash_token(token), at))
        row = await cur.fetchone()
    if row is None:
        return None
    found = ApiToken(*row[:11])
    email, role, display, must_change, mfa_on, version = row[11:]
    if found.last_used_at is None or found.last_used_at <= at - TOUCH_INTERVAL:
        # Conditional, so two hosts touching at once write once.
        await conn.execute(
            "UPDATE keel_api_tokens SET last_used_at = %s, last_used_ip = %s"
            " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
            (at, (ip or "")[:64] or None, found.id, at - TOUCH_INTERVAL),
        )
    who = Principal(
        user_id=found.user_id,
        email=email,
        role=role,
        display_name=display,
        must_change_password=bool(must_change),
        mfa_enabled=bool(mfa_on),
    )
    return found, who, await permissions.names_at(conn, found.user_id, version)


_LOOKUP = (
    f"SELECT {_COLUMNS}, u.email, u.role, coalesce(nullif(u.display_name, ''),"
    " nullif(u.full_name, ''), u.email), u.must_change_password,"
    f" u.mfa_enabled_at IS NOT NULL, {permissions.VERSION_SQL}"
    " FROM keel_api_tokens t JOIN keel_users u ON u.id = t.user_id"
    " WHERE t.token_hash = %s AND t.revoked_on IS NULL AND t.expires_at > %s AND u.is_active"
)
