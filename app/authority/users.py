"""User accounts: reading, creating, changing and removing them, each change audited (AUTHZ-1, AUTHZ-3, INV-3)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import class_row

from app import audit
from app import audit_events as events
from app.authority import guards, permissions, ratelimit
from app.authority.principal import ROLES, Principal
from app.authority.roles import MANAGER_ROLE, ensure_role, parse_role
from app.authority.userfields import PROFILE_FIELDS, clean_profile, normalise_email
from app.errors import Conflict, Invalid, NotFound

__all__ = [
    "DEMO_ADMIN_EMAIL",
    "LOCKED_INDEFINITELY",
    "PROFILE_FIELDS",
    "User",
    "clean_profile",
    "count_active",
    "create",
    "delete",
    "ensure_demo_admin",
    "find",
    "find_id_by_email",
    "get",
    "get_by_email",
    "grant",
    "group_names",
    "list_users",
    "lock",
    "normalise_email",
    "rehash_on_login",
    "revoke",
    "revoke_sessions",
    "set_active",
    "set_password",
    "set_role",
    "unlock",
    "update_profile",
    "write_password",
    "write_role",
    "write_unlock",
]


@dataclass(frozen=True)
class User:
    """A user as the rest of the code sees it: never the password hash or the MFA secret (INV-1)."""

    id: int
    email: str
    role: str
    is_active: bool
    full_name: str
    display_name: str
    job_title: str
    locale: str
    timezone: str
    must_change_password: bool
    has_password: bool
    password_changed_at: datetime | None
    failed_login_count: int
    last_failed_login_at: datetime | None
    locked_until: datetime | None
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None

    @property
    def label(self) -> str:
        return self.display_name or self.full_name or self.email

    def is_locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COLUMNS = (
    "id, email, role, is_active, full_name, display_name, job_title, locale, timezone,"
    " must_change_password, password_hash IS NOT NULL AS has_password, password_changed_at,"
    " failed_login_count, last_failed_login_at, locked_until,"
    " mfa_enabled_at IS NOT NULL AS mfa_enabled, created_at, updated_at, last_login_at"
)


# ---- reading ----------------------------------------------------------------------------


async def find(
    conn: psycopg.AsyncConnection[Any], user_id: int, *, for_update: bool = False
) -> User | None:
    lock = " FOR UPDATE" if for_update else ""
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM keel_users WHERE id = %s{lock}", (user_id,))
        return await cur.fetchone()


async def get(
    conn: psycopg.AsyncConnection[Any], user_id: int, *, for_update: bool = False
) -> User:
    user = await find(conn, user_id, for_update=for_update)
    if user is None:
        raise NotFound(f"there is no user with id {user_id}", fix="check the list of users")
    return user


async def get_by_email(
    conn: psycopg.AsyncConnection[Any], email: str, *, for_update: bool = False
) -> User:
    """The user with this email (any case), or NotFound with a Problem/Why/Fix (CLI-1)."""
    address = normalise_email(email)
    lock = " FOR UPDATE" if for_update else ""
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM keel_users WHERE email = %s{lock}", (address,))
        user = await cur.fetchone()
    if user is None:
        raise NotFound(
            f"no user has the email {address}",
            why="emails are matched exactly, ignoring case",
            fix="check the spelling; `keel user list` shows every user",
        )
    return user


_STATUSES = {
    "active": "(is_active AND (locked_until IS NULL OR locked_until <= now()))",
    "locked": "(is_active AND locked_until > now())",
    "inactive": "NOT is_active",
}


async def list_users(
    conn: psycopg.AsyncConnection[Any],
    *,
    role: str | None = None,
    active: bool | None = None,
    status: str | None = None,
    group: str | None = None,
    search: str | None = None,
    never_signed_in: bool = False,
    signed_in_since: datetime | None = None,
    signed_in_before: datetime | None = None,
    limit: int = 50,
    after: tuple[str, int] | None = None,
) -> list[User]:
    """Users by email then id, filtered; keyset-paged with `after=(email, id)` (LIST-3).

    `status` is active (and not locked), locked (active but locked now) or inactive; `group`
    a group's name; the sign-in bounds are a half-open range [since, before)."""
    where, params = ["true"], []  # type: list[str], list[Any]
    if role is not None:
        where.append("role = %s")
        params.append(parse_role(role))
    if active is not None:
        where.append("is_active = %s")
        params.append(active)
    if status is not None:
        if status not in _STATUSES:
            raise Invalid(
                f"{status!r} is not a user status",
                fields={"status": "one of " + ", ".join(_STATUSES)},
            )
        where.append(_STATUSES[status])
    if group is not None:
        where.append(
            "EXISTS (SELECT 1 FROM keel_group_members m JOIN keel_groups g ON g.id = m.group_id"
            " WHERE m.user_id = keel_users.id AND g.name = %s)"
        )
        params.append(group)
    if never_signed_in:
        where.append("last_login_at IS NULL")
    if signed_in_since is not None:
        where.append("last_login_at >= %s")
        params.append(signed_in_since)
    if signed_in_before is not None:
        where.append("last_login_at < %s")
        params.append(signed_in_before)
    # Control characters (NUL would be a database error, not a 400) cannot match anything.
    search = "".join(c for c in (search or "") if c.isprintable()).strip()[:100]
    if search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search) + "%"
        where.append("(email ILIKE %s OR full_name ILIKE %s OR display_name ILIKE %s)")
        params += [pattern, pattern, pattern]
    if after is not None:
        where.append("(email, id) > (%s, %s)")
        params += [after[0], after[1]]
    params.append(max(1, min(limit, 10_000)))
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM keel_users WHERE {' AND '.join(where)}"
            " ORDER BY email, id LIMIT %s",
            params,
        )
        return await cur.fetchall()


async def count_active(conn: psycopg.AsyncConnection[Any], role: str) -> int:
    """Active users holding exactly `role` (doctor: "at least one active administrator")."""
    cur = await conn.execute(
        "SELECT count(*) FROM keel_users WHERE role = %s AND is_active", (parse_role(role),)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def group_names(conn: psycopg.AsyncConnection[Any], user_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT g.name FROM keel_group_members m JOIN keel_groups g ON g.id = m.group_id"
        " WHERE m.user_id = %s ORDER BY lower(g.name)",
        (user_id,),
    )
    return [r[0] for r in await cur.fetchall()]


# ---- creating ---------------------------------------------------------------------------


async def create(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    *,
    email: str,
    role: str = "user",
    password_hash: str | None = None,
    must_change_password: bool = False,
    profile: Mapping[str, object] | None = None,
    groups: Iterable[str] = (),
    via: str = "admin",
    active: bool = True,
) -> User:
    """A new user (email normalised, duplicate → Conflict), in the named groups; one event.

    The password arrives hashed (`passwords.hash_new`), so no transaction waits on Argon2."""
    ensure_role(actor, MANAGER_ROLE)
    address = normalise_email(email)
    role = parse_role(role)
    guards.check_role_ceiling(actor, role)
    values = clean_profile(profile or {})
    if password_hash is not None and not password_hash.startswith("$argon2id$"):
        raise ValueError("password_hash must be an Argon2id PHC string (INV-1)")
    names = sorted(set(groups))
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO keel_users (email, role, password_hash, password_changed_at,"
                " must_change_password, full_name, display_name, job_title, locale, timezone,"
                " is_active)"
                " VALUES (%s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE now() END, %s,"
                " %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    address, role, password_hash, password_hash, must_change_password,
                    values.get("full_name", ""), values.get("display_name", ""),
                    values.get("job_title", ""), values.get("locale", "en"),
                    values.get("timezone", "UTC"), active,
                ),
            )  # fmt: skip
            row = await cur.fetchone()
            assert row is not None
            user_id = int(row[0])
            await _join_groups(conn, user_id, names)
            await audit.record(
                conn,
                ctx,
                events.user_created(
                    user_id, address, role, via=via, details={"groups": names} if names else None
                ),
            )
    except pgerrors.UniqueViolation:
        raise Conflict(
            f"a user with the email {address} already exists",
            why="emails are unique, ignoring case",
            fix="use another email, or change the existing user",
        ) from None
    return await get(conn, user_id)


async def _join_groups(conn: psycopg.AsyncConnection[Any], user_id: int, names: list[str]) -> None:
    if not names:
        return
    cur = await conn.execute(
        "INSERT INTO keel_group_members (group_id, user_id)"
        " SELECT id, %s FROM keel_groups WHERE lower(name) = ANY(%s) RETURNING group_id",
        (user_id, [n.lower() for n in names]),
    )
    if len(await cur.fetchall()) != len(names):
        raise NotFound(
            f"no such group among {', '.join(names)}",
            fix="see `keel group list`; create it with `keel group create NAME`",
        )


# ---- changing ---------------------------------------------------------------------------


async def _locked_target(conn: psycopg.AsyncConnection[Any], user_id: int) -> User:
    await guards.lock_authority(conn)
    return await get(conn, user_id, for_update=True)


async def update_profile(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    changes: Mapping[str, object],
) -> User:
    """Change profile fields (and the email). One's own profile is always editable; someone
    else's only by a manager of higher rank (AUTHZ-3 guard 2)."""
    values = clean_profile(changes, partial=True)
    if "email" in changes:
        values["email"] = normalise_email(str(changes["email"]))
    if not values:
        raise Invalid("nothing to change", fix="give at least one field")
    try:
        async with conn.transaction():
            before = await get(conn, user_id, for_update=True)
            if actor is None or actor.user_id != user_id:
                ensure_role(actor, MANAGER_ROLE)
                guards.check_rank(actor, before)
            diff = audit.diff(before.as_dict(), {**before.as_dict(), **values}, list(values))
            if not diff:
                return before
            sets = ", ".join(f"{name} = %s" for name in diff)  # names from PROFILE_FIELDS
            await conn.execute(
                f"UPDATE keel_users SET {sets}, updated_at = now() WHERE id = %s",
                [values[name] for name in diff] + [user_id],
            )
            await audit.record(conn, ctx, events.user_updated(user_id, before.email, diff))
    except pgerrors.UniqueViolation:
        raise Conflict(
            f"a user with the email {values.get('email')} already exists",
            fix="use another email",
        ) from None
    return await get(conn, user_id)


async def set_role(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    role: str,
) -> User:
    """Change a role behind the four guards; a demotion ends the user's sessions (AUTHZ-5)."""
    ensure_role(actor, MANAGER_ROLE)
    new_role = parse_role(role)
    async with conn.transaction():
        before = await _locked_target(conn, user_id)
        await guards.check_user_change(conn, actor, before, new_role=new_role)
        if new_role == before.role:
            return before
        await write_role(conn, user_id, new_role)
        await audit.record(
            conn, ctx, events.role_changed(user_id, before.email, before.role, new_role)
        )
        if _rank(new_role) < _rank(before.role):
            await revoke_sessions(conn, ctx, user_id, "role_changed")
    return await get(conn, user_id)


async def set_active(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    active: bool,
) -> User:
    """Activate or deactivate; deactivation ends every session of the user (AUTHZ-5)."""
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        before = await _locked_target(conn, user_id)
        await guards.check_user_change(conn, actor, before, deactivate=not active)
        if before.is_active == active:
            return before
        await conn.execute(
            "UPDATE keel_users SET is_active = %s, updated_at = now() WHERE id = %s",
            (active, user_id),
        )
        diff = {"is_active": {"from": before.is_active, "to": active}}
        await audit.record(conn, ctx, events.user_updated(user_id, before.email, diff))
        if not active:
            await revoke_sessions(conn, ctx, user_id, "deactivated")
    return await get(conn, user_id)


async def delete(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
) -> None:
    """Remove a user (their group memberships and grants go with them); audit rows stay."""
    ensure_role(actor, MANAGER_ROLE)
    try:
        async with conn.transaction():
            before = await _locked_target(conn, user_id)
            await guards.check_user_change(conn, actor, before, delete=True)
            await revoke_sessions(conn, ctx, user_id, "administrative_revoke")
            await conn.execute("DELETE FROM keel_users WHERE id = %s", (user_id,))
            await audit.record(
                conn, ctx, events.user_deleted(user_id, before.email, details={"role": before.role})
            )
    except pgerrors.ForeignKeyViolation as exc:
        raise Conflict(
            "this user cannot be deleted: other records still refer to them",
            why=str(exc.diag.message_detail or exc).splitlines()[0],
            fix="deactivate the user instead; their history stays readable",
        ) from None


async def set_password(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    password_hash: str,
    *,
    temporary: bool,
    reason: str | None = None,
) -> User:
    """Someone else sets this user's password (hash from `passwords.hash_new`): sessions end.

    `temporary` forces a change at the next sign-in (REC-5, LOGIN-7)."""
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        before = await _locked_target(conn, user_id)
        guards.check_self(actor, before)
        guards.check_rank(actor, before)
        await write_password(conn, user_id, password_hash, must_change=temporary)
        if temporary:
            event = events.password_reset_by_other(
                user_id, before.email, "temporary_password", reason or ""
            )
        else:
            masked = {"password": {"from": audit.MASK, "to": audit.MASK}}
            event = events.user_updated(user_id, before.email, masked, details={"reason": reason})
        await audit.record(conn, ctx, event)
        await revoke_sessions(conn, ctx, user_id, "password_reset_by_other")
    return await get(conn, user_id)


# ---- writers shared with the login, recovery and break-glass code ----------------------


async def write_activation(conn: psycopg.AsyncConnection[Any], user_id: int) -> None:
    """An invited account becomes active when its owner accepts (AUTHZ-9); caller's transaction."""
    await conn.execute(
        "UPDATE keel_users SET is_active = true, updated_at = now() WHERE id = %s", (user_id,)
    )


async def delete_unused(conn: psycopg.AsyncConnection[Any], user_id: int) -> bool:
    """Remove an invited account that was never used: inactive, no password, never signed in.
    Returns whether it was removed (AUTHZ-9 revoke); anything else is left alone."""
    cur = await conn.execute(
        "DELETE FROM keel_users WHERE id = %s AND NOT is_active AND password_hash IS NULL"
        " AND last_login_at IS NULL RETURNING id",
        (user_id,),
    )
    return await cur.fetchone() is not None


async def write_role(conn: psycopg.AsyncConnection[Any], user_id: int, role: str) -> None:
    await conn.execute(
        "UPDATE keel_users SET role = %s, updated_at = now() WHERE id = %s", (role, user_id)
    )


async def write_password(
    conn: psycopg.AsyncConnection[Any], user_id: int, password_hash: str, *, must_change: bool
) -> None:
    """Store a new hash (no audit, no revocation: the caller records its own event)."""
    if not password_hash.startswith("$argon2id$"):
        raise ValueError("password_hash must be an Argon2id PHC string (INV-1)")
    await conn.execute(
        "UPDATE keel_users SET password_hash = %s, password_changed_at = now(),"
        " must_change_password = %s, updated_at = now() WHERE id = %s",
        (password_hash, must_change, user_id),
    )


async def rehash_on_login(
    conn: psycopg.AsyncConnection[Any],
    hasher: Any,
    *,
    user_id: int,
    stored_hash: str,
    password: str,
) -> bool:
    """After a successful verify that said `needs_rehash`: store a hash with today's parameters.

    Compare-and-set on the old hash, so a password changed meanwhile is never overwritten
    (LOGIN-5). Not an authority change: the password is the same, so no audit event."""
    new_hash = await hasher.hash(password)
    cur = await conn.execute(
        "UPDATE keel_users SET password_hash = %s WHERE id = %s AND password_hash = %s",
        (new_hash, user_id, stored_hash),
    )
    return cur.rowcount == 1


async def revoke_sessions(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, user_id: int, reason: str
) -> list[int]:
    """Through the single revocation writer (SESS-4); never touches keel_sessions itself."""
    from app.authority import sessions

    return await sessions.revoke(conn, ctx, reason=reason, user_id=user_id)


def _rank(role: str) -> int:
    return ROLES[role]


# ---- permissions held directly ----------------------------------------------------------


async def grant(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    names: Iterable[str],
) -> list[str]:
    """Grant permissions directly to a user of lower rank; returns those that were new."""
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        target = await get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        return await permissions.grant_direct(
            conn, ctx, user_id=user_id, email=target.email, names=names
        )


async def revoke(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    names: Iterable[str],
) -> list[str]:
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        target = await get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        return await permissions.revoke_direct(
            conn, ctx, user_id=user_id, email=target.email, names=names
        )


# ---- locking (REC-5, LOGIN-2) -----------------------------------------------------------

# "Until an administrator unlocks": a real timestamp, because psycopg cannot load 'infinity'.
LOCKED_INDEFINITELY = datetime(9999, 1, 1, tzinfo=UTC)


async def lock(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    *,
    until: datetime | None,
    reason: str,
    via: Literal["admin", "cli"] = "admin",
) -> User:
    """Lock sign-in until `until` (None: until unlocked); the user's sessions end."""
    ensure_role(actor, MANAGER_ROLE)
    if until is not None and until <= datetime.now(UTC):
        raise Invalid(
            "the lock must end in the future", fields={"until": "a future time"},
            fix="choose a duration, or lock until unlocked",
        )  # fmt: skip
    async with conn.transaction():
        target = await _locked_target(conn, user_id)
        guards.check_rank(actor, target)  # also refuses locking oneself
        await conn.execute(
            "UPDATE keel_users SET locked_until = %s, updated_at = now() WHERE id = %s",
            (min(until, LOCKED_INDEFINITELY) if until else LOCKED_INDEFINITELY, user_id),
        )
        await audit.record(
            conn,
            ctx,
            events.account_locked(user_id, target.email, via=via, until=until, reason=reason),
        )
        await revoke_sessions(conn, ctx, user_id, "administrative_revoke")
    return await get(conn, user_id)


async def unlock(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    *,
    reason: str | None = None,
    via: Literal["admin", "cli"] = "admin",
) -> User:
    """Clear a lock and the failure counter (LOGIN-2)."""
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        target = await get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        await write_unlock(conn, user_id)
        await audit.record(
            conn, ctx, events.account_unlocked(user_id, target.email, via=via, reason=reason)
        )
    return await get(conn, user_id)


async def write_unlock(conn: psycopg.AsyncConnection[Any], user_id: int) -> None:
    """Lift every lock: the columns and the failed sign-ins the throttle counts, or the right
    password would still be refused as locked until those failures age out of the window."""
    await conn.execute(
        "UPDATE keel_users SET locked_until = NULL, failed_login_count = 0,"
        " last_failed_login_at = NULL, updated_at = now() WHERE id = %s",
        (user_id,),
    )
    await ratelimit.clear(conn, ratelimit.LOGIN_FAIL, user_id)


# ---- the demo's administrator (OPS-8) ---------------------------------------------------

DEMO_ADMIN_EMAIL = "admin@example.com"


async def ensure_demo_admin(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, *, fresh_password: bool = False
) -> tuple[str, str] | None:
    """When no active administrator exists (or `fresh_password`, for `keel demo --reset-admin`):
    create or restore the demo administrator with a one-time password that must be changed at
    first sign-in, and return (email, password) for printing once. Else None.

    Restoring is a password reset by someone else: every session of the account ends, as
    with every other reset (REC-5, SESS-4). A demo account that is a developer stays one."""
    if not fresh_password and (
        await count_active(conn, "administrator") or await count_active(conn, "developer")
    ):
        return None
    from app.authority.passwords import Hasher, generate

    password = generate()
    hasher = Hasher(max_in_flight=1)
    try:
        password_hash = await hasher.hash(password)
    finally:
        hasher.close()
    async with conn.transaction():
        existing = await find_id_by_email(conn, DEMO_ADMIN_EMAIL)
        if existing is None:
            await create(
                conn, ctx, None, email=DEMO_ADMIN_EMAIL, role="administrator",
                password_hash=password_hash, must_change_password=True,
                profile={"full_name": "Demo Administrator"}, via="demo",
            )  # fmt: skip
            return DEMO_ADMIN_EMAIL, password
        # An earlier demo user lost the role or was deactivated: give access back, with a
        # fresh one-time password; one event per change, as everywhere (INV-3).
        before = await get(conn, existing, for_update=True)
        if _rank(before.role) < _rank("administrator"):
            await write_role(conn, existing, "administrator")
            await audit.record(
                conn, ctx, events.role_changed(existing, before.email, before.role, "administrator")
            )
        if not before.is_active:
            await conn.execute("UPDATE keel_users SET is_active = true WHERE id = %s", (existing,))
            active = {"is_active": {"from": False, "to": True}}
            await audit.record(conn, ctx, events.user_updated(existing, before.email, active))
        await write_password(conn, existing, password_hash, must_change=True)
        await write_unlock(conn, existing)
        await audit.record(
            conn,
            ctx,
            events.password_reset_by_other(
                existing, before.email, "temporary_password", "keel demo start"
            ),
        )
        await revoke_sessions(conn, ctx, existing, "password_reset_by_other")
    return DEMO_ADMIN_EMAIL, password


async def find_id_by_email(conn: psycopg.AsyncConnection[Any], email: str) -> int | None:
    cur = await conn.execute("SELECT id FROM keel_users WHERE email = %s", (email.lower(),))
    row = await cur.fetchone()
    return int(row[0]) if row else None
