"""The Postgres catalog as frozen dataclasses: the database is the source of truth (RES-1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

# pg_type.typname → the names the admin works with (forms, filters, validation).
_TYPE_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "bool": "boolean",
    "float4": "real",
    "float8": "double precision",
    "bpchar": "char",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
}
INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
NUMBER_TYPES = INTEGER_TYPES | {"numeric", "real", "double precision"}
TEXT_TYPES = frozenset({"text", "varchar", "char", "citext", "name"})
TIME_TYPES = frozenset({"date", "timestamp", "timestamptz"})

# `CHECK ((col = ANY (ARRAY['a'::text, 'b'::text])))` is how Postgres stores `col IN ('a', 'b')`.
_CHOICE_CHECK = re.compile(
    r"^CHECK \(+\(?\"?(?P<col>[^\"()\s]+)\"?\)?(?:::[\w ]+)? = ANY \(+ARRAY\[(?P<items>.*)\]\)?(?:::[\w ]+\[\])?\)+$",
    re.DOTALL,
)
# A declared table name: `table` or `schema.table`, each part the exact catalog name (any case,
# any script), without control characters or double quotes (names are matched, never parsed as SQL).
_TABLE_NAME = re.compile(r'^(?:[^."\x00-\x1f]{1,63}\.)?[^."\x00-\x1f]{1,63}$')
# pg_class.relkind → what the admin calls it.
KINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
}
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


@dataclass(frozen=True)
class ForeignKey:
    """`table(columns) → target_table(target_columns)`; `column`/`target_column` for the usual one."""

    name: str
    table: str
    columns: tuple[str, ...]
    target_table: str
    target_columns: tuple[str, ...]
    on_delete: str  # "no action" | "restrict" | "cascade" | "set null" | "set default"
    target_schema: str = "public"
    schema: str = "public"

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def target(self) -> str:
        """The target table as `schema.name`."""
        return f"{self.target_schema}.{self.target_table}"

    @property
    def target_column(self) -> str:
        return self.target_columns[0]


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    max_length: int | None = None
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    nullable: bool = True
    has_default: bool = False
    default: str | None = None  # the default expression as PostgreSQL prints it (`'junior'::text`)
    is_identity: bool = False
    is_generated: bool = False
    choices: tuple[str, ...] | None = None
    fk: ForeignKey | None = None
    is_array: bool = False
    # The SQL type a parameter is cast to when compared with this column: the base type of a
    # domain (a filter value need not satisfy the domain's checks), the enum type, `elem[]`.
    cast_type: str | None = None

    @property
    def writable(self) -> bool:
        """Generated columns can never be written; identity columns are left to the database."""
        return not (self.is_generated or self.is_identity)


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str | None, ...]  # None for an expression key
    method: str  # btree | gin | gist | hash | brin …
    opclasses: tuple[str, ...]
    unique: bool = False
    primary: bool = False
    partial: bool = False


@dataclass(frozen=True)
class Unique:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    name: str
    columns: tuple[str, ...]
    definition: str


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    uniques: tuple[Unique, ...] = ()
    indexes: tuple[Index, ...] = ()
    checks: tuple[Check, ...] = ()
    referenced_by: tuple[ForeignKey, ...] = ()  # foreign keys in other tables pointing here
    kind: str = "table"  # a value of KINDS
    is_partition: bool = False  # a partition of a partitioned table (its parent is the resource)

    @property
    def qualified(self) -> str:
        """`schema.name`: how the admin keys tables (two schemas may hold the same name)."""
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def constraint_columns(self, name: str) -> tuple[str, ...]:
        """Columns of a named constraint or index: maps a violation back to form fields (EDIT-1)."""
        for group in (self.uniques, self.checks, self.foreign_keys):
            for item in group:
                if item.name == name:
                    return item.columns
        for ix in self.indexes:
            if ix.name == name:
                return tuple(c for c in ix.columns if c)
        return ()

    def leading_index(self, column: str, methods: tuple[str, ...] = ("btree",)) -> Index | None:
        """An index whose first key is `column` (usable for =, ranges and ordering)."""
        for ix in self.indexes:
            if ix.method in methods and ix.columns and ix.columns[0] == column and not ix.partial:
                return ix
        return None

    def trigram_index(self, column: str) -> Index | None:
        """A pg_trgm index on `column`, which `ILIKE '%word%'` can use (LIST-6)."""
        for ix in self.indexes:
            if (
                ix.method in ("gin", "gist")
                and column in ix.columns
                and any(o.endswith("_trgm_ops") for o in ix.opclasses)
            ):
                return ix
        return None


def _type_name(typname: str) -> str:
    return _TYPE_NAMES.get(typname, typname)


def _typmod_facts(type_name: str, typmod: int) -> tuple[int | None, int | None, int | None]:
    """max_length for varchar/char, precision and scale for numeric, from atttypmod."""
    if typmod < 0:
        return None, None, None
    if type_name in ("varchar", "char"):
        return typmod - 4, None, None
    if type_name == "numeric":
        mod = typmod - 4
        return None, (mod >> 16) & 0xFFFF, mod & 0xFFFF
    return None, None, None


def parse_choices(definition: str) -> tuple[str, tuple[str, ...]] | None:
    """`CHECK (col IN ('a','b'))` as stored by Postgres → ("col", ("a", "b")); else None."""
    m = _CHOICE_CHECK.match(definition.strip())
    if not m:
        return None
    items = tuple(v.replace("''", "'") for v in _LITERAL.findall(m.group("items")))
    return (m.group("col"), items) if items else None


_COLUMNS_SQL = """
SELECT a.attrelid::int8 AS relid, a.attname, a.atttypmod, NOT a.attnotnull AS nullable,
       a.atthasdef,
       a.attidentity <> '' AS is_identity, a.attgenerated <> '' AS is_generated,
       t.typcategory = 'A' AND t.typelem <> 0 AS is_array,
       b.typname AS base, b.typtype AS base_kind, dom.typmod AS domain_typmod,
       format_type(b.oid, NULL) AS base_sql,
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = b.oid) AS enum,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default_expr
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  -- arrays are described by their element type; domains (even nested) by their base type
  CROSS JOIN LATERAL (
    WITH RECURSIVE dm(oid, typmod, depth) AS (
      SELECT CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END,
             -1, 0
      UNION ALL
      SELECT p.typbasetype, p.typtypmod, dm.depth + 1
        FROM dm JOIN pg_type p ON p.oid = dm.oid
       WHERE p.typtype = 'd' AND dm.depth < 10
    )
    SELECT dm.oid, dm.typmod FROM dm ORDER BY dm.depth DESC LIMIT 1
  ) dom
  JOIN pg_type b ON b.oid = dom.oid
 WHERE a.attrelid = ANY (%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT c.conrelid::int8 AS relid, c.confrelid::int8 AS target_relid, c.conname, c.contype,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)
         AS cols,
       pg_get_constraintdef(c.oid) AS definition, tn.nspname AS target_schema,
       t.relname AS target_table,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
         AS target_cols,
       c.confdeltype, cn.nspname AS src_schema, cr.relname AS src_table
  FROM pg_constraint c
  JOIN pg_class cr ON cr.oid = c.conrelid
  JOIN pg_namespace cn ON cn.oid = cr.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.confrelid
  LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE c.conrelid = ANY (%s) OR (c.contype = 'f' AND c.confrelid = ANY (%s))
 ORDER BY c.conname
"""

_INDEXES_SQL = """
SELECT i.indrelid::int8 AS relid, ic.relname, am.amname, i.indisunique, i.indisprimary, i.indpred IS NOT NULL AS partial,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
             ORDER BY k.o) AS cols,
       ARRAY(SELECT oc.opcname FROM unnest(i.indclass::oid[]) WITH ORDINALITY k(c, o)
             JOIN pg_opclass oc ON oc.oid = k.c ORDER BY k.o) AS opclasses
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
 WHERE i.indrelid = ANY (%s) AND i.indisvalid
 ORDER BY ic.relname
"""

_DELETE_RULES = {
    "a": "no action",
    "r": "restrict",
    "c": "cascade",
    "n": "set null",
    "d": "set default",
}


# Every asked name at once: the exact name in the given schema, or the first schema of the
# search_path that has it (as PostgreSQL resolves an unqualified name).
_RELATIONS_SQL = """
SELECT DISTINCT ON (q.i) q.i, c.oid::int8, n.nspname, c.relname, c.relkind, c.relispartition
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY q(schema, name, i)
  JOIN pg_class c ON c.relname = q.name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = q.schema
    OR (q.schema IS NULL AND n.nspname = ANY (current_schemas(false)))
 ORDER BY q.i, array_position(current_schemas(false), n.nspname::text) NULLS LAST
"""


def split_name(name: str) -> tuple[str | None, str]:
    """`schema.table` → (schema, table); a bare `table` → (None, table)."""
    schema, _, rel = name.rpartition(".")
    return (schema or None), rel


@dataclass
class _Constraints:
    primary_key: tuple[str, ...] = ()
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    referenced_by: list[ForeignKey] = field(default_factory=list)
    uniques: list[Unique] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _constraints(found: list[Any], oid: int) -> _Constraints:
    """The constraints of table `oid` among the rows of _CONSTRAINTS_SQL (its own, and the
    foreign keys of other tables that point at it)."""
    out = _Constraints()
    for c in found:
        if oid not in (c.relid, c.target_relid):
            continue
        if c.contype == "f":
            fk = ForeignKey(
                name=c.conname,
                table=c.src_table,
                columns=tuple(c.cols),
                target_table=c.target_table,
                target_columns=tuple(c.target_cols),
                on_delete=_DELETE_RULES.get(c.confdeltype, "no action"),
                target_schema=c.target_schema,
                schema=c.src_schema,
            )
            if c.relid == oid:
                out.foreign_keys.append(fk)
            if c.target_relid == oid:
                out.referenced_by.append(fk)
        elif c.relid != oid:
            continue
        elif c.contype == "p":
            out.primary_key = tuple(c.cols)
        elif c.contype == "u":
            out.uniques.append(Unique(c.conname, tuple(c.cols)))
        elif c.contype == "c":
            out.checks.append(Check(c.conname, tuple(c.cols), c.definition))
            parsed = parse_choices(c.definition) if len(c.cols) == 1 else None
            if parsed and parsed[0] == c.cols[0]:
                out.choices[c.cols[0]] = parsed[1]
    return out


def _columns(attributes: list[Any], cons: _Constraints) -> list[Column]:
    """One table's columns from its rows of _COLUMNS_SQL."""
    single_fk = {fk.column: fk for fk in cons.foreign_keys if len(fk.columns) == 1}
    columns = []
    for a in attributes:
        tname = _type_name(a.base)
        typmod = a.atttypmod if a.atttypmod >= 0 or a.is_array else a.domain_typmod
        max_len, prec, scale = _typmod_facts(tname, typmod)
        enum = tuple(a.enum) if a.enum and not a.is_array else None
        columns.append(
            Column(
                name=a.attname,
                type_name=f"{tname}[]" if a.is_array else tname,
                max_length=max_len,
                numeric_precision=prec,
                numeric_scale=scale,
                nullable=bool(a.nullable),
                has_default=bool(a.atthasdef),
                default=a.default_expr,
                is_identity=bool(a.is_identity),
                is_generated=bool(a.is_generated),
                choices=cons.choices.get(a.attname) or enum,
                fk=single_fk.get(a.attname),
                is_array=bool(a.is_array),
                cast_type=f"{a.base_sql}[]" if a.is_array else a.base_sql,
            )
        )
    return columns


async def load_table(conn: psycopg.AsyncConnection, name: str) -> Table | None:
    """One table (or view) by name, `schema.table` or resolved on the search_path; None if absent."""
    return (await load_catalog(conn, [name])).get(name)


async def load_catalog(conn: psycopg.AsyncConnection, tables: list[str]) -> dict[str, Table]:
    """The named tables, keyed by the name as given; tables that do not exist are left out.

    Four catalog queries however many tables: a start reads every declared table, and one
    query per table and fact (four each) cost a fresh server process about 4 ms of CPU a table,
    mostly planning the same statements again."""
    names = [n for n in dict.fromkeys(tables) if _TABLE_NAME.match(n)]
    if not names:
        return {}
    split = [split_name(n) for n in names]
    cur = conn.cursor(row_factory=namedtuple_row)
    params = {"schemas": [sch for sch, _ in split], "names": [rel for _, rel in split]}
    relations: list[Any] = await (await cur.execute(_RELATIONS_SQL, params)).fetchall()
    if not relations:
        return {}
    oids = sorted({r.oid for r in relations})
    found: list[Any] = await (await cur.execute(_CONSTRAINTS_SQL, (oids, oids))).fetchall()
    columns: dict[int, list[Any]] = {oid: [] for oid in oids}
    attributes: list[Any] = await (await cur.execute(_COLUMNS_SQL, (oids,))).fetchall()
    for a in attributes:
        columns[a.relid].append(a)
    indexes: dict[int, list[Index]] = {oid: [] for oid in oids}
    index_rows: list[Any] = await (await cur.execute(_INDEXES_SQL, (oids,))).fetchall()
    for i in index_rows:
        indexes[i.relid].append(
            Index(
                i.relname,
                tuple(i.cols),
                i.amname,
                tuple(i.opclasses),
                i.indisunique,
                i.indisprimary,
                i.partial,
            )
        )
    out: dict[str, Table] = {}
    for r in relations:
        cons = _constraints(found, r.oid)
        out[names[r.i - 1]] = Table(
            schema=r.nspname,
            name=r.relname,
            columns=tuple(_columns(columns[r.oid], cons)),
            primary_key=cons.primary_key,
            foreign_keys=tuple(cons.foreign_keys),
            uniques=tuple(cons.uniques),
            indexes=tuple(indexes[r.oid]),
            checks=tuple(cons.checks),
            referenced_by=tuple(cons.referenced_by),
            kind=KINDS.get(r.relkind, "table"),
            is_partition=bool(r.relispartition),
        )
    return {n: out[n] for n in names if n in out}
