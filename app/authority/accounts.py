"""Administrator changes that span several tables, one call each: save a user's edit form, save
a group's edit form, set a temporary password, end sessions, give a role with its group.

Each function opens the transaction, takes the locks, writes through the owning services and
lets them record their audit events inside it, so a refusal by any guard leaves everything as it
was. The web pages and the `keel` commands call these and only render the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from app import audit
from app.authority import groups, guards, passwords, permissions, sessions, users
from app.authority.passwords import Hasher
from app.authority.principal import Principal
from app.errors import NotFound

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class UserEdit:
    """What the user edit form asks for: the whole wanted state, not a diff."""

    profile: Mapping[str, str]  # the email and the profile fields
    role: str
    is_active: bool
    groups: Sequence[str]
    permissions: Sequence[str]  # held directly, not through groups


async def save_user(
    conn: Conn, ctx: audit.Context, actor: Principal | None, user_id: int, wanted: UserEdit
) -> bool:
    """Bring a user to the wanted state; returns whether anything changed.

    The difference is taken inside the transaction, against the locked row: saves of the same
    user run one after the other, and each audit event records what the row really held."""
    async with conn.transaction():
        # The authority lock first, then the row: the order every authority change uses.
        await guards.lock_authority(conn)
        target = await users.get(conn, user_id, for_update=True)
        held = await permissions.direct_permissions(conn, user_id)
        member_of = await users.group_names(conn, user_id)
        changed = False
        profile = {
            name: value for name, value in wanted.profile.items() if value != getattr(target, name)
        }
        if profile:
            await users.update_profile(conn, ctx, actor, user_id, profile)
            changed = True
        if wanted.role != target.role:
            await users.set_role(conn, ctx, actor, user_id, wanted.role)
            changed = True
        if wanted.is_active != target.is_active:
            await users.set_active(conn, ctx, actor, user_id, wanted.is_active)
            changed = True
        for name in sorted(set(wanted.groups) - set(member_of)):
            changed |= await groups.add_member(conn, ctx, actor, name, user_id)
        for name in sorted(set(member_of) - set(wanted.groups)):
            changed |= await groups.remove_member(conn, ctx, actor, name, user_id)
        grant = sorted(set(wanted.permissions) - set(held))
        revoke = sorted(set(held) - set(wanted.permissions))
        if grant:
            changed |= bool(await users.grant(conn, ctx, actor, user_id, grant))
        if revoke:
            changed |= bool(await users.revoke(conn, ctx, actor, user_id, revoke))
    return changed


async def save_group(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    group_id: int,
    *,
    name: str,
    description: str,
    permissions: Sequence[str],
) -> bool:
    """Name, description and the permission grid saved as a difference: only what changed is
    granted or revoked, each change one audit event. Returns whether anything changed."""
    async with conn.transaction():
        group = await groups.get(conn, group_id, for_update=True)
        held = await groups.group_permissions(conn, group_id)
        rename: dict[str, str] = {}
        if name != group.name:
            rename["name"] = name
        if description != group.description:
            rename["description"] = description
        if rename:
            await groups.update(conn, ctx, actor, group_id, **rename)
        grant = sorted(set(permissions) - set(held))
        revoke = sorted(set(held) - set(permissions))
        if grant:
            await groups.grant(conn, ctx, actor, group_id, grant)
        if revoke:
            await groups.revoke(conn, ctx, actor, group_id, revoke)
    return bool(rename or grant or revoke)


async def set_temporary_password(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    hasher: Hasher,
    *,
    reason: str,
) -> tuple[users.User, str]:
    """A generated one-time password the user must change at the next sign-in; every session
    of theirs ends. Returns the user and the password, to be shown once and never stored."""
    one_time = passwords.generate()
    # Hashed before the transaction opens: no row lock waits on Argon2.
    password_hash = await hasher.hash(one_time)
    user = await users.set_password(
        conn, ctx, actor, user_id, password_hash, temporary=True, reason=reason
    )
    return user, one_time


async def end_sessions(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    *,
    reason: str | None,
    session_id: int | None = None,
) -> list[int]:
    """End one session of a user (`session_id`) or all of them; returns the ended ids."""
    async with conn.transaction():
        target = await users.get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        if session_id is None:
            return await sessions.revoke(
                conn, ctx, reason="administrative_revoke", user_id=target.id, note=reason
            )
        found = await sessions.get(conn, session_id)
        if found is None or found.user_id != target.id:
            raise NotFound("that session does not belong to this user")
        return await sessions.revoke(
            conn, ctx, reason="administrative_revoke", session_id=session_id, note=reason
        )


async def set_role(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    user_id: int,
    role: str,
    *,
    join_group: str | None = None,
) -> users.User:
    """Give a role and, for the roles that are a group on top of a base role (editor, viewer),
    put the user in that group, in the same transaction."""
    async with conn.transaction():
        if join_group is not None:
            await groups.ensure_default_groups(conn, ctx)
            await groups.grant_resource_defaults(conn, ctx)
        changed = await users.set_role(conn, ctx, actor, user_id, role)
        if join_group is not None:
            await groups.add_member(conn, ctx, actor, join_group, user_id)
    return changed
