"""`keel doctor` on the site: declarations against the live catalog, and searches that scan.

Three findings, each with the fix to apply:
- ✗ a declared table or column that no longer exists (the admin refuses to start until the
  declaration or the schema is corrected);
- ! a NOT NULL column without a default that the create form cannot fill (its type cannot be
  edited in a form, or it is declared read-only): every create would fail;
- ! a text search field on a large table (by the planner's row estimate) that no index can
  serve for `ILIKE '%…%'`: each search reads the whole table, and under load searches queue
  to the statement timeout. The fix is the exact trigram index to create.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from app.admin import types
from app.admin.resources import BoundResource, Registry, Resource, search_kind
from app.db.catalog import Table

if TYPE_CHECKING:
    from app.ops.doctor import Check

LARGE_TABLE = 100_000  # estimated rows from which an unindexed substring search is flagged
NAME = "site drift"  # not "site": doctor has a check of that name (which site is loaded)

_RELTUPLES = (
    "SELECT c.reltuples::bigint FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"
)


def declared_names(r: Resource) -> dict[str, list[str]]:
    """Every column name a declaration uses → the options that use it."""
    out: dict[str, list[str]] = {}
    options: list[tuple[str, Iterable[str]]] = [
        ("list_display", r.list_display),
        ("list_filter", r.list_filter),
        ("search_fields", r.search_fields),
        ("ordering", (o.removeprefix("-") for o in r.ordering)),
        ("readonly_fields", r.readonly_fields),
        ("labels", r.labels),
        ("help_texts", r.help_texts),
        ("widgets", r.widgets),
        ("fieldsets", (n for _t, names in r.fieldsets for n in names)),
        ("display_field", (r.display_field,) if r.display_field else ()),
        ("tsvector_field", (r.tsvector_field,) if r.tsvector_field else ()),
        ("actions", (n for a in r.actions for n in (a.set_values or {}))),
    ]
    for option, names in options:
        for name in names:
            out.setdefault(str(name), [])
            if option not in out[str(name)]:
                out[str(name)].append(option)
    return out


def _missing_columns(b: BoundResource) -> list[tuple[str, list[str]]]:
    gone = []
    for name, options in declared_names(b.resource).items():
        found = b.resolve_related(name) if "." in name else b.resolve_column(name)
        if found is None:
            gone.append((name, options))
    return gone


def _unfillable(b: BoundResource) -> list[tuple[str, str]]:
    """NOT NULL columns without a default that a create form leaves empty, and why."""
    if b.read_only_reason is not None or b.resource.read_only:
        return []
    out = []
    for col in b.table.columns:
        if col.nullable or col.has_default or col.is_identity or col.is_generated:
            continue
        reason = types.readonly_reason(col)
        if reason is None and col.name in b.resource.readonly_fields:
            reason = "it is declared in readonly_fields"
        if reason is not None:
            out.append((col.name, reason))
    return out


def trigram_fix(table: Table, column: str) -> str:
    """The statements that let `ILIKE '%word%'` on this column use an index."""
    index = f"{table.name}_{column}_trgm"[:63]
    return (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm; "
        f"CREATE INDEX CONCURRENTLY {sql.Identifier(index).as_string(None)} "
        f"ON {sql.Identifier(table.schema, table.name).as_string(None)} "
        f"USING gin ({sql.Identifier(column).as_string(None)} gin_trgm_ops);"
    )


async def _rows(conn: psycopg.AsyncConnection[Any], table: Table, cache: dict[str, int]) -> int:
    if table.qualified not in cache:
        row = await (await conn.execute(_RELTUPLES, (table.schema, table.name))).fetchone()
        cache[table.qualified] = int(row[0]) if row and row[0] is not None else -1
    return cache[table.qualified]


async def _slow_searches(
    conn: psycopg.AsyncConnection[Any], b: BoundResource, rows: dict[str, int], large: int
) -> list[tuple[Table, str, int]]:
    out = []
    for name in b.resource.search_fields:
        if "." in name:
            found = b.resolve_related(name)
            if found is None:
                continue
            _fk, table, col = found
        else:
            own = b.resolve_column(name)
            if own is None:
                continue
            table, col = b.table, own
        if search_kind(col) != "text" or table.trigram_index(col.name) is not None:
            continue
        estimate = await _rows(conn, table, rows)
        if estimate >= large:
            out.append((table, col.name, estimate))
    return out


async def drift_checks(
    conn: psycopg.AsyncConnection[Any],
    registry: Registry,
    bound: Mapping[str, BoundResource],
    *,
    large: int = LARGE_TABLE,
) -> list[Check]:
    """The findings above for every declared resource; one ✓ line when there are none.

    `bound` is what `check_declarations` bound for this registry (resources whose table
    exists)."""
    from app.ops.doctor import FAIL, OK, WARN, Check

    checks: list[Check] = []
    rows: dict[str, int] = {}
    for r in registry:
        b = bound.get(r.key)
        if b is None:
            checks.append(
                Check(
                    NAME,
                    FAIL,
                    f"{r.key}: table {r.table!r} is declared but does not exist in this "
                    "database; fix: run `keel migrate` if a migration creates it, or remove "
                    f'Resource("{r.table}") from resources.py',
                )
            )
            continue
        for name, options in _missing_columns(b):
            checks.append(
                Check(
                    NAME,
                    FAIL,
                    f"{r.key}: column {name!r} is declared ({', '.join(options)}) but "
                    f"{b.table.qualified} has no such column; fix: remove {name!r} from "
                    f"{', '.join(options)} in resources.py, or add the column back with a "
                    "migration",
                )
            )
        for name, why in _unfillable(b):
            checks.append(
                Check(
                    NAME,
                    WARN,
                    f"{r.key}: new records need a value for {name!r} (NOT NULL, no default) "
                    f"but the form cannot fill it: {why.rstrip('.')}; fix: give it a default "
                    f"(ALTER TABLE {sql.Identifier(b.table.schema, b.table.name).as_string(None)}"
                    f" ALTER COLUMN {sql.Identifier(name).as_string(None)} SET DEFAULT …), "
                    "allow NULL, or declare the resource read_only=True",
                )
            )
        for table, column, estimate in await _slow_searches(conn, b, rows, large):
            checks.append(
                Check(
                    NAME,
                    WARN,
                    f"{r.key}: searching {column!r} reads all ≈ {estimate:,} rows of "
                    f"{table.qualified} (no index serves ILIKE '%…%'); fix: "
                    + trigram_fix(table, column),
                )
            )
    if not checks:
        checks.append(
            Check(NAME, OK, f"{len(bound)} resources match the catalog; searches are indexed")
        )
    return checks
