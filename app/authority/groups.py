"""Groups: members, permissions, and the default groups seeded once (AUTHZ-4, AUTHZ-6, INV-3)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import class_row

from app import audit
from app import audit_events as events
from app.authority import guards, permissions
from app.authority.principal import Principal
from app.authority.roles import MANAGER_ROLE, ensure_role
from app.errors import Conflict, Invalid, NotFound

# Same shape as the database CHECK (0004_users.sql): typed on command lines, so plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")
DEFAULTS_FLAG = "default_groups_seeded"
# "keelgrps": one seeding at a time when several hosts start together (OPS-9).
_SEED_LOCK = 0x6B65656C_67727073


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    description: str
    members: int
    permissions: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "g.id, g.name, g.description,"
    " (SELECT count(*) FROM keel_group_members m WHERE m.group_id = g.id)::int AS members,"
    " (SELECT count(*) FROM keel_group_permissions p WHERE p.group_id = g.id)::int AS permissions,"
    " g.created_at, g.updated_at"
)


def validate_name(raw: object) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw.strip()):
        shown = "".join(c if c.isprintable() else "?" for c in str(raw))[:60]
        raise Invalid(
            f"{shown!r} is not a usable group name",
            fields={"name": "letters, digits, space, _ . -; at most 80"},
            why="group names are typed on command lines and shown in lists",
            fix="use 1–80 letters, digits, spaces, dots, dashes or underscores, e.g. support-team",
        )
    return raw.strip()


# ---- reading ----------------------------------------------------------------------------


async def list_groups(conn: psycopg.AsyncConnection[Any]) -> list[Group]:
    async with conn.cursor(row_factory=class_row(Group)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM keel_groups g ORDER BY lower(g.name), g.id")
        return await cur.fetchall()


async def get(
    conn: psycopg.AsyncConnection[Any], group: int | str, *, for_update: bool = False
) -> Group:
    """A group by id or by name (any case), or NotFound with a fix (CLI-1)."""
    by_id = isinstance(group, int)
    lock = " FOR UPDATE OF g" if for_update else ""
    where = "g.id = %s" if by_id else "lower(g.name) = lower(%s)"
    key = group if by_id else validate_name(group)
    async with conn.cursor(row_factory=class_row(Group)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM keel_groups g WHERE {where}{lock}", (key,))
        found = await cur.fetchone()
    if found is None:
        raise NotFound(
            f"there is no group {key!r}" if not by_id else f"there is no group with id {key}",
            fix="see `keel group list`; create one with `keel group create NAME`",
        )
    return found


async def members(conn: psycopg.AsyncConnection[Any], group_id: int) -> list[tuple[int, str, str]]:
    """(user id, email, role) of each member, by email."""
    cur = await conn.execute(
        "SELECT u.id, u.email, u.role FROM keel_group_members m JOIN keel_users u ON u.id = m.user_id"
        " WHERE m.group_id = %s ORDER BY u.email, u.id",
        (group_id,),
    )
    return [(int(i), e, r) for i, e, r in await cur.fetchall()]


async def group_permissions(conn: psycopg.AsyncConnection[Any], group_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT permission FROM keel_group_permissions WHERE group_id = %s ORDER BY permission",
        (group_id,),
    )
    return [r[0] for r in await cur.fetchall()]


# ---- changing ---------------------------------------------------------------------------


async def create(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    name: str,
    *,
    description: str = "",
    grant: Iterable[str] = (),
) -> Group:
    ensure_role(actor, MANAGER_ROLE)
    name = validate_name(name)
    description = _description(description)
    perms = permissions.validate(grant) if list(grant) else []
    try:
        async with conn.transaction():
            group_id = await _insert(conn, ctx, name, description, perms, via="admin")
    except pgerrors.UniqueViolation:
        raise Conflict(
            f"a group named {name!r} already exists",
            why="group names are unique, ignoring case",
            fix="choose another name, or change the existing group",
        ) from None
    return await get(conn, group_id)


async def _insert(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    name: str,
    description: str,
    perms: list[str],
    *,
    via: str,
) -> int:
    cur = await conn.execute(
        "INSERT INTO keel_groups (name, description) VALUES (%s, %s) RETURNING id",
        (name, description),
    )
    row = await cur.fetchone()
    assert row is not None
    group_id = int(row[0])
    await audit.record(conn, ctx, events.group_created(group_id, name, details={"via": via}))
    if perms:
        await conn.execute(
            "INSERT INTO keel_group_permissions (group_id, permission)"
            " SELECT %s, unnest(%s::text[])",
            (group_id, perms),
        )
        await audit.record(conn, ctx, events.permission_granted("group", group_id, name, perms))
    return group_id


def _description(raw: object) -> str:
    if not isinstance(raw, str):
        raise Invalid(
            "the description must be text", fields={"description": "text"}, fix="send text"
        )
    value = raw.strip()
    if len(value) > 500 or any(not c.isprintable() for c in value):
        raise Invalid(
            "the description must be at most 500 printable characters",
            fields={"description": "at most 500 printable characters"},
            fix="shorten it and remove control characters",
        )
    return value


async def update(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Group:
    """Rename a group or change its description; one `group_updated` event with from → to."""
    ensure_role(actor, MANAGER_ROLE)
    new_name = validate_name(name) if name is not None else None
    new_description = _description(description) if description is not None else None
    try:
        async with conn.transaction():
            found = await get(conn, group, for_update=True)
            changes: dict[str, dict[str, str]] = {}
            if new_name is not None and new_name != found.name:
                changes["name"] = {"from": found.name, "to": new_name}
            if new_description is not None and new_description != found.description:
                changes["description"] = {"from": found.description, "to": new_description}
            if not changes:
                return found
            await conn.execute(
                "UPDATE keel_groups SET name = %s, description = %s, updated_at = now()"
                " WHERE id = %s",
                (
                    changes.get("name", {}).get("to", found.name),
                    changes.get("description", {}).get("to", found.description),
                    found.id,
                ),
            )
            shown = changes.get("name", {}).get("to", found.name)
            await audit.record(conn, ctx, events.group_updated(found.id, shown, changes))
    except pgerrors.UniqueViolation:
        raise Conflict(
            f"a group named {new_name!r} already exists",
            why="group names are unique, ignoring case",
            fix="choose another name",
        ) from None
    return await get(conn, found.id)


async def delete(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
) -> None:
    """Remove a group; its members keep their accounts and lose what it granted (AUTHZ-5)."""
    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        found = await get(conn, group, for_update=True)
        await conn.execute("DELETE FROM keel_groups WHERE id = %s", (found.id,))
        await audit.record(
            conn,
            ctx,
            events.group_deleted(
                found.id, found.name,
                details={"members_count": found.members, "permissions_count": found.permissions},
            ),
        )  # fmt: skip


async def add_member(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    user_id: int,
) -> bool:
    """Put a user in a group (False when already there). Membership changes what the user may
    do, so it is a change of that user: only on users of lower rank (AUTHZ-3 guard 2)."""
    return await _membership(conn, ctx, actor, group, user_id, add=True)


async def remove_member(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    user_id: int,
) -> bool:
    return await _membership(conn, ctx, actor, group, user_id, add=False)


async def _membership(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    user_id: int,
    *,
    add: bool,
) -> bool:
    from app.authority import users  # users imports nothing from here; keep the edge one-way

    ensure_role(actor, MANAGER_ROLE)
    async with conn.transaction():
        found = await get(conn, group, for_update=True)
        target = await users.get(conn, user_id, for_update=True)
        guards.check_rank(actor, target)
        if add:
            cur = await conn.execute(
                "INSERT INTO keel_group_members (group_id, user_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (found.id, user_id),
            )
        else:
            cur = await conn.execute(
                "DELETE FROM keel_group_members WHERE group_id = %s AND user_id = %s",
                (found.id, user_id),
            )
        if cur.rowcount != 1:
            return False
        change = {"from": None, "to": target.email} if add else {"from": target.email, "to": None}
        await audit.record(
            conn,
            ctx,
            events.group_updated(
                found.id, found.name, {"member": change}, details={"user_id": user_id}
            ),
        )
    return True


async def grant(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    names: Iterable[str],
) -> list[str]:
    """Give the group permissions; returns the ones that were new (one event for them)."""
    ensure_role(actor, MANAGER_ROLE)
    wanted = permissions.validate(names)
    async with conn.transaction():
        found = await get(conn, group, for_update=True)
        cur = await conn.execute(
            "INSERT INTO keel_group_permissions (group_id, permission)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING permission",
            (found.id, wanted),
        )
        added = sorted(r[0] for r in await cur.fetchall())
        if added:
            await audit.record(
                conn, ctx, events.permission_granted("group", found.id, found.name, added)
            )
    return added


async def revoke(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    actor: Principal | None,
    group: int | str,
    names: Iterable[str],
) -> list[str]:
    """Take permissions from the group (names no longer declared may still be revoked)."""
    ensure_role(actor, MANAGER_ROLE)
    wanted = permissions.well_formed(names)
    async with conn.transaction():
        found = await get(conn, group, for_update=True)
        cur = await conn.execute(
            "DELETE FROM keel_group_permissions WHERE group_id = %s AND permission = ANY(%s)"
            " RETURNING permission",
            (found.id, wanted),
        )
        removed = sorted(r[0] for r in await cur.fetchall())
        if removed:
            await audit.record(
                conn, ctx, events.permission_revoked("group", found.id, found.name, removed)
            )
    return removed


# ---- default groups (AUTHZ-6) -----------------------------------------------------------


def default_groups() -> list[tuple[str, str, list[str]]]:
    """(name, description, permissions) from what the resources declare right now."""
    grants: dict[str, set[str]] = {"administrator": set(), "editor": set(), "viewer": set()}
    for _slug, per_group in permissions.resource_defaults():
        for group, perms in per_group.items():
            grants.setdefault(group, set()).update(perms)
    # Permission names that no resource's defaults mention (a renamed action permission)
    # still go to the administrator group, as they always did.
    grants["administrator"].update(name for name, _ in permissions.all_permissions())
    return [
        ("administrator", "Every permission the site declared at first start.",
         sorted(grants["administrator"])),
        ("editor", "View, add and change every resource.", sorted(grants["editor"])),
        ("viewer", "View every resource.", sorted(grants["viewer"])),
    ]  # fmt: skip


async def grant_resource_defaults(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context
) -> list[tuple[str, str, list[str]]]:
    """Give the built-in groups their default access to resources that appeared since the
    last call (a new build, `keel startapp`); once per resource, audited. Returns
    (resource, group, permissions granted).

    Runs after `ensure_default_groups`; a group the operator deleted or never had gets
    nothing, and a resource seen before is never granted again, so a permission taken away
    stays away."""
    done: list[tuple[str, str, list[str]]] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SEED_LOCK,))
        cur = await conn.execute("SELECT slug FROM keel_resource_defaults")
        seen = {r[0] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT name, id FROM keel_groups")
        ids = {name: gid for name, gid in await cur.fetchall()}
        for slug, per_group in permissions.resource_defaults():
            if slug in seen:
                continue
            await conn.execute("INSERT INTO keel_resource_defaults (slug) VALUES (%s)", (slug,))
            for group, perms in sorted(per_group.items()):
                if group not in ids or not perms:
                    continue
                cur = await conn.execute(
                    "INSERT INTO keel_group_permissions (group_id, permission)"
                    " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING permission",
                    (ids[group], perms),
                )
                added = sorted(r[0] for r in await cur.fetchall())
                if added:
                    await audit.record(
                        conn,
                        ctx,
                        events.permission_granted(
                            "group", ids[group], group, added,
                            details={"reason": f"default access to the new resource {slug}"},
                        ),
                    )  # fmt: skip
                    done.append((slug, group, added))
    return done


async def ensure_default_groups(conn: psycopg.AsyncConnection[Any], ctx: audit.Context) -> bool:
    """Seed `administrator`, `editor`, `viewer` once: only when there are no groups and they
    were never seeded before, so deleting them is final (AUTHZ-6). True when it seeded."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SEED_LOCK,))
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM keel_flags WHERE name = %s),"
            " EXISTS (SELECT 1 FROM keel_groups)",
            (DEFAULTS_FLAG,),
        )
        row = await cur.fetchone()
        assert row is not None
        seeded, has_groups = row
        if seeded:
            return False
        await conn.execute("INSERT INTO keel_flags (name) VALUES (%s)", (DEFAULTS_FLAG,))
        if has_groups:  # the operator made their own before the first start: leave them be
            return False
        for name, description, perms in default_groups():
            await _insert(conn, ctx, name, description, perms, via="first_start")
    return True
