"""Editable inlines: child rows changed, added and deleted on the parent's form (EDIT-7).

`Inline(..., editable=True)` on the parent's declaration. Each shown child row travels in the
form with its key and its version (EDIT-4); blank rows add children. `parse` reads the posted
rows into typed edits with per-row errors; `apply` writes them inside the parent's
transaction: a child row changed by someone else since the page was drawn raises `StaleChild`
and nothing of the save remains. Each child write records its own `create`/`update`/`delete`
event, in that same transaction.

Services only: no aiohttp."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from app import audit
from app.admin import forms, writes
from app.admin.resources import BoundResource, Inline
from app.admin.rowkey import audit_id
from app.errors import Invalid

MAX_ROWS = 200  # rows one form may post per inline
_VERSION = re.compile(r"[th]:[0-9A-Za-z:.\-+TZ]{1,64}")


def prefix(child: BoundResource, index: str) -> str:
    """The form-name prefix of one child row: `_in.properties.3.` or `_in.properties.new0.`."""
    return f"_in.{child.slug}.{index}."


def field_names(inline: Inline, child: BoundResource) -> tuple[str, ...]:
    names = inline.fields or inline.list_display
    return tuple(n for n in names if n != inline.fk_column and n not in child.key)


def specs(inline: Inline, child: BoundResource) -> tuple[forms.FieldSpec, ...]:
    """The inputs of one child row, in declared order (the FK to the parent is never one)."""
    names = field_names(inline, child)
    cols = [c for c in child.table.columns if c.name in names]
    return forms.build_fields(
        cols,
        readonly_fields=child.resource.readonly_fields,
        labels={n: child.label(n) for n in names},
        help_texts=child.resource.help_texts,
        widgets=child.resource.widgets,
        order=names,
        keel_filled=writes.keel_filled(child.table),
    )


@dataclass
class RowForm:
    """One child row as the form shows it again: its inputs' text and its errors."""

    index: str  # "0", "1", … for stored rows, "new0", … for blank ones
    pk: Any = None
    version: str = ""
    raw: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    delete: bool = False
    label: str = ""


@dataclass(frozen=True)
class Edit:
    kind: str  # "insert" | "update" | "delete"
    index: str
    pk: Any = None
    version: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class InlineForm:
    """What one inline's part of the form asks for, or its errors."""

    inline: Inline
    child: BoundResource
    rows: list[RowForm] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.errors for r in self.rows)


class StaleChild(Exception):
    """A child row changed (or went away) since the parent's page was drawn."""

    def __init__(self, child: BoundResource, index: str, label: str, why: str) -> None:
        super().__init__(why)
        self.child, self.index, self.label, self.why = child, index, label, why


# ---- reading ------------------------------------------------------------------------------


async def load(
    conn: psycopg.AsyncConnection[Any], inline: Inline, child: BoundResource, parent_pk: Any
) -> InlineForm:
    """The child rows as the form first shows them, with their versions, plus blank rows."""
    query = sql.SQL("SELECT {} FROM {} WHERE {} = %s ORDER BY {} LIMIT {}").format(
        sql.SQL(writes.row_select(child.table)),
        sql.Identifier(child.table.schema, child.table.name),
        sql.Identifier(inline.fk_column),
        sql.Identifier(child.pk),
        sql.Literal(min(max(inline.limit, 1), MAX_ROWS)),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (parent_pk,))
        rows = await cur.fetchall()
    out = InlineForm(inline, child)
    row_specs = specs(inline, child)
    for i, row in enumerate(rows):
        out.rows.append(
            RowForm(
                str(i),
                pk=row[child.pk],
                version=writes.row_version(child.table, row),
                raw={s.name: forms.format_value(s, row.get(s.name)) for s in row_specs},
                label=writes.label_of(child, row),
            )
        )
    out.rows.extend(blank_rows(inline, child, 0))
    return out


def blank_rows(inline: Inline, child: BoundResource, start: int) -> list[RowForm]:
    defaults = forms.defaults(specs(inline, child))
    return [RowForm(f"new{start + j}", raw=dict(defaults)) for j in range(max(inline.extra, 0))]


# ---- parsing (SEC-3) ----------------------------------------------------------------------


def parse(
    inline: Inline,
    child: BoundResource,
    data: Mapping[str, str],
    *,
    allowed: frozenset[str],
) -> InlineForm:
    """The posted rows of one inline → typed edits and per-row errors.

    `allowed` holds the child actions this user may take ("add", "change", "delete"): a row
    asking for another is refused. A blank new row (nothing typed, or only its defaults) is
    ignored."""
    out = InlineForm(inline, child)
    row_specs = specs(inline, child)
    pattern = re.compile(re.escape(f"_in.{child.slug}.") + r"(new)?(\d{1,4})\.")
    indexes = sorted(
        {(m.group(1) or "") + m.group(2) for k in data if (m := pattern.match(k))},
        key=lambda i: (i.startswith("new"), int(i.removeprefix("new"))),
    )
    if len(indexes) > MAX_ROWS:
        raise Invalid(f"{child.title}: at most {MAX_ROWS} rows can be saved at once.")
    col = child.column(child.pk)
    assert col is not None
    defaults = forms.defaults(row_specs)
    for index in indexes:
        p = prefix(child, index)
        values = {k[len(p) :]: v for k, v in data.items() if k.startswith(p)}
        row = RowForm(index, raw={s.name: values.get(s.name, "") for s in row_specs})
        if index.startswith("new"):
            typed = {s.name: values.get(s.name, "") for s in row_specs}
            if all(v in ("", defaults.get(n, "")) for n, v in typed.items()):
                continue  # a blank row: nothing to add
            out.rows.append(row)
            if "add" not in allowed:
                row.errors[""] = f"You may not add {child.title.lower()}."
                continue
            parsed = forms.parse_form(row_specs, values, creating=True)
            row.raw.update(parsed.raw)
            row.errors.update(parsed.errors)
            if parsed.ok:
                values_ = {**parsed.values, inline.fk_column: None}  # the parent's key, at apply
                out.edits.append(Edit("insert", index, values=values_))
            continue
        out.rows.append(row)
        try:
            row.pk = forms.parse_key(col, values.get("pk", ""))
        except forms.FieldError as exc:
            raise Invalid(f"{child.title}: a row's key is not valid: {exc}.") from None
        row.version = values.get("version", "")
        if not _VERSION.fullmatch(row.version):
            raise Invalid(
                f"{child.title}: a row has no valid version.", fix="reload the page and try again"
            )
        row.label = values.get("label", "")[:120]
        if values.get("delete"):
            row.delete = True
            if "delete" not in allowed:
                row.errors[""] = f"You may not delete {child.title.lower()}."
            else:
                out.edits.append(Edit("delete", index, pk=row.pk, version=row.version))
            continue
        if "change" not in allowed:
            continue  # drawn disabled: nothing of it was posted, so nothing to change
        parsed = forms.parse_form(row_specs, values, creating=False)
        row.raw.update(parsed.raw)
        row.errors.update(parsed.errors)
        if parsed.ok:
            out.edits.append(
                Edit("update", index, pk=row.pk, version=row.version, values=parsed.values)
            )
    return out


# ---- writing ------------------------------------------------------------------------------


def _prefixed(exc: Invalid, child: BoundResource, index: str) -> Invalid:
    """A child's constraint error, named after the input of that row."""
    fields = {prefix(child, index) + k: v for k, v in exc.fields.items()}
    return Invalid(
        f"{child.title}: {exc.problem}", fields=fields or {prefix(child, index): exc.problem}
    )


async def apply(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    form: InlineForm,
    parent_pk: Any,
    *,
    allowed: frozenset[str],
) -> int:
    """Write one inline's edits inside the caller's transaction; how many rows changed.

    Every stored row is locked and checked to still belong to this parent and, when this
    save changes or deletes it, to be at the version the page showed (EDIT-4)."""
    child, inline = form.child, form.inline
    done = 0
    for edit in form.edits:
        if edit.kind == "insert":
            if "add" not in allowed:
                raise Invalid(f"You may not add {child.title.lower()}.")
            try:
                await writes.insert_row(
                    conn, ctx, child, {**edit.values, inline.fk_column: parent_pk}
                )
            except Invalid as exc:
                raise _prefixed(exc, child, edit.index) from None
            done += 1
            continue
        before = await writes.fetch_row(conn, child, edit.pk, lock=True)
        label = audit_id(child.key, edit.pk)
        if before is None or before.get(inline.fk_column) != parent_pk:
            raise StaleChild(child, edit.index, str(label), "was deleted or moved meanwhile")
        label = writes.label_of(child, before)
        changed = {k: v for k, v in edit.values.items() if not forms.unchanged(before.get(k), v)}
        if edit.kind == "update" and not changed:
            continue  # untouched: another editor's change to it is no conflict of this save
        if writes.row_version(child.table, before) != edit.version:
            raise StaleChild(child, edit.index, label, "was changed by someone else meanwhile")
        if edit.kind == "delete":
            if "delete" not in allowed:
                raise Invalid(f"You may not delete {child.title.lower()}.")
            await writes.delete_row(conn, ctx, child, edit.pk)
        else:
            if "change" not in allowed:
                raise Invalid(f"You may not change {child.title.lower()}.")
            try:
                await writes.update_row(conn, ctx, child, edit.pk, changed, version=edit.version)
            except Invalid as exc:
                raise _prefixed(exc, child, edit.index) from None
        done += 1
    return done


def editable(bound: BoundResource) -> Sequence[Inline]:
    return [i for i in bound.resource.inlines if i.editable]
