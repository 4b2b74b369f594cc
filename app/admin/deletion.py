"""What a delete would remove, unlink or be blocked by: capped counts per table (EDIT-5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from app.db.catalog import ForeignKey, Table, load_table

CAP = 1000  # counts stop here ("1,000+"): never materialise a huge cascade
MAX_DEPTH = 3  # cascades of cascades are followed this far
EFFECTS = {
    "cascade": "deleted",
    "set null": "unlinked",
    "set default": "unlinked",
    "restrict": "blocks",
    "no action": "blocks",
}


@dataclass(frozen=True)
class Consequence:
    """`count` rows of `table` (via `column`) would be deleted / unlinked, or block the delete."""

    table: str
    column: str
    effect: str  # deleted | unlinked | blocks
    count: int
    depth: int = 1

    @property
    def capped(self) -> bool:
        return self.count > CAP

    @property
    def shown(self) -> str:
        return f"{CAP:,}+" if self.capped else f"{self.count:,}"

    def sentence(self) -> str:
        noun = f"{self.table} record" + ("" if self.count == 1 else "s")
        if self.effect == "blocks":
            return f"{self.shown} {noun} (via {self.column}) still point here and block the delete"
        verb = (
            "will be deleted too"
            if self.effect == "deleted"
            else f"will have {self.column} cleared"
        )
        return f"{self.shown} {noun} {verb}"


@dataclass(frozen=True)
class Plan:
    consequences: tuple[Consequence, ...]

    @property
    def blocked(self) -> bool:
        return any(c.effect == "blocks" for c in self.consequences)

    @property
    def blockers(self) -> tuple[Consequence, ...]:
        return tuple(c for c in self.consequences if c.effect == "blocks")


def _ref(table_schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table_schema), sql.Identifier(name))


async def _count(
    conn: psycopg.AsyncConnection[Any], fk: ForeignKey, parent_keys: sql.Composable, params: Any
) -> int:
    # SELECT count(*) FROM (SELECT 1 … LIMIT cap+1): the index on the FK column answers it and
    # the count stops at the cap (EDIT-5).
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} IN ({}) LIMIT {}) s").format(
        _ref(fk.schema, fk.table), sql.Identifier(fk.column), parent_keys, sql.Literal(CAP + 1)
    )
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def plan_delete(conn: psycopg.AsyncConnection[Any], table: Table, ids: Sequence[Any]) -> Plan:
    """Walk the FK graph from `table`; follow cascades up to MAX_DEPTH, each level capped.

    Only a single-column key is walked: for a composite key the database still enforces every
    foreign key when the row is deleted, but nothing is counted beforehand."""
    if len(table.primary_key) != 1:
        return Plan(())
    found: list[Consequence] = []
    keys: sql.Composable = sql.SQL("SELECT unnest(%s::{}[])").format(sql.SQL(_pk_type(table)))
    await _walk(conn, table, keys, [list(ids)], found, depth=1, seen={table.name})
    return Plan(tuple(found))


def _pk_type(table: Table) -> str:
    col = table.column(table.primary_key[0])
    name = col.type_name if col else "text"
    # Only plain type names reach SQL text; the catalog gave them, the user never did.
    return name if name.replace(" ", "").isalnum() else "text"


async def _walk(
    conn: psycopg.AsyncConnection[Any],
    table: Table,
    keys: sql.Composable,
    params: list[Any],
    found: list[Consequence],
    *,
    depth: int,
    seen: set[str],
) -> None:
    for fk in table.referenced_by:
        if len(fk.columns) != 1:
            continue
        count = await _count(conn, fk, keys, params)
        if not count:
            continue
        effect = EFFECTS.get(fk.on_delete, "blocks")
        found.append(Consequence(fk.table, fk.column, effect, count, depth))
        if effect != "deleted" or depth >= MAX_DEPTH or fk.table in seen:
            continue
        child = await load_table(conn, f"{fk.schema}.{fk.table}")
        if child is None or len(child.primary_key) != 1:
            continue
        # The cascaded rows' own dependants, still without materialising them: a capped subquery.
        child_keys = sql.SQL("SELECT {} FROM {} WHERE {} IN ({}) LIMIT {}").format(
            sql.Identifier(child.primary_key[0]),
            _ref(fk.schema, fk.table),
            sql.Identifier(fk.column),
            keys,
            sql.Literal(CAP + 1),
        )
        await _walk(conn, child, child_keys, params, found, depth=depth + 1, seen=seen | {fk.table})
