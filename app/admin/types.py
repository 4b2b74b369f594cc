"""What the admin can do with a column's type: edit it, sort by it, or only show its text.

PostgreSQL has many more types than a form has inputs. The admin works natively with the
common ones (numbers, text, booleans, dates and times, UUIDs, JSON, network addresses, enums
and domains over any of these). Every other type — arrays, `interval`, `money`, `bytea`,
`tsvector`, ranges, geometric types, `xml`, extension types — is *opaque*: the admin reads it
as PostgreSQL's own text form (`col::text`), shows it read-only with the reason, and never
filters, sorts or searches on it. Nothing is dropped silently, and no value the Python driver
cannot load (an interval of millions of years, a range, a custom type) reaches the page.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.db.catalog import NUMBER_TYPES, TEXT_TYPES

# Types whose values the admin reads, parses and writes as Python values.
NATIVE = (
    NUMBER_TYPES
    | TEXT_TYPES
    | {
        "boolean",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "uuid",
        "json",
        "jsonb",
        "inet",
        "cidr",
    }
)
# Native types a list cannot be ordered by: page cursors carry sort values as text, and these
# do not come back from text as the same value (or have no useful order).
UNSORTABLE = frozenset({"json", "jsonb", "inet", "cidr"})
OPAQUE_TEXT_CAP = 10_000  # characters of an opaque value read for an edit page


class TypedColumn(Protocol):
    @property
    def type_name(self) -> str: ...
    @property
    def choices(self) -> tuple[str, ...] | None: ...


def is_array(col: TypedColumn) -> bool:
    return col.type_name.endswith("[]")


def is_opaque(col: TypedColumn) -> bool:
    """Read as text and shown read-only: neither a native type nor an enum."""
    t = col.type_name
    if t in NATIVE:
        return False
    return not (col.choices and not t.endswith("[]"))


def sortable(col: TypedColumn) -> bool:
    return not is_opaque(col) and col.type_name not in UNSORTABLE


def readonly_reason(col: TypedColumn) -> str | None:
    """Why a form shows this column read-only whatever the declaration says; None if editable."""
    if not is_opaque(col):
        return None
    if is_array(col):
        return "Arrays are shown as text here and cannot be edited in this form."
    return (
        f"Values of type {col.type_name} are shown as text here and cannot be edited in this form."
    )


def text_select(ident: str, col: Any, cap: int | None = None) -> str:
    """The select expression for a column: itself, or for an opaque type its text form
    (capped at `cap` characters when given)."""
    if not is_opaque(col):
        return ident
    text = f"{ident}::text"
    return f"left({text}, {int(cap)})" if cap else text
