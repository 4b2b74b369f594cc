"""Related-row lookups: FK autocomplete search, FK labels, inline child rows (EDIT-1, EDIT-7, EDIT-9)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from app.admin import writes
from app.admin.deletion import CAP
from app.admin.resources import BoundResource, search_kind
from app.db.catalog import INTEGER_TYPES, Table
from app.errors import Invalid

DEFAULT_LIMIT = 20
MAX_LIMIT = 50
MAX_QUERY = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_query(q: str) -> str:
    """SEC-3: the autocomplete text is bounded and printable; 400 otherwise."""
    if len(q) > MAX_QUERY:
        raise Invalid(f"The search text is too long (at most {MAX_QUERY} characters).")
    if _CONTROL.search(q):
        raise Invalid("The search text contains control characters.")
    return q.strip()


def check_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:  # not "²"
        raise Invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(raw)


# "123", "ID 123", "id:123", "#123" or a uuid: what an operator types to name a record by its key.
_TYPED_KEY = re.compile(
    r"(?:id\s*[:#]?\s*|#)?([0-9]{1,19}|[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12})"
)
_INT_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


def typed_key(q: str) -> str | None:
    """The key the search text names, if it is one (the digits of "ID 123"); else None.

    Global search and the palette both read it here, so they offer the same record."""
    found = _TYPED_KEY.fullmatch(q.strip().casefold())
    return found.group(1) if found else None


def key_value(bound: BoundResource, key: str) -> int | uuid.UUID | None:
    """`key` as a value of the resource's single-column key, or None where it cannot be one
    (another key type, out of the column's range, a composite or no key)."""
    if not bound.keyed or bound.composite:
        return None
    col = bound.table.column(bound.pk)
    if col is None:
        return None
    if col.type_name in INTEGER_TYPES and key.isdigit():
        value = int(key)
        return value if value <= _INT_MAX[col.type_name] else None
    if col.type_name == "uuid" and not key.isdigit():
        try:
            return uuid.UUID(key)
        except ValueError:
            return None
    return None


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(
    conn: psycopg.AsyncConnection[Any], bound: BoundResource, q: str, limit: int
) -> list[dict[str, str]]:
    """EDIT-9: `[{id, label}]` for rows whose key equals q or whose name columns contain it.

    Never the whole table: always a LIMIT, and an empty query gives the first rows by key.
    Only a single-column key can be chosen in a foreign-key field: other resources have none."""
    if not bound.keyed or bound.composite:
        return []
    table = bound.table
    pk = table.column(bound.pk)
    display = bound.display_column
    local = [
        n for n in (display, *bound.resource.search_fields) if "." not in n and table.column(n)
    ]
    texts = [n for n in dict.fromkeys(local) if (c := table.column(n)) and search_kind(c) == "text"]
    params: list[Any] = []
    parts: list[sql.Composable] = []
    exact: int | uuid.UUID | None = None
    if q:
        key = typed_key(q)
        exact = key_value(bound, key) if key is not None and pk is not None else None
        if exact is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(bound.pk)))
            params.append(exact)
        for name in texts:
            parts.append(sql.SQL("{} ILIKE %s").format(sql.Identifier(name)))
            params.append(_like(q))
        if not parts:
            return []
    where = sql.SQL(" OR ").join(parts) if parts else sql.SQL("TRUE")
    order: sql.Composable = sql.Identifier(display if display in texts else bound.pk)
    if exact is not None:
        # The record the key names first, so a short LIMIT never cuts it off.
        order = sql.SQL("{} = %s DESC, {}").format(sql.Identifier(bound.pk), order)
        params.append(exact)
    query = sql.SQL("SELECT {}::text, {}::text FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
        sql.Identifier(bound.pk),
        sql.Identifier(display),
        sql.Identifier(table.schema, table.name),
        where,
        order,
    )
    cur = await conn.execute(query, [*params, limit])
    return [{"id": k, "label": label or k} for k, label in await cur.fetchall()]


async def labels(
    conn: psycopg.AsyncConnection[Any], table: Table, display: str, key: str, ids: Sequence[Any]
) -> dict[str, str]:
    """Display names of the rows `ids` in `table`: one query for all of them (LIST-1 style)."""
    wanted = [i for i in ids if i is not None]
    if not wanted or table.column(display) is None or table.column(key) is None:
        return {}
    col = table.column(key)
    # The key's own type (from the catalog's format_type, never from input): text would not
    # compare with a date or enum key.
    cast = (col.cast_type if col else None) or "text"
    query = sql.SQL("SELECT {}::text, {}::text FROM {} WHERE {} = ANY(%s::{}[])").format(
        sql.Identifier(key),
        sql.Identifier(display),
        sql.Identifier(table.schema, table.name),
        sql.Identifier(key),
        sql.SQL(cast),
    )
    cur = await conn.execute(query, [[str(i) if cast == "text" else i for i in wanted]])
    return {k: v for k, v in await cur.fetchall()}


@dataclass(frozen=True)
class Ref:
    """A foreign-key field whose target row is named on the edit page (EDIT-1, EDIT-9)."""

    field: str  # the FK column of the row
    table: Table  # the target table
    display: str  # the target column that names its rows
    key: str  # the target column the FK points to


@dataclass(frozen=True)
class RowQuery:
    """The edit page's one query for one key: `row_shape`'s text with the key's parameters."""

    query: sql.SQL
    params: dict[str, Any]
    refs: tuple[Ref, ...]  # the ones named, in the order of the query's last columns

    @property
    def statement(self) -> tuple[sql.SQL, dict[str, Any]]:
        return self.query, self.params


def row_shape(bound: BoundResource, refs: Sequence[Ref]) -> tuple[sql.SQL, tuple[Ref, ...]]:
    """The text of the query for a row (as `writes.fetch_row` reads it) and, per FK field, its
    target's name, with the refs it names; both depend on the resource alone.

    Each name is a scalar subquery on the target's key, so the page costs one round trip
    however many foreign keys it shows; a dangling or empty key names nothing (None)."""
    usable = tuple(r for r in refs if r.table.column(r.display) and r.table.column(r.key))
    shape = tuple((r.field, r.table.schema, r.table.name, r.display, r.key) for r in usable)
    select = writes.row_select(bound.table, "t")
    return _row_query(bound.table.schema, bound.table.name, select, bound.key, shape), usable


def read_row(
    bound: BoundResource, q: RowQuery, rows: Sequence[tuple[Any, ...]]
) -> tuple[dict[str, Any], dict[str, str | None]] | None:
    """The row and its names from what `q` returned; None when no row has that key."""
    if not rows:
        return None
    row = rows[0]
    n = len(row) - len(q.refs)
    names = [c.name for c in bound.table.columns]  # row_select's columns, in its order
    return dict(zip(names, row[:n], strict=True)), {
        r.field: row[n + i] for i, r in enumerate(q.refs)
    }


@lru_cache(maxsize=256)
def _row_query(
    schema: str,
    table: str,
    select: str,
    key: tuple[str, ...],
    refs: tuple[tuple[str, str, str, str, str], ...],
) -> sql.SQL:
    """Built once per resource: composing SQL costs more than running this query."""
    names = [
        # Every column qualified: joined to the session lookup (app/web/prefetch.py), a name
        # the target no longer has would otherwise be found among the session's columns.
        sql.SQL(", (SELECT r.{}::text FROM {} AS r WHERE r.{} = t.{})").format(
            sql.Identifier(display),
            sql.Identifier(tschema, tname),
            sql.Identifier(key),
            sql.Identifier(field),
        )
        for field, tschema, tname, display, key in refs
    ]
    where = sql.SQL(" AND ").join(
        sql.SQL("t.{} = %({})s").format(sql.Identifier(k), sql.SQL(f"__k{i}"))
        for i, k in enumerate(key)
    )
    query = sql.SQL("SELECT {}{} FROM {} AS t WHERE {}").format(
        sql.SQL(select), sql.SQL("").join(names), sql.Identifier(schema, table), where
    )
    return sql.SQL(query.as_string(None))


@dataclass(frozen=True)
class InlineRows:
    """EDIT-7: up to `limit` children of one parent, and how many there are (capped)."""

    table: Table
    fk_column: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    count: int

    @property
    def shown_count(self) -> str:
        return f"{CAP:,}+" if self.count > CAP else f"{self.count:,}"


async def inline_rows(
    conn: psycopg.AsyncConnection[Any],
    child: Table,
    fk_column: str,
    parent_key: Any,
    *,
    columns: Sequence[str],
    limit: int,
) -> InlineRows:
    key = child.primary_key
    shown = tuple(dict.fromkeys([*key, *(c for c in columns if child.column(c))]))
    ident = sql.Identifier(child.schema, child.name)
    fk = sql.Identifier(fk_column)
    order = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in key)
    query = sql.SQL("SELECT {} FROM {} WHERE {} = %s {} LIMIT %s").format(
        sql.SQL(", ").join(map(sql.Identifier, shown)),
        ident,
        fk,
        sql.SQL("ORDER BY ") + order if key else sql.SQL(""),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (parent_key, max(1, min(limit, 100))))
        rows = tuple(await cur.fetchall())
    count_query = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} = %s LIMIT {}) s"
    ).format(ident, fk, sql.Literal(CAP + 1))
    count = (await (await conn.execute(count_query, (parent_key,))).fetchone() or (0,))[0]
    return InlineRows(child, fk_column, shown, rows, int(count))
