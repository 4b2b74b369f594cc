"""List queries: allow-listed parameters → sargable SQL, keyset pages, capped counts (LIST-2..6, SEC-3)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg
from markupsafe import Markup, escape
from psycopg import sql

from app.admin.list_params import (
    CAST,
    Condition,
    ListQuery,
    encode_value,
    parse_query,
    parse_value,
)
from app.admin.resources import BoundResource, search_kind
from app.admin.values import ascii_html
from app.db.catalog import Column
from app.db.pool import Query
from app.errors import Invalid

__all__ = [
    "COUNT_CAP",
    "Condition",
    "ListQuery",
    "Page",
    "Total",
    "count_rows",
    "cursor_key",
    "fetch_page",
    "fk_labels",
    "page_query",
    "parse_query",
    "where_clause",
]

COUNT_CAP = 10_000  # filtered totals are exact up to here (LIST-4)
COUNT_TIMEOUT_MS = 500  # …and never cost more than this
SURE_ABOVE_CAP = 5 * COUNT_CAP  # a planner estimate this high means "10,000+" without counting


def cursor_key(secret_key: str) -> bytes:
    """A key of its own for page cursors, derived so the raw secret is never used twice."""
    return hmac.new(secret_key.encode(), b"keel-list-cursor-v1", hashlib.sha256).digest()


class RingKey(bytes):
    """The signing key, carrying the ring's older keys: a page link made before a key
    rotation still opens. It is a `bytes`, so every function that signs takes it as is."""

    older: tuple[bytes, ...] = ()


def cursor_ring_key(ring: tuple[str, ...]) -> bytes:
    """The cursor key of the ring's signing key, verifying with every key of the ring."""
    keys = [cursor_key(k) for k in ring] or [cursor_key("")]
    key = RingKey(keys[0])
    key.older = tuple(keys[1:])
    return key


# ---- SQL pieces --------------------------------------------------------------------------
# Identifiers come from the catalog and are quoted by `sql.Identifier`, once each; the pieces
# are then joined as text and handed to psycopg as one `sql.SQL`. Values are always `%s`
# parameters (INV-5). Composing with `sql.SQL.format` on every request cost more than the
# queries themselves (about 0.3 ms per list page).


@lru_cache(maxsize=4096)
def quoted(*names: str) -> str:
    """`sql.Identifier(*names)`, rendered once (standard quoting: the connection is UTF-8)."""
    return sql.Identifier(*names).as_string(None)


def _col(b: BoundResource, name: str) -> str:
    return quoted(b.table.name, name)


def _table(b: BoundResource) -> str:
    return quoted(b.table.schema, b.table.name)


def _param(col: Column, array: bool = False) -> str:
    """A placeholder cast to the column's type, so the predicate stays sargable (LIST-5)."""
    cast = CAST.get(col.type_name) or (col.cast_type if col.choices else None)
    if cast is None:
        return "%s"
    return f"%s::{cast}[]" if array else f"%s::{cast}"


def _condition_sql(b: BoundResource, c: Condition, params: list[Any]) -> str:
    col = b.table.column(c.column)
    assert col is not None  # parse_query only builds conditions on catalog columns
    ident = _col(b, c.column)
    if c.op == "in":
        if len(c.value) == 1:  # the same predicate; a plain `=` is planned and sent cheaper
            params.append(c.value[0])
            return f"{ident} = {_param(col)}"
        params.append(list(c.value))
        return f"{ident} = ANY({_param(col, array=True)})"
    if c.op == "isnull":
        return f"{ident} IS NULL"
    ops = {"eq": "=", "gte": ">=", "lt": "<", "lte": "<="}
    params.append(c.value)
    return f"{ident} {ops[c.op]} {_param(col)}"


def _like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _word_sql(b: BoundResource, word: str, params: list[Any]) -> str:
    """One search word matches any search field (own, related, or the tsvector) (LIST-6)."""
    options: list[str] = []
    for name in b.resource.search_fields:
        if "." in name:
            found = b.resolve_related(name)
            if found is None:
                continue
            fk_col, target, col = found
            match = _match(quoted(target.name, col.name), col, word, params)
            if match is not None:
                # `= ANY(ARRAY(subquery))` rather than `IN (subquery)`: inside an OR, IN becomes a
                # hashed filter over every row, while ANY(array) can drive a bitmap index scan.
                key = quoted(target.name, fk_col.fk.target_column)  # type: ignore[union-attr]
                options.append(
                    f"{_col(b, fk_col.name)} = ANY(ARRAY(SELECT {key} FROM "
                    f"{quoted(target.schema, target.name)} WHERE {match}))"
                )
        else:
            own = b.resolve_column(name)
            match = _match(_col(b, own.name), own, word, params) if own else None
            if match is not None:
                options.append(match)
    if b.resource.tsvector_field:
        params.append(word)
        options.append(f"{_col(b, b.resource.tsvector_field)} @@ plainto_tsquery('simple', %s)")
    if not options:
        return "FALSE"
    return "(" + " OR ".join(options) + ")"


def _match(ident: str, col: Column, word: str, params: list[Any]) -> str | None:
    kind = search_kind(col)
    if kind == "text":
        params.append(_like_pattern(word))
        return f"{ident} ILIKE %s"
    if kind in ("int", "uuid"):
        try:
            value = parse_value(col, word)
        except ValueError:
            return None  # "abc" cannot equal an integer key: this field just does not match
        params.append(value)
        return f"{ident} = {_param(col)}"
    return None


def _where_text(b: BoundResource, lq: ListQuery, params: list[Any]) -> str:
    parts = [_condition_sql(b, c, params) for c in lq.conditions]
    parts += [_word_sql(b, w, params) for w in lq.words]
    return " AND ".join(parts) if parts else "TRUE"


def where_clause(b: BoundResource, lq: ListQuery) -> tuple[sql.Composable, list[Any]]:
    """Filters and search as one parameterised predicate (`TRUE` when none).

    The editing views use this too, for bulk actions on "all N matching" (EDIT-8)."""
    params: list[Any] = []
    return sql.SQL(_where_text(b, lq, params)), params


# ---- keyset ------------------------------------------------------------------------------


def _after(
    ident: str, col: Column, desc: bool, value: Any, params: list[Any], *, strict: bool
) -> str:
    """`ident` comes after (strict) or at/after `value` in this direction.

    Postgres sorts NULL as the largest value (ASC … NULLS LAST, DESC … NULLS FIRST), and the
    queries below never override that, so backward index scans stay possible."""
    if value is None:
        if desc:
            return f"{ident} IS NOT NULL" if strict else "TRUE"
        return "FALSE" if strict else f"{ident} IS NULL"
    params.append(value)
    op = ("<" if strict else "<=") if desc else (">" if strict else ">=")
    cond = f"{ident} {op} {_param(col)}"
    if not desc and col.nullable:
        cond = f"({cond} OR {ident} IS NULL)"
    return cond


def _equal(ident: str, col: Column, value: Any, params: list[Any]) -> str:
    if value is None:
        return f"{ident} IS NULL"
    params.append(value)
    return f"{ident} = {_param(col)}"


def _keyset_text(
    b: BoundResource, ordering: Sequence[tuple[str, bool]], values: Sequence[Any], params: list[Any]
) -> str:
    cols: list[Column] = [b.table.column(name) for name, _d in ordering]  # type: ignore[misc]
    first_name, first_desc = ordering[0]
    bound = _after(_col(b, first_name), cols[0], first_desc, values[0], params, strict=False)
    chain: list[str] = []
    for i, (name, desc) in enumerate(ordering):
        eqs = [
            _equal(_col(b, n), cols[j], values[j], params) for j, (n, _d) in enumerate(ordering[:i])
        ]
        step = _after(_col(b, name), cols[i], desc, values[i], params, strict=True)
        chain.append("(" + " AND ".join([*eqs, step]) + ")")
    return f"{bound} AND (" + " OR ".join(chain) + ")"


def keyset_clause(
    b: BoundResource, ordering: Sequence[tuple[str, bool]], values: Sequence[Any], params: list[Any]
) -> sql.Composable:
    """Rows strictly after `values` in `ordering` (LIST-3): a lexicographic OR-chain, plus a
    redundant bound on the first key so an index on it is used (seek, not scan)."""
    return sql.SQL(_keyset_text(b, ordering, values, params))


def _order_text(b: BoundResource, ordering: Sequence[tuple[str, bool]], reverse: bool) -> str:
    return ", ".join(
        f"{_col(b, name)} {'DESC' if desc != reverse else 'ASC'}" for name, desc in ordering
    )


def order_by(
    b: BoundResource, ordering: Sequence[tuple[str, bool]], reverse: bool = False
) -> sql.Composable:
    return sql.SQL(_order_text(b, ordering, reverse))


# ---- pages -------------------------------------------------------------------------------


@dataclass
class Page:
    """One page of rows (tuples in `columns` order) and the cursors around it."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    next_cursor: str | None = None
    prev_cursor: str | None = None
    at_start: bool = True
    labels: dict[str, dict[Any, str]] = field(default_factory=dict)  # FK column → id → name


def selected_columns(b: BoundResource, lq: ListQuery) -> list[str]:
    names = [*b.key] + [c.name for c in b.list_columns]
    names += [n for n, _d in lq.ordering]
    names += lq.also
    return list(dict.fromkeys(names))


def _select(b: BoundResource, name: str) -> str:
    """A list cell's select expression: opaque types come as (the start of) their text."""
    if name in b.opaque_names:
        return f"left({_col(b, name)}::text, {MAX_CELL_TEXT})"
    return _col(b, name)


MAX_CELL_TEXT = 121  # list_render.MAX_CELL + 1: enough to know the cell is cut


def encode_cursor(
    key: bytes, b: BoundResource, lq: ListQuery, direction: str, row: Mapping[str, Any]
) -> str:
    """An opaque, tamper-evident page link (LIST-3): the keyset values, signed with HMAC."""
    values = [encode_value(row[name]) for name, _d in lq.ordering]
    return _signed(key, [1, b.slug, lq.order_signature, direction, values])


def encode_offset(key: bytes, b: BoundResource, lq: ListQuery, offset: int) -> str:
    """A page link by position, for resources without a usable key (see `offset_paging`)."""
    return _signed(key, [1, b.slug, lq.order_signature, "o", [max(0, offset)]])


MAX_OFFSET = 10_000_000


def _signed(key: bytes, payload_items: list[Any]) -> str:
    payload = json.dumps(payload_items, separators=(",", ":"))
    raw = payload.encode()
    mac = hmac.digest(key, raw, "sha256")[:16]
    return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")


async def stream_rows(
    conn: psycopg.AsyncConnection[Any], query: sql.Composed, params: Sequence[Any], batch: int
) -> AsyncGenerator[list[tuple[Any, ...]]]:
    """Rows in batches from a named (server-side) cursor inside its own transaction: flat
    memory at any size. Close it (`contextlib.aclosing`) when the reader stops early."""
    async with conn.transaction():
        cur = conn.cursor(name="keel_export")
        await cur.execute(query, params)
        while rows := await cur.fetchmany(batch):
            yield rows
        await cur.close()


def sign_cursor(key: bytes, items: list[Any]) -> str:
    """The one signed cursor: `items` (JSON) with an HMAC, for every list of the admin."""
    return _signed(key, items)


def unsign_cursor(key: bytes, token: str) -> Any:
    """What `sign_cursor` signed, with the ring's current or an older key; None if forged."""
    if len(token) > 2000:
        return None
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    raw, mac = blob[:-16], blob[-16:]
    if len(blob) <= 16 or not any(
        hmac.compare_digest(mac, hmac.digest(k, raw, "sha256")[:16])
        for k in (key, *getattr(key, "older", ()))
    ):
        return None
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return None


def open_cursor(key: bytes, token: str, slug: str) -> tuple[str, list[Any]] | None:
    """(direction, keyset position) of an entity list's cursor, or None when it is forged,
    corrupt or made for another list."""
    items = unsign_cursor(key, token)
    if (
        not isinstance(items, list)
        or len(items) != 4
        or items[0] != 1
        or items[1] != slug
        or items[2] not in ("n", "p")
        or not isinstance(items[3], list)
    ):
        return None
    return items[2], items[3]


def decode_cursor(key: bytes, b: BoundResource, lq: ListQuery, token: str) -> tuple[str, list[Any]]:
    """(direction, typed values) from a cursor; anything forged, corrupted or stale → 400."""
    bad = Invalid(
        "this page link is invalid or out of date",
        fields={"cursor": "start again from the first page"},
    )
    items = unsign_cursor(key, token)
    if not isinstance(items, list) or len(items) != 5:
        raise bad
    version, slug, signature, direction, values = items
    if (
        version != 1
        or slug != b.slug
        or signature != lq.order_signature
        or direction not in ("o", "p", "n")
        or (direction == "o") != b.offset_paging
    ):
        raise bad
    if direction == "o":
        if not (
            isinstance(values, list)
            and len(values) == 1
            and type(values[0]) is int
            and 0 <= values[0] <= MAX_OFFSET
        ):
            raise bad
        return direction, values
    if not isinstance(values, list) or len(values) != len(lq.ordering):
        raise bad
    typed = []
    for (name, _d), value in zip(lq.ordering, values, strict=True):
        col = b.table.column(name)
        try:
            typed.append(None if value is None else parse_value(col, str(value), strict=False))  # type: ignore[arg-type]
        except ValueError:
            raise bad from None
    return direction, typed


@dataclass(frozen=True)
class PageQuery:
    """The SQL of one page and how to read its result (backwards scans come back reversed)."""

    query: sql.SQL
    params: list[Any]
    columns: list[str]
    direction: str
    from_cursor: bool
    backwards: bool
    prepare: bool | None
    offset: int | None = None  # position paging: the first row's position
    labelled: tuple[str, ...] = ()  # FK columns whose names follow `columns` in each row


def _label_selects(
    b: BoundResource, names: list[str], display: Mapping[str, str] | None
) -> tuple[list[str], tuple[str, ...]]:
    """The names of the rows the page's foreign keys point to, as one sub-select per FK column
    in the page query itself: the same index lookups `fk_labels` does, without a second round
    trip after the page (which cost more than the lookups)."""
    if display is None:
        return [], ()
    selects: list[str] = []
    labelled: list[str] = []
    for col in b.list_columns:
        if col.fk is None or col.name not in names:
            continue
        target = b.related.get(col.fk.target)
        if target is None:
            continue
        shown = display.get(target.qualified) or col.fk.target_column
        # The inner table has its own alias, so the outer reference (`"table"."col"`) cannot
        # bind to it, also when a table points to itself.
        selects.append(
            f"(SELECT {quoted('__label', shown)}::text FROM {quoted(target.schema, target.name)}"
            f" AS __label WHERE {quoted('__label', col.fk.target_column)} = {_col(b, col.name)})"
        )
        labelled.append(col.name)
    return selects, tuple(labelled)


def _offset_page_query(
    b: BoundResource, lq: ListQuery, key: bytes, display: Mapping[str, str] | None
) -> PageQuery:
    """Pages by position (LIMIT … OFFSET …), ordered by every sortable column so that pages
    neither overlap nor skip rows while the data stays the same."""
    params: list[Any] = []
    where = _where_text(b, lq, params)
    offset = 0
    if lq.cursor:
        offset = int(decode_cursor(key, b, lq, lq.cursor)[1][0])
    names = selected_columns(b, lq)
    labels, labelled = _label_selects(b, names, display)
    order = f" ORDER BY {_order_text(b, lq.ordering, False)}" if lq.ordering else ""
    query = (
        f"SELECT {', '.join([*(_select(b, n) for n in names), *labels])} FROM {_table(b)}"
        f" WHERE {where}{order} LIMIT {int(lq.per_page) + 1} OFFSET {offset}"
    )
    prepare = False if lq.words else None
    return PageQuery(
        sql.SQL(query), params, names, "o", offset > 0, False, prepare, offset, labelled
    )


def page_query(
    b: BoundResource, lq: ListQuery, key: bytes, display: Mapping[str, str] | None = None
) -> PageQuery:
    """The page's SQL; with `display` (table → display column) it also names FK targets."""
    if b.offset_paging:
        return _offset_page_query(b, lq, key, display)
    params: list[Any] = []
    where = _where_text(b, lq, params)
    direction, values = ("n", None)
    if lq.cursor:
        direction, values = decode_cursor(key, b, lq, lq.cursor)
    backwards = direction == "p" or lq.last
    scan = [(n, d != backwards) for n, d in lq.ordering]
    if values is not None:
        where = f"{where} AND {_keyset_text(b, scan, values, params)}"
    names = selected_columns(b, lq)
    labels, labelled = _label_selects(b, names, display)
    query = (
        f"SELECT {', '.join([*(_select(b, n) for n in names), *labels])} FROM {_table(b)}"
        f" WHERE {where} ORDER BY {_order_text(b, lq.ordering, backwards)}"
        f" LIMIT {int(lq.per_page) + 1}"
    )
    # Trigram searches must not become generic prepared plans: they lose the index (BASELINE).
    prepare = False if lq.words else None
    return PageQuery(
        sql.SQL(query),
        params,
        names,
        direction,
        values is not None,
        backwards,
        prepare,
        labelled=labelled,
    )


async def fetch_page(
    conn: psycopg.AsyncConnection[Any],
    b: BoundResource,
    lq: ListQuery,
    key: bytes,
    display: Mapping[str, str] | None = None,
) -> Page:
    """The page the query asks for: first, after/before a cursor, or last (LIST-3)."""
    pq = page_query(b, lq, key, display)
    cur = await conn.execute(pq.query, pq.params, prepare=pq.prepare)
    return await read_page(cur, b, lq, key, pq)


async def start_page(
    conn: psycopg.AsyncConnection[Any],
    b: BoundResource,
    lq: ListQuery,
    key: bytes,
    display: Mapping[str, str] | None = None,
) -> tuple[psycopg.AsyncCursor[Any], PageQuery]:
    """Send the page query (in a pipeline, with others); `read_page` reads it."""
    pq = page_query(b, lq, key, display)
    return await conn.execute(pq.query, pq.params, prepare=pq.prepare), pq


async def read_page(
    cur: psycopg.AsyncCursor[Any], b: BoundResource, lq: ListQuery, key: bytes, pq: PageQuery
) -> Page:
    rows = await cur.fetchall()
    more = len(rows) > lq.per_page
    rows = rows[: lq.per_page]
    if pq.backwards:
        rows.reverse()
    names = pq.columns
    labels: dict[str, dict[Any, str]] = {}
    if pq.labelled:
        width = len(names)
        for j, name in enumerate(pq.labelled):
            i = names.index(name)
            labels[name] = {r[i]: r[width + j] for r in rows if r[width + j] is not None}
        rows = [r[:width] for r in rows]
    page = Page(names, rows, labels=labels)
    if pq.offset is not None:
        page.at_start = pq.offset == 0
        if pq.offset:
            page.prev_cursor = encode_offset(key, b, lq, pq.offset - lq.per_page)
        if more:
            page.next_cursor = encode_offset(key, b, lq, pq.offset + lq.per_page)
        return page
    if not rows:
        return page
    first, last = dict(zip(names, rows[0], strict=True)), dict(zip(names, rows[-1], strict=True))
    has_prev = more if pq.backwards else pq.from_cursor
    has_next = (pq.direction == "p") if pq.backwards else more
    if lq.last:
        has_next = False
    page.at_start = not has_prev
    page.prev_cursor = encode_cursor(key, b, lq, "p", first) if has_prev else None
    page.next_cursor = encode_cursor(key, b, lq, "n", last) if has_next else None
    return page


async def fk_labels(
    conn: psycopg.AsyncConnection[Any],
    b: BoundResource,
    page: Page,
    display: Mapping[str, str],
) -> None:
    """Names of the rows foreign keys point to: one query per FK column per page (LIST-1).

    `display` maps a target table name to its display column."""
    for col in b.list_columns:
        if col.fk is None or col.name not in page.columns or col.name in page.labels:
            continue  # not shown, or already named by the page query
        i = page.columns.index(col.name)
        ids = list({row[i] for row in page.rows if row[i] is not None})
        target = b.related.get(col.fk.target)
        if not ids or target is None:
            continue
        tcol = target.column(col.fk.target_column)
        shown = display.get(target.qualified) or col.fk.target_column
        key = col.fk.target_column
        cast = CAST.get(tcol.type_name) if tcol else None
        query = _labels_query(target.schema, target.name, key, shown, cast)
        cur = await conn.execute(query, [_array_param(ids, cast)])
        page.labels[col.name] = {k: v for k, v in await cur.fetchall()}


@lru_cache(maxsize=256)
def _labels_query(schema: str, table: str, key: str, shown: str, cast: str | None) -> sql.SQL:
    k = quoted(key)
    placeholder = f"%s::{cast}[]" if cast else "%s"
    return sql.SQL(
        f"SELECT {k}, {quoted(shown)}::text FROM {quoted(schema, table)}"
        f" WHERE {k} = ANY({placeholder})"
    )


def _array_param(ids: list[Any], cast: str | None) -> Any:
    """Integer keys as one array literal: psycopg dumps a list element by element, which cost
    more than the query (50 ids: ~150 µs); digits need no quoting. Others go as a list."""
    if cast in ("smallint", "integer", "bigint") and all(type(i) is int for i in ids):
        return "{" + ",".join(map(str, ids)) + "}"
    return ids


# ---- totals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Total:
    """How many rows match: an estimate, an exact number, a capped number, or unknown."""

    value: int | None
    estimate: bool = False
    capped: bool = False

    def text(self) -> str:
        if self.value is None:
            return "many"
        if self.estimate:
            return f"≈ {self.value:,}"
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"

    def html(self) -> Markup:
        """`text()` for a page, in ASCII (`&#8776;` for the sign; see `values.ascii_html`)."""
        return Markup(ascii_html(str(escape(self.text()))))  # noqa: S704 - escaped


def _exact_capped_query(b: BoundResource, where: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT {}) AS capped").format(
        sql.SQL(_table(b)), where, sql.Literal(COUNT_CAP + 1)
    )


async def _exact_capped(
    conn: psycopg.AsyncConnection[Any],
    b: BoundResource,
    where: sql.Composable,
    params: list[Any],
    words: bool,
) -> Total:
    query = _exact_capped_query(b, where)
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(COUNT_TIMEOUT_MS))
            )
            row = await (
                await conn.execute(query, params, prepare=False if words else None)
            ).fetchone()
    except psycopg.errors.QueryCanceled:
        return Total(None)
    n = int(row[0]) if row else 0
    return Total(min(n, COUNT_CAP), capped=n > COUNT_CAP)


def whole_result(lq: ListQuery, page: Page) -> bool:
    """Whether `page`, fetched for `lq`, holds every matching row: the first page, read
    forwards, with no next page."""
    return not lq.cursor and not lq.last and page.at_start and page.next_cursor is None


_RELTUPLES = (
    "SELECT c.reltuples::bigint FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"
)


def _plan_rows(plan: Any) -> int:
    if isinstance(plan, str):
        plan = json.loads(plan)
    try:
        return int(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, KeyError, IndexError, ValueError):
        return 0


async def planner_rows(
    conn: psycopg.AsyncConnection[Any], b: BoundResource, where: sql.Composable, params: list[Any]
) -> int:
    """The planner's row estimate for a filter: planning only, nothing is read."""
    row = await (await conn.execute(_explain_query(b, where), params)).fetchone()
    return _plan_rows(row[0] if row else None)


def _explain_query(b: BoundResource, where: sql.Composable) -> sql.Composed:
    return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(
        sql.SQL(_table(b)), where
    )


def count_question(b: BoundResource, lq: ListQuery) -> tuple[Query, list[Any]] | None:
    """The cheap question `count_rows` starts with — the table's estimate, or the planner's
    for plain filters — with its parameters; None for a search (counted, never estimated).
    It reads no rows: the catalog or the planner answers it."""
    if not lq.filtered:
        return _RELTUPLES, [b.table.schema, b.table.name]
    if not lq.words:
        where, params = where_clause(b, lq)
        return _explain_query(b, where), params
    return None


async def start_count(
    conn: psycopg.AsyncConnection[Any], b: BoundResource, lq: ListQuery
) -> psycopg.AsyncCursor[Any] | None:
    """Send `count_question`, so it can share a pipeline with the page query."""
    question = count_question(b, lq)
    return None if question is None else await conn.execute(*question)


async def count_rows(
    conn: psycopg.AsyncConnection[Any],
    b: BoundResource,
    lq: ListQuery,
    page: Page | None = None,
    started: psycopg.AsyncCursor[Any] | None = None,
) -> Total:
    """LIST-4: never scan a big table. Unfiltered → the planner's estimate (exact when small);
    filtered → exact up to COUNT_CAP under a short statement timeout.

    When the planner expects far more than the cap for plain column filters (whose estimates
    come from column statistics and are reliable), the answer is "10,000+" without counting
    10,001 rows on every page view. Search words are always counted: trigram estimates are not
    trustworthy enough to print.

    Given the first `page` of this query: when it is not full, its rows are all the rows, and
    that exact total costs nothing (a search for one customer's bookings, S3, ran its trigram
    search a second time to count the 15 rows the page already held). `started` is
    `start_count`'s cursor when the first question was already sent."""
    if page is not None and whole_result(lq, page):
        return Total(len(page.rows))
    if started is None:
        started = await start_count(conn, b, lq)
    where, params = where_clause(b, lq)
    if not lq.filtered:
        row = await started.fetchone() if started else None
        estimate = int(row[0]) if row else -1
        if estimate >= COUNT_CAP:
            return Total(estimate, estimate=True)
    elif not lq.words:
        row = await started.fetchone() if started else None
        if _plan_rows(row[0] if row else None) >= SURE_ABOVE_CAP:
            return Total(COUNT_CAP, capped=True)
    return await _exact_capped(conn, b, where, params, bool(lq.words))
