"""Bulk actions over the company's tables as services: the rows a selection names, locked, with
what deleting them would touch; and the action applied, audited, in one transaction (EDIT-8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from multidict import MultiDict
from psycopg import sql

from app import audit
from app.admin import deletion, writes
from app.admin.listing import parse_query, where_clause
from app.admin.resources import Action, BoundResource


async def matching_ids(
    conn: psycopg.AsyncConnection[Any],
    bound: BoundResource,
    ids: Sequence[Any],
    state: Sequence[tuple[str, str]] | None,
) -> list[Any]:
    """The ids the action will touch, locked; `state` ("all matching") reuses the list's SQL."""
    pk = sql.Identifier(bound.pk)
    table = sql.Identifier(bound.table.schema, bound.table.name)
    if state is not None:
        where, params = where_clause(bound, parse_query(bound, MultiDict(state)))
    else:
        where, params = sql.SQL("{} = ANY(%s)").format(pk), [list(ids)]
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {} FOR UPDATE").format(
        pk, table, where, pk, sql.Literal(writes.MAX_BULK + 1)
    )
    cur = await conn.execute(query, params, prepare=False)
    return [r[0] for r in await cur.fetchall()]


async def preview(
    conn: psycopg.AsyncConnection[Any],
    bound: BoundResource,
    ids: Sequence[Any],
    state: Sequence[tuple[str, str]] | None,
    *,
    delete: bool,
) -> tuple[list[Any], deletion.Plan | None]:
    """What the confirmation page shows: the matching ids and, for a delete, its plan; read in
    one transaction so the two agree."""
    async with conn.transaction():
        found = await matching_ids(conn, bound, ids, state)
        plan = await deletion.plan_delete(conn, bound.table, found) if delete and found else None
    return found, plan


async def apply(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    action: Action | None,
    *,
    ids: Sequence[Any],
    state: Sequence[tuple[str, str]] | None,
) -> list[Any]:
    """Delete (`action` None) or set the action's values on the matching rows, audited."""
    async with conn.transaction():
        found = await matching_ids(conn, bound, ids, state)
        if action is None:
            return await writes.bulk_delete(conn, ctx, bound, found)
        return await writes.bulk_set(conn, ctx, bound, action, found)
