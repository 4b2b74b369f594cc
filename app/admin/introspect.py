"""Declarations written from an existing database's catalog: the source of a site's resources.py.

`generate_declarations` reads the catalog and returns the Python source of a `resources.py`
with one `Resource(...)` per table, view and materialized view, with defaults chosen from the
catalog (see the function's docstring). The result is a starting point the site's authors
own and edit; it is deterministic, so regenerating and diffing shows what the schema changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from app.admin import types
from app.admin.resources import (
    LIST_PARAMETERS,
    default_slug,
    filter_kind,
    inherent_read_only,
)
from app.db.catalog import TEXT_TYPES, TIME_TYPES, Column, Table, load_catalog
from app.errors import KeelError
from app.names import RESERVED_SLUGS

LINE = 88  # ruff's default line length: the site project has no configuration of its own
MAX_LIST = 6
MAX_SEARCH = 4
MAX_FILTERS = 6
LOW_CARDINALITY = 20  # distinct values (pg_stats) below which a number column is a filter
# Names that say "this is what a row is called", best first.
DISPLAY_NAMES = (
    "name",
    "title",
    "label",
    "full_name",
    "display_name",
    "username",
    "email",
    "code",
    "number",
    "reference",
    "subject",
    "slug",
)
# Text columns worth searching: names, codes and contact details, not long bodies.
SEARCHABLE = re.compile(
    r"(^|_)(name|title|label|email|e_mail|mail|code|number|no|nr|ref|reference|sku|slug"
    r"|username|login|phone|subject|city)$"
)
LONG_TEXT = re.compile(
    r"(^|_)(notes?|description|body|comments?|details|message|content|bio|text|html|json|data)$"
)
SYSTEM_TIMES = frozenset({"created_at", "updated_at", "inserted_at", "modified_at"})
CREATED_NAMES = ("created_at", "inserted_at", "created", "created_on", "creation_date")

_RELATIONS_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_%%'
   AND c.relname NOT LIKE 'keel\\_%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
   AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY (%(schemas)s::text[]))
 ORDER BY n.nspname, c.relname
"""

_STATS_SQL = """
SELECT schemaname, tablename, attname, n_distinct
  FROM pg_stats
 WHERE schemaname = ANY (%s::text[])
"""


@dataclass(frozen=True)
class _Plan:
    """What one declaration says, before it is written out."""

    name: str
    slug: str | None
    comment: str | None
    options: tuple[tuple[str, Any], ...]


async def generate_declarations(
    conn: psycopg.AsyncConnection[Any],
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
) -> str:
    """The Python source of a site's `resources.py` for the tables of this database.

    - `schemas`: the schemas to read (None: every schema but `pg_catalog`,
      `information_schema` and PostgreSQL's own `pg_*` schemas).
    - `tables`: only these tables, each `name` or `schema.name` (None: all of them).
    - Declared: ordinary and partitioned tables, views, materialized views and foreign
      tables. Left out: partitions (their parent is the resource), Keel's own `keel_*`
      tables, and tables that belong to an extension.
    - Each declaration has `list_display` (the display column first, then the key and up to
      six short columns: never bytes, search vectors, JSON or long text), `search_fields`
      (name-, title-, email- and code-like text columns), `list_filter` (enums and CHECK …
      IN choices, booleans, foreign keys, dates, and numbers with few distinct values in
      pg_stats), `ordering` (newest first by a created-like date column with an index, else
      by the key), `display_field` (foreign keys pointing here are named by it) and
      `readonly_fields` (generated and identity columns, created_at/updated_at with defaults).
      Views and tables without a primary key are read-only; a comment says so.
    - The output is deterministic (sorted by schema and name, no timestamp) and formatted as
      `ruff format` formats it. It needs `from app.admin import Resource, register` only.

    Raises KeelError (Problem / Why / Fix) when a named schema or table does not exist."""
    if schemas is not None and not schemas:
        schemas = None
    cur = await conn.execute(_RELATIONS_SQL, {"schemas": schemas})
    # Sorted here, by code point: the output must not depend on the database's collation.
    found = sorted((str(s), str(n)) for s, n in await cur.fetchall())
    if schemas:
        _missing("schema", [s for s in schemas if s not in {f[0] for f in found}])
    if tables:
        wanted = set(tables)
        picked = [f for f in found if f[1] in wanted or f"{f[0]}.{f[1]}" in wanted]
        named = {f[1] for f in picked} | {f"{f[0]}.{f[1]}" for f in picked}
        _missing("table", [t for t in tables if t not in named])
        found = picked
    catalog = await load_catalog(conn, [f"{schema}.{name}" for schema, name in found])
    loaded: list[Table] = [t for t in catalog.values() if t.columns]
    stats = await _stats(conn, sorted({t.schema for t in loaded}))
    plans = _plans(loaded, stats)
    return _source(plans, schemas, tables)


def _missing(what: str, names: Sequence[str]) -> None:
    if names:
        raise KeelError(
            f"no {what} {', '.join(repr(n) for n in names)} to declare in this database",
            why=f"--{what} names must match the catalog exactly (case included); "
            "partitions, Keel's own tables and extension tables are never declared",
            fix=f"check the {what} names with \\d in psql, or leave the option out",
        )


async def _stats(
    conn: psycopg.AsyncConnection[Any], schemas: list[str]
) -> dict[tuple[str, str, str], float]:
    if not schemas:
        return {}
    cur = await conn.execute(_STATS_SQL, (schemas,))
    return {(s, t, c): float(n) for s, t, c, n in await cur.fetchall() if n is not None}


def _plans(tables: list[Table], stats: dict[tuple[str, str, str], float]) -> list[_Plan]:
    out: list[_Plan] = []
    used: set[str] = set()
    for table in tables:
        name = table.name if table.schema == "public" else table.qualified
        slug = default_slug(name)
        explicit = slug in RESERVED_SLUGS or slug in used
        if explicit:
            base = f"{slug}_table" if slug in RESERVED_SLUGS else slug
            slug, n = base, 2
            while slug in used or slug in RESERVED_SLUGS:
                slug, n = f"{base}_{n}", n + 1
        used.add(slug)
        out.append(
            _Plan(
                name=name,
                slug=slug if explicit else None,
                comment=inherent_read_only(table),
                options=_options(table, stats),
            )
        )
    return out


def _is_long(col: Column) -> bool:
    if col.type_name not in TEXT_TYPES:
        return False
    if col.max_length is not None:
        return col.max_length > 255
    return bool(LONG_TEXT.search(col.name.lower()))


def _display(table: Table) -> str | None:
    texts = [c for c in table.columns if c.type_name in TEXT_TYPES and not c.choices]
    by_name = {c.name.lower(): c for c in texts}
    for wanted in DISPLAY_NAMES:
        if wanted in by_name:
            return by_name[wanted].name
    for col in texts:
        if col.name.lower().endswith(("_name", "_title")) and not _is_long(col):
            return col.name
    return None


def _short(col: Column) -> bool:
    return not (types.is_opaque(col) or col.type_name in ("json", "jsonb") or _is_long(col))


def _options(table: Table, stats: dict[tuple[str, str, str], float]) -> tuple[tuple[str, Any], ...]:
    display = _display(table)
    shown = [display] if display else []
    shown += [k for k in table.primary_key if k not in shown]
    for col in table.columns:
        if len(shown) >= MAX_LIST:
            break
        if col.name not in shown and _short(col):
            shown.append(col.name)
    search = [display] if display else []
    for col in table.columns:
        if len(search) >= MAX_SEARCH:
            break
        if (
            col.name not in search
            and col.type_name in TEXT_TYPES
            and not col.choices
            and not _is_long(col)
            and SEARCHABLE.search(col.name.lower())
        ):
            search.append(col.name)
    options: list[tuple[str, Any]] = [("list_display", tuple(shown))]
    if search:
        options.append(("search_fields", tuple(search)))
    filters = _filters(table, stats)
    if filters:
        options.append(("list_filter", filters))
    tsv = next(
        (c.name for c in table.columns if c.type_name == "tsvector" and _indexed(table, c.name)),
        None,
    )
    if tsv:
        options.append(("tsvector_field", tsv))
    ordering = _ordering(table)
    if ordering:
        options.append(("ordering", ordering))
    if display:
        options.append(("display_field", display))
    if inherent_read_only(table) is None:
        readonly = tuple(
            c.name
            for c in table.columns
            if c.is_generated
            or c.is_identity
            or (c.name.lower() in SYSTEM_TIMES and c.has_default and c.type_name in TIME_TYPES)
        )
        if readonly:
            options.append(("readonly_fields", readonly))
    return tuple(options)


def _indexed(table: Table, column: str) -> bool:
    return any(ix.columns[:1] == (column,) for ix in table.indexes)


def _filters(table: Table, stats: dict[tuple[str, str, str], float]) -> tuple[str, ...]:
    ranked: list[tuple[int, int, str]] = []
    for i, col in enumerate(table.columns):
        kind = filter_kind(col)
        if kind is None or col.name in LIST_PARAMETERS or col.name in table.primary_key:
            continue
        if kind == "number":
            distinct = stats.get((table.schema, table.name, col.name))
            # n_distinct > 0 is a count; < 0 a fraction of the rows (so: many values).
            if distinct is None or not 0 < distinct <= LOW_CARDINALITY:
                continue
        rank = {"choice": 0, "bool": 1, "fk": 2, "date": 3, "number": 4}[kind]
        ranked.append((rank, i, col.name))
    return tuple(name for _r, _i, name in sorted(ranked)[:MAX_FILTERS])


def _ordering(table: Table) -> tuple[str, ...]:
    dates = [c for c in table.columns if c.type_name in TIME_TYPES and types.sortable(c)]
    by_name = {c.name.lower(): c for c in dates}
    for wanted in CREATED_NAMES:
        col = by_name.get(wanted)
        if col is not None and (_indexed(table, col.name) or not table.primary_key):
            return (f"-{col.name}",)
    key = [table.column(k) for k in table.primary_key]
    if key and all(c is not None and types.sortable(c) for c in key):
        return tuple(f"-{k}" for k in table.primary_key)
    return ()


# ---- writing the source --------------------------------------------------------------------


def _q(text: str) -> str:
    """A string literal as ruff formats it: double quotes unless that needs more escapes."""
    r = repr(text)
    if r.startswith("'") and '"' not in text:
        return '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def _value(value: Any, indent: int, prefix: str) -> list[str]:
    """`prefix` + the literal, on one line if it fits, else one item per line."""
    pad = " " * indent
    if isinstance(value, str):
        return [f"{pad}{prefix}{_q(value)},"]
    items = [_q(v) for v in value]
    inline = "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if len(pad) + len(prefix) + len(inline) + 1 <= LINE:
        return [f"{pad}{prefix}{inline},"]
    inner = " " * (indent + 4)
    return [f"{pad}{prefix}(", *(f"{inner}{item}," for item in items), f"{pad}),"]


def _source(plans: list[_Plan], schemas: list[str] | None, tables: list[str] | None) -> str:
    scope = []
    if schemas:
        scope.append("schemas " + ", ".join(sorted(schemas)))
    if tables:
        scope.append("tables " + ", ".join(sorted(tables)))
    lines = [
        "# The site's resources: one declaration per table of the database.",
        "#",
        "# Generated by Keel from the database catalog (`keel new --from-database`"
        + (f", {'; '.join(scope)}" if scope else "")
        + ").",
        "# This file is yours now: edit it freely (columns listed, searched and filtered,",
        "# ordering, labels, read-only fields…). docs/admin.md describes every option.",
        "# When the schema changes, generate again into another directory and compare.",
        "",
        "from app.admin import Resource, register",
        "",
        "REGISTRY = register(",
    ]
    for plan in plans:
        if plan.comment:
            lines += _comment(plan.comment, 4)
        lines.append("    Resource(")
        lines += _value(plan.name, 8, "")
        if plan.slug:
            lines += _value(plan.slug, 8, "slug=")
        for key, value in plan.options:
            lines += _value(value, 8, f"{key}=")
        lines.append("    ),")
    if not plans:
        lines[-1] = "REGISTRY = register()"
    else:
        lines.append(")")
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: int) -> list[str]:
    """A comment wrapped to the line length."""
    out: list[str] = []
    line = " " * indent + "#"
    for word in text.split():
        if len(line) + 1 + len(word) > LINE and line.strip() != "#":
            out.append(line)
            line = " " * indent + "#"
        line += " " + word
    out.append(line)
    return out
