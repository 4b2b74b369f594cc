"""Insert, update, delete and bulk writes with psycopg.sql, audited in the same transaction (EDIT-4..8)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json, Jsonb

from app import audit, audit_events
from app.admin import forms, types
from app.admin.resources import Action, BoundResource
from app.admin.rowkey import audit_id, row_key
from app.db.catalog import TIME_TYPES, Table
from app.errors import Conflict, Invalid, NotFound

# Keel keeps these timestamps when the schema leaves them without a default (docs/editing.md).
MANAGED_CREATED = "created_at"
MANAGED_UPDATED = "updated_at"
MAX_BULK = 10_000  # one audit event lists every id (EDIT-8): keep it readable and bounded


class StaleRow(Exception):
    """EDIT-4: the row changed since the form was loaded; `changes` is what someone else did."""

    def __init__(
        self,
        current: dict[str, Any],
        version: str,
        changes: dict[str, dict[str, Any]],
        changed_by: str | None = None,
    ) -> None:
        super().__init__(str(self))
        self.current, self.version, self.changes = current, version, changes
        self.changed_by = changed_by

    def __str__(self) -> str:
        return "This record was changed by someone else while you were editing it."


def _managed(table: Table, name: str) -> bool:
    col = table.column(name)
    return col is not None and col.type_name in TIME_TYPES and not col.is_generated


def keeps_updated(table: Table) -> bool:
    """Whether writes set `updated_at` (and so a row's version is its time)."""
    return _managed(table, MANAGED_UPDATED)


def keel_filled(table: Table) -> tuple[str, ...]:
    """The managed timestamps insert_row fills itself: a create form need not ask for them."""
    return tuple(
        name
        for name in (MANAGED_CREATED, MANAGED_UPDATED)
        if _managed(table, name) and not getattr(table.column(name), "has_default", True)
    )


def row_version(
    table: Table, row: Mapping[str, Any], values: Mapping[str, Any] | None = None
) -> str:
    """`updated_at` when the table has one, else a hash of every loaded value (EDIT-4).

    `values`: `audit.jsonable` of each of the row's values, when the caller has them already
    (the edit page also sends them as the row it showed): the same version, one pass fewer."""
    if _managed(table, MANAGED_UPDATED) and isinstance(row.get(MANAGED_UPDATED), datetime):
        return "t:" + audit.iso(row[MANAGED_UPDATED])
    if values is None:
        values = {k: audit.jsonable(v) for k, v in row.items()}
    data = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return "h:" + hashlib.sha256(data.encode()).hexdigest()[:32]


def adapt(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON columns need a wrapper so psycopg sends a JSON value, not a Python repr."""
    out = {}
    for name, value in values.items():
        col = table.column(name)
        if col is not None and col.type_name in ("json", "jsonb") and value is not None:
            out[name] = Jsonb(value) if col.type_name == "jsonb" else Json(value)
        else:
            out[name] = value
    return out


_SELECTS: dict[tuple[int, str], tuple[Table, str]] = {}


def row_select(table: Table, alias: str = "") -> str:
    """Every column of a row as the edit page reads it: opaque types as (at most
    OPAQUE_TEXT_CAP characters of) their text form, so no value the driver cannot load, and
    no megabyte of bytes, reaches the page (app/admin/types.py). Built once per table."""
    found = _SELECTS.get((id(table), alias))
    if found is not None and found[0] is table:
        return found[1]
    parts = []
    for c in table.columns:
        ident = sql.Identifier(alias, c.name) if alias else sql.Identifier(c.name)
        if types.is_opaque(c):
            expr = sql.SQL("left({}::text, {}) AS {}").format(
                ident, sql.Literal(types.OPAQUE_TEXT_CAP), sql.Identifier(c.name)
            )
            parts.append(expr.as_string(None))
        else:
            parts.append(ident.as_string(None))
    text = ", ".join(parts)
    if len(_SELECTS) > 512:
        _SELECTS.clear()
    _SELECTS[(id(table), alias)] = (table, text)
    return text


def key_where(
    bound: BoundResource, pk: Any, alias: str = ""
) -> tuple[sql.Composable, dict[str, Any]]:
    """`key = value` for every key column (a composite key's `pk` is a tuple), as named
    parameters `__k0`, `__k1`…"""
    conds = [
        sql.SQL("{} = %({})s").format(
            sql.Identifier(alias, k) if alias else sql.Identifier(k), sql.SQL(f"__k{i}")
        )
        for i, k in enumerate(bound.key)
    ]
    return sql.SQL(" AND ").join(conds), key_params(bound, pk)


def key_params(bound: BoundResource, pk: Any) -> dict[str, Any]:
    """The parameters `key_where`'s condition names, for a query that has the condition already."""
    values = pk if bound.composite else (pk,)
    return {f"__k{i}": v for i, v in enumerate(values)}


def _ident(bound: BoundResource) -> sql.Composed:
    t = bound.table
    return sql.SQL("{}.{}").format(sql.Identifier(t.schema), sql.Identifier(t.name))


def audited_values(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as the audit event keeps it: derived search vectors and bytes left out."""
    skip = {c.name for c in table.columns if c.type_name in ("tsvector", "bytea")}
    return audit.redact({k: v for k, v in row.items() if k not in skip})


def label_of(bound: BoundResource, row: Mapping[str, Any]) -> str:
    value = row.get(bound.display_column)
    if value in (None, "") and bound.keyed:
        value = audit_id(bound.key, row_key(bound.key, row))
    return str(value)[:120]


def translate(exc: psycopg.Error, table: Table) -> Invalid:
    """A constraint violation → a form error on the field the constraint names (EDIT-1)."""
    diag = exc.diag
    fields = table.constraint_columns(diag.constraint_name or "")
    if not fields and diag.column_name:
        fields = (diag.column_name,)
    field = fields[0] if fields else ""
    if isinstance(exc, pgerrors.UniqueViolation):
        what = ", ".join(fields) or "these values"
        message = f"Another {table.name} record already has this {what}."
    elif isinstance(exc, pgerrors.ForeignKeyViolation):
        if diag.table_name and diag.table_name != table.name:
            message = f"Still used by {diag.table_name} records; remove or reassign them first."
        else:
            message = "No such related record: choose an existing one."
    elif isinstance(exc, pgerrors.CheckViolation):
        check = next((c for c in table.checks if c.name == diag.constraint_name), None)
        rule = check.definition if check else diag.constraint_name
        message = f"This value is not allowed (rule: {rule})."
    elif isinstance(exc, pgerrors.NotNullViolation):
        message = "This field is required."
    elif isinstance(exc, pgerrors.DataError):
        message = f"This value does not fit the column: {(diag.message_primary or '')[:160]}"
    else:
        message = "The database refused the change."
    problem = "The record was not saved." if field else message
    return Invalid(problem, fields={field: message} if field else {})


async def fetch_row(
    conn: psycopg.AsyncConnection[Any], bound: BoundResource, pk: Any, *, lock: bool = False
) -> dict[str, Any] | None:
    where, params = key_where(bound, pk)
    query = sql.SQL("SELECT {} FROM {} WHERE {}{}").format(
        sql.SQL(row_select(bound.table)),
        _ident(bound),
        where,
        sql.SQL(" FOR UPDATE" if lock else ""),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def _last_actor(
    conn: psycopg.AsyncConnection[Any], bound: BoundResource, pk: Any
) -> str | None:
    rows = await audit.object_history(conn, bound.slug, audit_id(bound.key, pk), limit=1)
    return (rows[0].actor_email or rows[0].os_actor) if rows else None


async def insert_row(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    values: Mapping[str, Any],
) -> dict[str, Any]:
    """INSERT the parsed values and record `create` in the same transaction (EDIT-6)."""
    table = bound.table
    names = list(values)
    exprs: list[sql.Composable] = [sql.Placeholder(n) for n in names]
    for managed in (MANAGED_CREATED, MANAGED_UPDATED):
        col = table.column(managed)
        if _managed(table, managed) and col and not col.has_default and managed not in values:
            names.append(managed)
            exprs.append(sql.SQL("clock_timestamp()"))
    if names:
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
            _ident(bound),
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(exprs),
            sql.SQL(row_select(table)),
        )
    else:
        query = sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING {}").format(
            _ident(bound), sql.SQL(row_select(table))
        )
    try:
        async with conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, adapt(table, values))
                row = await cur.fetchone()
            assert row is not None
            event = audit_events.create(
                bound.slug,
                audit_id(bound.key, row_key(bound.key, row)),
                label_of(bound, row),
                audited_values(bound.table, row),
            )
            await audit.record(conn, ctx, event)
    except (pgerrors.IntegrityError, pgerrors.DataError) as exc:
        raise translate(exc, table) from None
    return row


async def update_row(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    pk: Any,
    values: Mapping[str, Any],
    *,
    version: str,
    original: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """UPDATE only if the row is still at `version`; changed fields only; `update` audited."""
    table = bound.table
    try:
        async with conn.transaction():
            before = await fetch_row(conn, bound, pk, lock=True)
            if before is None:
                raise NotFound(
                    f"{bound.title} {audit_id(bound.key, pk)} no longer exists",
                    fix="it was deleted",
                )
            if row_version(table, before) != version:
                current = {k: audit.jsonable(v) for k, v in before.items()}
                seen = dict(original) if original is not None else {}
                changes = audit.diff(seen, current, [k for k in seen if k in current])
                raise StaleRow(
                    before,
                    row_version(table, before),
                    changes,
                    await _last_actor(conn, bound, pk),
                )
            # A value the form sent back as it showed it is no change (times shown to the second).
            changed = {k: v for k, v in values.items() if not forms.unchanged(before.get(k), v)}
            if not changed:
                return before
            sets = [
                sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changed
            ]
            if _managed(table, MANAGED_UPDATED) and MANAGED_UPDATED not in changed:
                sets.append(
                    sql.SQL("{} = clock_timestamp()").format(sql.Identifier(MANAGED_UPDATED))
                )
            where, keys = key_where(bound, pk)
            query = sql.SQL("UPDATE {} SET {} WHERE {} RETURNING {}").format(
                _ident(bound), sql.SQL(", ").join(sets), where, sql.SQL(row_select(table))
            )
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, {**adapt(table, changed), **keys})
                after = await cur.fetchone()
            assert after is not None
            diff = audit.diff(before, after, list(changed))
            event = audit_events.update(
                bound.slug, audit_id(bound.key, pk), label_of(bound, after), diff
            )
            await audit.record(conn, ctx, event)
    except (pgerrors.IntegrityError, pgerrors.DataError) as exc:
        raise translate(exc, table) from None
    return after


async def delete_row(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, bound: BoundResource, pk: Any
) -> dict[str, Any]:
    """DELETE one row (FK cascades are the database's) and record `delete` (EDIT-5, EDIT-6)."""
    where, keys = key_where(bound, pk)
    query = sql.SQL("DELETE FROM {} WHERE {} RETURNING {}").format(
        _ident(bound), where, sql.SQL(row_select(bound.table))
    )
    try:
        async with conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, keys)
                row = await cur.fetchone()
            if row is None:
                raise NotFound(
                    f"{bound.title} {audit_id(bound.key, pk)} does not exist",
                    fix="it may be deleted already",
                )
            event = audit_events.delete(
                bound.slug,
                audit_id(bound.key, pk),
                label_of(bound, row),
                audited_values(bound.table, row),
            )
            await audit.record(conn, ctx, event)
    except pgerrors.IntegrityError as exc:
        raise Conflict(
            f"{bound.title} {audit_id(bound.key, pk)} cannot be deleted: {translate(exc, bound.table).problem}",
            why=(exc.diag.message_detail or "")[:200],
            fix="remove or reassign the records that use it first",
        ) from None
    return row


def _check_bulk(ids: Sequence[Any]) -> None:
    if not ids:
        raise Invalid("Select at least one record.")
    if len(ids) > MAX_BULK:
        raise Invalid(
            f"{len(ids):,} records are too many for one bulk action (at most {MAX_BULK:,}).",
            fix="narrow the filter and run the action in parts",
        )


async def bulk_delete(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, bound: BoundResource, ids: Sequence[Any]
) -> list[Any]:
    """One set-based DELETE, one `bulk_action` event listing the ids; all or nothing (EDIT-8)."""
    _check_bulk(ids)
    query = sql.SQL("DELETE FROM {} WHERE {} = ANY(%s) RETURNING {}").format(
        _ident(bound), sql.Identifier(bound.pk), sql.Identifier(bound.pk)
    )
    return await _bulk(conn, ctx, bound, "delete", query=query, params=(list(ids),))


async def bulk_set(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    action: Action,
    ids: Sequence[Any],
) -> list[Any]:
    """A declared action: one UPDATE … SET the declared values WHERE pk = ANY(ids) (EDIT-8)."""
    _check_bulk(ids)
    values = dict(action.set_values or {})
    table = bound.table
    sets = [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values]
    if _managed(table, MANAGED_UPDATED) and MANAGED_UPDATED not in values:
        sets.append(sql.SQL("{} = clock_timestamp()").format(sql.Identifier(MANAGED_UPDATED)))
    if not sets:
        raise Invalid(f"Action {action.label!r} declares nothing to set.")
    query = sql.SQL("UPDATE {} SET {} WHERE {} = ANY(%(__ids)s) RETURNING {}").format(
        _ident(bound), sql.SQL(", ").join(sets), sql.Identifier(bound.pk), sql.Identifier(bound.pk)
    )
    params = {**adapt(table, values), "__ids": list(ids)}
    return await _bulk(conn, ctx, bound, action.name, query=query, params=params, set_values=values)


async def _bulk(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    name: str,
    *,
    query: sql.Composed,
    params: Any,
    set_values: Mapping[str, Any] | None = None,
) -> list[Any]:
    try:
        async with conn.transaction():
            cur = await conn.execute(query, params)
            done = sorted(r[0] for r in await cur.fetchall())
            details = {"set": audit.jsonable(set_values)} if set_values else None
            await audit.record(
                conn, ctx, audit_events.bulk_action(bound.slug, name, done, details=details)
            )
    except (pgerrors.IntegrityError, pgerrors.DataError) as exc:
        # Partial failure rolls the whole statement back (EDIT-8) and says why.
        invalid = translate(exc, bound.table)
        reason = next(iter(invalid.fields.values()), invalid.problem)
        raise Conflict(
            f"Nothing was changed: {reason}",
            why=(exc.diag.message_detail or exc.diag.message_primary or "")[:200],
            fix="deselect the records named above or fix them first",
        ) from None
    return done


async def record_export(
    conn: psycopg.AsyncConnection[Any], ctx: audit.Context, event: audit_events.Event
) -> None:
    """An export's audit event in a transaction of its own: a client that hangs up mid-download
    rolls back the rows' transaction, and the rows that already left must still be on record."""
    async with conn.transaction():
        await audit.record(conn, ctx, event)
