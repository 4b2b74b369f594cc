"""Many-to-many relations of company tables through a join table (AUTHZ-10).

A join table is declared on a resource (`ManyToMany("technician_skills")`) or found in the
catalog: a table whose primary key is exactly two columns, each a foreign key of its own. The
edit page shows the other side as a multi-select; saving writes only the difference (rows
added, rows removed) inside the caller's transaction, after checking that the set is still
the one the form showed, and records one `update` event naming what was added and removed.

Services only: no aiohttp. This module must not import `app.admin.resources` (which imports
it to bind declarations)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from app import audit, audit_events
from app.admin import forms
from app.db.catalog import ForeignKey, Table
from app.errors import Invalid

DEFAULT_LIMIT = 500  # choices drawn without JavaScript; type-ahead finds the rest
MAX_SELECTED = 2_000  # one form cannot link more rows than this


@dataclass(frozen=True)
class ManyToMany:
    """A declared join table. `column` is its foreign key to this resource's table and
    `target_column` the one to the other side; both are found when there is only one way."""

    through: str
    column: str | None = None
    target_column: str | None = None
    label: str | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class Link:
    """One many-to-many relation as the edit page and the save use it."""

    name: str  # the join table's name: the form field and the audit change are named after it
    through: Table
    column: str  # join column → this resource's key
    target_column: str  # join column → the other table's key
    target: Table
    target_key: str  # the other table's column the join points to
    display: str  # the other table's column that names its rows
    label: str
    limit: int = DEFAULT_LIMIT

    @property
    def field(self) -> str:
        return f"_m2m.{self.name}"

    @property
    def was_field(self) -> str:
        return f"_m2m_was.{self.name}"


class StaleSet(Exception):
    """The set changed since the form was loaded (someone else saved it meanwhile)."""

    def __init__(self, link: Link, was: set[Any], now: set[Any]) -> None:
        super().__init__(f"{link.label} changed meanwhile")
        self.link, self.was, self.now = link, was, now


def _single_fk(table: Table, column: str) -> ForeignKey | None:
    for fk in table.foreign_keys:
        if fk.columns == (column,):
            return fk
    return None


def is_join_table(table: Table) -> bool:
    """Two key columns, each a single-column foreign key, and nothing else a new pair must fill."""
    if table.kind != "table" or len(table.primary_key) != 2:
        return False
    if any(_single_fk(table, c) is None for c in table.primary_key):
        return False
    return all(
        c.name in table.primary_key or c.nullable or c.has_default or c.is_generated
        for c in table.columns
    )


def candidates(tables: Iterable[Table]) -> list[str]:
    """`schema.name` of the tables whose foreign keys point at `tables`: possible join tables."""
    return sorted({f"{fk.schema}.{fk.table}" for t in tables for fk in t.referenced_by})


def _link(
    through: Table,
    *,
    own: ForeignKey,
    other: ForeignKey,
    catalog: Mapping[str, Table],
    display_of: Callable[[Table], str],
    declared: ManyToMany | None,
) -> Link | None:
    target = catalog.get(other.target)
    if target is None:
        return None
    label = declared.label if declared and declared.label else through.name.replace("_", " ")
    if not (declared and declared.label):
        # `technician_skills` seen from technicians reads "Skills": the other table's name.
        label = target.name.replace("_", " ")
    return Link(
        name=through.name,
        through=through,
        column=own.column,
        target_column=other.column,
        target=target,
        target_key=other.target_column,
        display=display_of(target),
        label=label[:1].upper() + label[1:],
        limit=declared.limit if declared else DEFAULT_LIMIT,
    )


def resolve(
    declared: Sequence[ManyToMany] | None,
    table: Table,
    catalog: Mapping[str, Table],
    display_of: Callable[[Table], str],
) -> tuple[tuple[Link, ...], list[tuple[str, str]]]:
    """The links of `table` and the problems of its declarations as (name, message).

    `declared` None: every join table in the catalog that points at `table`; a tuple: exactly
    those (an empty tuple turns detection off)."""
    links: list[Link] = []
    problems: list[tuple[str, str]] = []
    if declared is None:
        for name in candidates([table]):
            through = catalog.get(name)
            if through is None or not is_join_table(through):
                continue
            for own_col in through.primary_key:
                own = _single_fk(through, own_col)
                if own is None or own.target != table.qualified:
                    continue
                (other_col,) = [c for c in through.primary_key if c != own_col]
                other = _single_fk(through, other_col)
                assert other is not None
                found = _link(
                    through,
                    own=own,
                    other=other,
                    catalog=catalog,
                    display_of=display_of,
                    declared=None,
                )
                if found is not None:
                    links.append(found)
        return tuple(links), problems
    for d in declared:
        through = catalog.get(d.through)
        if through is None:
            problems.append((d.through, "no such table"))
            continue
        fks = [fk for fk in through.foreign_keys if len(fk.columns) == 1]
        own_fks = [
            fk
            for fk in fks
            if fk.target == table.qualified and (d.column is None or fk.column == d.column)
        ]
        if len(own_fks) != 1:
            problems.append(
                (d.through, f"needs column= naming its one foreign key to {table.name}")
            )
            continue
        own = own_fks[0]
        others = [
            fk
            for fk in fks
            if fk is not own and (d.target_column is None or fk.column == d.target_column)
        ]
        if len(others) != 1:
            problems.append(
                (d.through, "needs target_column= naming its foreign key to the other table")
            )
            continue
        if not is_join_table(through) and set(through.primary_key) != {
            own.column,
            others[0].column,
        }:
            problems.append((d.through, "its primary key must be its two foreign-key columns"))
            continue
        found = _link(
            through, own=own, other=others[0], catalog=catalog, display_of=display_of, declared=d
        )
        if found is None:
            problems.append((d.through, f"the table {others[0].target} is not loaded"))
            continue
        links.append(found)
    return tuple(links), problems


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
