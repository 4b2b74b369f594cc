"""Bulk edit: set one or more declared fields on selected rows, or on all rows matching the
list's filter, in one UPDATE statement with one audit event (EDIT-8).

`Resource(bulk_edit=BulkEdit(fields=(...), reauth_above=N))` turns it on. The page shows how
many rows the change touches before it is applied; `apply` refuses (and writes nothing) when
that number is no longer true, so a selection that changed meanwhile is noticed. More than
`reauth_above` rows need the password again (the view asks).

Services only: no aiohttp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from multidict import MultiDict
from psycopg import errors as pgerrors
from psycopg import sql

from app import audit, audit_events
from app.admin import forms, writes
from app.admin.listing import parse_query, where_clause
from app.admin.resources import BoundResource, BulkEdit
from app.errors import Conflict, Invalid

ACTION = "bulk_edit"  # the action name its audit events carry


@dataclass(frozen=True)
class Target:
    """Which rows: explicit keys, or every row the list's filter and search match."""

    ids: tuple[Any, ...] = ()
    all_matching: bool = False
    state: tuple[tuple[str, str], ...] = ()  # the list's own parameters (checked by listing)


def declared(bound: BoundResource) -> BulkEdit | None:
    return bound.resource.bulk_edit if bound.keyed and not bound.composite else None


def specs(bound: BoundResource) -> tuple[forms.FieldSpec, ...]:
    """The declared fields as inputs, in declared order."""
    decl = declared(bound)
    if decl is None:
        return ()
    cols = [c for c in bound.table.columns if c.name in decl.fields]
    return tuple(
        s
        for s in forms.build_fields(
            cols,
            labels={n: bound.label(n) for n in decl.fields},
            help_texts=bound.resource.help_texts,
            widgets=bound.resource.widgets,
            order=decl.fields,
        )
        if not s.readonly
    )


def parse_values(
    bound: BoundResource, chosen: Sequence[str], data: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields ticked (`chosen`) and their typed values from `v.<field>`; errors by field.

    An empty value means NULL for a nullable column; a checkbox not ticked means false."""
    by_name = {s.name: s for s in specs(bound)}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in dict.fromkeys(chosen):
        spec = by_name.get(name)
        if spec is None:
            raise Invalid(f"{bound.title}: {name[:40]!r} cannot be bulk edited.")
        text = data.get(f"v.{name}", "")
        if spec.widget == "checkbox":
            values[name] = text != "" and bool(forms.parse_value(spec, text))
            continue
        if spec.widget not in ("textarea", "json"):
            text = text.strip()
        if text == "":
            if spec.nullable:
                values[name] = None
            else:
                errors[name] = "This field is required."
            continue
        try:
            values[name] = forms.parse_value(spec, text)
        except forms.FieldError as exc:
            errors[name] = str(exc)
    if not values and not errors:
        errors[""] = "Choose at least one field to change."
    return values, errors


def _where(bound: BoundResource, target: Target) -> tuple[sql.Composable, list[Any]]:
    if target.all_matching:
        return where_clause(bound, parse_query(bound, MultiDict(target.state)))
    return sql.SQL("{} = ANY(%s)").format(sql.Identifier(bound.pk)), [list(target.ids)]


def _table(bound: BoundResource) -> sql.Composed:
    return sql.SQL("{}.{}").format(
        sql.Identifier(bound.table.schema), sql.Identifier(bound.table.name)
    )


async def count(conn: psycopg.AsyncConnection[Any], bound: BoundResource, target: Target) -> int:
    """How many rows the change would touch now (capped just above the bulk limit)."""
    where, params = _where(bound, target)
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT {}) s").format(
        _table(bound), where, sql.Literal(writes.MAX_BULK + 1)
    )
    cur = await conn.execute(query, params, prepare=False)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def apply(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    target: Target,
    values: Mapping[str, Any],
    *,
    expected: int,
) -> list[Any]:
    """One UPDATE … SET the values WHERE the selection, one `bulk_action` event; all or nothing.

    `expected` is the count the operator was shown: when the statement touches another
    number of rows (rows added, removed or changed meanwhile), nothing is kept."""
    if not values:
        raise Invalid("Choose at least one field to change.")
    if declared(bound) is None:
        raise Invalid(f"{bound.title} has no bulk edit.")
    allowed = {s.name for s in specs(bound)}
    if set(values) - allowed:
        raise Invalid(f"{bound.title}: {sorted(set(values) - allowed)[0]!r} cannot be bulk edited.")
    table = bound.table
    sets: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values]
    if writes.keeps_updated(table) and writes.MANAGED_UPDATED not in values:
        # Every touched row gets a new version: an editor holding one of them sees a conflict.
        sets.append(
            sql.SQL("{} = clock_timestamp()").format(sql.Identifier(writes.MANAGED_UPDATED))
        )
    where, params = _where(bound, target)
    query = sql.SQL("UPDATE {} SET {} WHERE {} RETURNING {}").format(
        _table(bound), sql.SQL(", ").join(sets), where, sql.Identifier(bound.pk)
    )
    adapted = writes.adapt(table, values)
    try:
        async with conn.transaction():
            cur = await conn.execute(query, [*adapted.values(), *params], prepare=False)
            done = sorted(r[0] for r in await cur.fetchall())
            if len(done) > writes.MAX_BULK:
                raise Invalid(
                    f"{len(done):,} records are too many for one bulk edit "
                    f"(at most {writes.MAX_BULK:,}).",
                    fix="narrow the filter and edit in parts",
                )
            if len(done) != expected:
                raise Conflict(
                    f"Nothing was changed: {len(done):,} records match now, not the "
                    f"{expected:,} you were shown.",
                    why="records were added, removed or changed by someone else meanwhile",
                    fix="check the new count and apply again",
                )
            details: dict[str, Any] = {"set": audit.jsonable(dict(values))}
            if target.all_matching:
                details["filter"] = [list(p) for p in target.state]
            await audit.record(
                conn, ctx, audit_events.bulk_action(bound.slug, ACTION, done, details=details)
            )
    except (pgerrors.IntegrityError, pgerrors.DataError) as exc:
        invalid = writes.translate(exc, table)
        reason = next(iter(invalid.fields.values()), invalid.problem)
        raise Conflict(
            f"Nothing was changed: {reason}",
            why=(exc.diag.message_detail or exc.diag.message_primary or "")[:200],
            fix="choose another value, or deselect the records it does not fit",
        ) from None
    return done
