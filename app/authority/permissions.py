"""Permission names, the registry of known ones, effective sets with sources, direct grants (AUTHZ-4)."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import psycopg

from app import audit
from app import audit_events as events
from app.errors import Invalid

# `<resource>.<action>`: the same shape the database CHECK enforces (0004_users.sql).
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$")

# Built-in pages (users, groups, the audit log, the schema browser) are gated by role, not by
# permission (AUTHZ-2, AUTHZ-7): a permission that an administrator could hand to staff would
# let staff manage the people who manage them. So the core declares none of its own.
BUILTIN: tuple[tuple[str, str], ...] = ()


def all_permissions() -> list[tuple[str, str]]:
    """(name, description) of every grantable permission: built-ins + the site's declarations."""
    from app.admin.registry import declared_permissions

    return [*BUILTIN, *declared_permissions()]


def resource_defaults() -> list[tuple[str, dict[str, list[str]]]]:
    """(resource slug, built-in group → permissions) for every declared resource."""
    from app.admin.registry import site_registry

    return [(r.key, r.default_grants()) for r in site_registry()]


def known_names() -> set[str]:
    return {name for name, _ in all_permissions()}


def well_formed(names: Iterable[str]) -> list[str]:
    """The names, deduplicated and sorted, or Invalid naming the first malformed one."""
    wanted = sorted({str(n).strip() for n in names})
    if not wanted:
        raise Invalid(
            "no permission given", fix="name one or more, e.g. bookings.view (see `keel perm list`)"
        )
    for name in wanted:
        if not NAME.match(name):
            raise Invalid(
                f"{_shown(name)} is not a permission name",
                fields={"permission": "not a permission name"},
                why="permissions are named <resource>.<action>, e.g. bookings.change",
                fix="see `keel perm list` for every permission this site declares",
            )
    return wanted


def validate(names: Iterable[str]) -> list[str]:
    """Well-formed and declared by the site, or Invalid naming the first unknown one."""
    wanted = well_formed(names)
    known = known_names()
    for name in wanted:
        if name not in known:
            raise Invalid(
                f"unknown permission {name}",
                fields={"permission": "unknown permission"},
                why="only permissions the site's resources declare can be granted",
                fix="see `keel perm list` for every permission this site declares",
            )
    return wanted


def _shown(value: str) -> str:
    """Hostile input echoed back safely: printable, short."""
    clean = "".join(c if c.isprintable() else "?" for c in value)
    return repr(clean[:60] + ("…" if len(clean) > 60 else ""))


async def effective_permissions(
    conn: psycopg.AsyncConnection[Any], user_id: int
) -> dict[str, list[str]]:
    """{permission: [sources]} with sources "direct" and "via <group>" (AUTHZ-4, AUTHZ-7).

    Always read from the database, never cached, so a change is seen by the next request on
    every host (AUTHZ-5)."""
    cur = await conn.execute(
        "SELECT permission, 'direct', 0 FROM keel_user_permissions WHERE user_id = %(u)s"
        " UNION ALL"
        " SELECT gp.permission, 'via ' || g.name, 1 FROM keel_group_members m"
        " JOIN keel_groups g ON g.id = m.group_id"
        " JOIN keel_group_permissions gp ON gp.group_id = g.id"
        " WHERE m.user_id = %(u)s"
        " ORDER BY 1, 3, 2",
        {"u": user_id},
    )
    out: dict[str, list[str]] = {}
    for permission, source, _order in await cur.fetchall():
        out.setdefault(permission, []).append(source)
    return out


def effective_names_sql(user_id: str) -> str:
    """A scalar subquery: the names of the effective permissions of the user whose id is the
    SQL expression `user_id` (direct ∪ groups', AUTHZ-4). The session lookup embeds it, so the
    principal and what it may do are read together, fresh, once per request (AUTHZ-5)."""
    return (
        f"ARRAY(SELECT p.permission FROM keel_user_permissions p WHERE p.user_id = {user_id}"
        " UNION SELECT gp.permission FROM keel_group_members m"
        " JOIN keel_group_permissions gp ON gp.group_id = m.group_id"
        f" WHERE m.user_id = {user_id})"
    )


# The permission version (migration 0014): a scalar subquery a lookup reads with the session.
VERSION_SQL = "(SELECT g.version FROM keel_authz_generation g)"
# Each user's effective names, with the version they were read at (`names_at`). Bounded: the
# least recently used user is forgotten first.
NAMES_KEPT = 4096
_NAMES: OrderedDict[int, tuple[object, frozenset[str]]] = OrderedDict()


async def names_at(
    conn: psycopg.AsyncConnection[Any], user_id: int, version: object
) -> frozenset[str]:
    """The user's effective permission names, as of `version` or later (AUTHZ-4, AUTHZ-5).

    The lookup that asks has just read `version` from the database, on this request. Names
    kept from a read at that version are the names now: any change to any grant, group
    permission or membership replaces the version in its own transaction (by trigger, so no
    writer can forget to), with a random value no other database or earlier state shares.
    Otherwise they are read again, with the version they were read at, in one statement (so
    the two agree). A revocation therefore still applies to the next request on every host;
    what is saved is the query, on every request of every user in between, and it was a
    third of the session lookup's work in PostgreSQL."""
    kept = _NAMES.get(user_id)
    # No version (its row deleted by hand): nothing can be kept against it, read every time.
    if kept is not None and version is not None and kept[0] == version:
        _NAMES.move_to_end(user_id)
        return kept[1]
    cur = await conn.execute(
        f"SELECT {VERSION_SQL}, {effective_names_sql('%(u)s')}", {"u": user_id}
    )
    row = await cur.fetchone()
    assert row is not None
    read_at, names = row[0], frozenset(row[1] or ())
    _NAMES[user_id] = (read_at, names)
    _NAMES.move_to_end(user_id)
    while len(_NAMES) > NAMES_KEPT:
        _NAMES.popitem(last=False)
    return names


async def has_permission(conn: psycopg.AsyncConnection[Any], user_id: int, perm: str) -> bool:
    """Whether an active user holds `perm` directly or through a group (no role bypass here)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM keel_users u WHERE u.id = %(u)s AND u.is_active AND ("
        " EXISTS (SELECT 1 FROM keel_user_permissions p"
        "         WHERE p.user_id = u.id AND p.permission = %(p)s)"
        " OR EXISTS (SELECT 1 FROM keel_group_members m"
        "   JOIN keel_group_permissions gp ON gp.group_id = m.group_id"
        "   WHERE m.user_id = u.id AND gp.permission = %(p)s)))",
        {"u": user_id, "p": perm},
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def direct_permissions(conn: psycopg.AsyncConnection[Any], user_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT permission FROM keel_user_permissions WHERE user_id = %s ORDER BY permission",
        (user_id,),
    )
    return [r[0] for r in await cur.fetchall()]


async def grant_direct(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    *,
    user_id: int,
    email: str,
    names: Iterable[str],
) -> list[str]:
    """Grant permissions to a user; returns the ones that were new (one event for them, INV-3).

    Callers check the authority guards first (users.grant does); this writes and records."""
    wanted = validate(names)
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO keel_user_permissions (user_id, permission)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING permission",
            (user_id, wanted),
        )
        added = sorted(r[0] for r in await cur.fetchall())
        if added:
            await audit.record(conn, ctx, events.permission_granted("user", user_id, email, added))
    return added


async def revoke_direct(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    *,
    user_id: int,
    email: str,
    names: Iterable[str],
) -> list[str]:
    """Revoke direct permissions; unknown-but-held names may be revoked (a removed resource)."""
    wanted = well_formed(names)
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM keel_user_permissions WHERE user_id = %s AND permission = ANY(%s)"
            " RETURNING permission",
            (user_id, wanted),
        )
        removed = sorted(r[0] for r in await cur.fetchall())
        if removed:
            await audit.record(
                conn, ctx, events.permission_revoked("user", user_id, email, removed)
            )
    return removed
