"""Many-to-many sets of company tables through a join table (AUTHZ-10): reading them for the
edit page and saving the difference.

Join tables are declared (`ManyToMany`) or found in the catalog (`app/admin/joins.py`). Saving
writes only the rows added and removed, inside the caller's transaction, after checking that
the set is still the one the form showed, and records one `update` event naming what was
added and removed. Services only: no aiohttp."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from app import audit, audit_events
from app.admin import forms
from app.admin.joins import Link, ManyToMany
from app.db.catalog import Table
from app.errors import Invalid

__all__ = ["Change", "Link", "ManyToMany", "StaleSet", "apply", "choices", "selected"]

MAX_SELECTED = 2_000  # one form cannot link more rows than this


class StaleSet(Exception):
    """The set changed since the form was loaded (someone else saved it meanwhile)."""

    def __init__(self, link: Link, was: set[Any], now: set[Any]) -> None:
        super().__init__(f"{link.label} changed meanwhile")
        self.link, self.was, self.now = link, was, now


# ---- reading ------------------------------------------------------------------------------


def _ident(table: Table) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))


async def selected(
    conn: psycopg.AsyncConnection[Any], link: Link, pk: Any
) -> list[tuple[Any, str]]:
    """(key, label) of the rows linked to `pk`, by label."""
    query = sql.SQL(
        "SELECT t.{key}, t.{display}::text FROM {through} j JOIN {target} t"
        " ON t.{key} = j.{tcol} WHERE j.{col} = %s ORDER BY 2, 1 LIMIT {cap}"
    ).format(
        key=sql.Identifier(link.target_key),
        display=sql.Identifier(link.display),
        through=_ident(link.through),
        target=_ident(link.target),
        tcol=sql.Identifier(link.target_column),
        col=sql.Identifier(link.column),
        cap=sql.Literal(MAX_SELECTED),
    )
    cur = await conn.execute(query, (pk,))
    return [(k, label or "") for k, label in await cur.fetchall()]


async def choices(
    conn: psycopg.AsyncConnection[Any], link: Link
) -> tuple[list[tuple[Any, str]], bool]:
    """The first `limit` rows of the other side by label, and whether there are more."""
    query = sql.SQL("SELECT {key}, {display}::text FROM {target} ORDER BY 2, 1 LIMIT {n}").format(
        key=sql.Identifier(link.target_key),
        display=sql.Identifier(link.display),
        target=_ident(link.target),
        n=sql.Literal(link.limit + 1),
    )
    cur = await conn.execute(query)
    rows = [(k, label or "") for k, label in await cur.fetchall()]
    return rows[: link.limit], len(rows) > link.limit


async def current_keys(
    conn: psycopg.AsyncConnection[Any], link: Link, pk: Any, *, lock: bool = False
) -> set[Any]:
    query = sql.SQL("SELECT {tcol} FROM {through} WHERE {col} = %s{lock}").format(
        tcol=sql.Identifier(link.target_column),
        through=_ident(link.through),
        col=sql.Identifier(link.column),
        lock=sql.SQL(" FOR UPDATE" if lock else ""),
    )
    cur = await conn.execute(query, (pk,))
    return {r[0] for r in await cur.fetchall()}


# ---- parsing ------------------------------------------------------------------------------


def parse_keys(link: Link, texts: Iterable[str]) -> set[Any]:
    """Posted keys typed by the other table's key column (SEC-3)."""
    col = link.target.column(link.target_key)
    assert col is not None
    out: set[Any] = set()
    for text in texts:
        if text == "":
            continue
        try:
            out.add(forms.parse_key(col, text))
        except forms.FieldError as exc:
            raise Invalid(f"{link.label}: a chosen value is not valid: {exc}.") from None
        if len(out) > MAX_SELECTED:
            raise Invalid(f"{link.label}: at most {MAX_SELECTED:,} can be chosen.")
    return out


def was_text(keys: Iterable[Any]) -> str:
    """The set the form showed, as one hidden field: the keys sorted, comma-separated."""
    return ",".join(sorted(str(k) for k in keys))


def parse_was(link: Link, text: str) -> set[Any]:
    return parse_keys(link, text.split(",")) if text else set()


# ---- writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What one save does to one link: the keys to add and to remove."""

    link: Link
    was: frozenset[Any]
    wanted: frozenset[Any]


async def apply(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    change: Change,
    *,
    resource: str,
    object_id: str,
    label: str,
    pk: Any,
) -> tuple[list[Any], list[Any]]:
    """Write the difference and record one `update` event; inside the caller's transaction.

    The set is read under row locks first: when it is no longer the one the form showed,
    `StaleSet` is raised and nothing is written."""
    link = change.link
    async with conn.transaction():
        now = await current_keys(conn, link, pk, lock=True)
        if now != set(change.was):
            raise StaleSet(link, set(change.was), now)
        added = sorted(set(change.wanted) - now, key=str)
        removed = sorted(now - set(change.wanted), key=str)
        if not added and not removed:
            return [], []
        through = _ident(link.through)
        try:
            if removed:
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s AND {} = ANY(%s)").format(
                        through, sql.Identifier(link.column), sql.Identifier(link.target_column)
                    ),
                    (pk, removed),
                )
            if added:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        sql.SQL("INSERT INTO {} ({}, {}) VALUES (%s, %s)").format(
                            through,
                            sql.Identifier(link.column),
                            sql.Identifier(link.target_column),
                        ),
                        [(pk, k) for k in added],
                    )
        except pgerrors.ForeignKeyViolation:
            raise Invalid(
                f"{link.label}: a chosen record no longer exists.",
                fields={link.field: "A chosen record no longer exists: reload and choose again."},
            ) from None
        names = await labels(conn, link, [*added, *removed])
        changes = {
            link.name: {
                "from": sorted(str(k) for k in now),
                "to": sorted(str(k) for k in change.wanted),
            }
        }
        details = {
            "added": [{"id": str(k), "label": names.get(str(k), "")} for k in added],
            "removed": [{"id": str(k), "label": names.get(str(k), "")} for k in removed],
        }
        await audit.record(
            conn, ctx, audit_events.update(resource, object_id, label, changes, details=details)
        )
    return added, removed


async def labels(conn: psycopg.AsyncConnection[Any], link: Link, keys: list[Any]) -> dict[str, str]:
    if not keys:
        return {}
    query = sql.SQL("SELECT {}::text, {}::text FROM {} WHERE {} = ANY(%s)").format(
        sql.Identifier(link.target_key),
        sql.Identifier(link.display),
        _ident(link.target),
        sql.Identifier(link.target_key),
    )
    cur = await conn.execute(query, (keys,))
    return {k: (v or "")[:120] for k, v in await cur.fetchall()}
