"""Saving a row with its related rows in one transaction: the row itself (EDIT-4), its
many-to-many sets (app/admin/m2m.py) and its editable inlines (app/admin/inlines.py).

The one place the edit form's transaction is opened: a refusal anywhere (a stale version of
the row, of a child row or of a set; a constraint; the audit log refusing its event) rolls
back every part of the save and every event it recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from app import audit
from app.admin import inlines, m2m, writes
from app.admin.resources import BoundResource
from app.admin.rowkey import audit_id


@dataclass(frozen=True)
class Related:
    """What a form asks of the row's relations besides its own fields."""

    sets: Sequence[m2m.Change] = ()
    children: Sequence[tuple[inlines.InlineForm, frozenset[str]]] = ()  # with allowed actions

    @property
    def empty(self) -> bool:
        return not self.sets and not any(f.edits for f, _ in self.children)


@dataclass
class Saved:
    row: dict[str, Any]
    added: dict[str, list[Any]] = field(default_factory=dict)
    removed: dict[str, list[Any]] = field(default_factory=dict)
    children: int = 0


async def save_edit(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    pk: Any,
    values: Mapping[str, Any],
    *,
    version: str,
    original: Mapping[str, Any] | None = None,
    related: Related | None = None,
) -> Saved:
    """The edit form's save: the row if still at `version`, then each set and each child row.

    Raises `writes.StaleRow`, `m2m.StaleSet`, `inlines.StaleChild`, `Invalid` or `Conflict`;
    then nothing was written."""
    related = related or Related()
    async with conn.transaction():
        row = await writes.update_row(
            conn, ctx, bound, pk, values, version=version, original=original
        )
        saved = Saved(row)
        label = writes.label_of(bound, row)
        for change in related.sets:
            added, removed = await m2m.apply(
                conn,
                ctx,
                change,
                resource=bound.slug,
                object_id=audit_id(bound.key, pk),
                label=label,
                pk=pk,
            )
            saved.added[change.link.name], saved.removed[change.link.name] = added, removed
        for form, allowed in related.children:
            saved.children += await inlines.apply(conn, ctx, form, pk, allowed=allowed)
    return saved
