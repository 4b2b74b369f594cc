"""How a row is named in URLs, forms and the audit log: its primary key as one text.

A single-column key is its value's text, as before (`/admin/customers/42/`). A composite key is
its values in key order, each with `~` written `~7E`, `,` written `~2C` and `/` written `~2F`,
joined by `,` (`/admin/order_lines/17,3/`). The escapes use no `%`, so they survive the
percent-decoding every HTTP server applies to a path; see docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

_ESCAPES = (("~", "~7E"), (",", "~2C"), ("/", "~2F"))


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def key_text(values: Sequence[Any]) -> str:
    """The row's name: one value as its text; several escaped and joined by commas."""
    if len(values) == 1:
        return _text(values[0])
    parts = []
    for value in values:
        text = _text(value)
        for raw, escaped in _ESCAPES:
            text = text.replace(raw, escaped)
        parts.append(text)
    return ",".join(parts)


def path_segment(values: Sequence[Any]) -> str:
    """`key_text` for a URL path segment."""
    return quote(key_text(values), safe=",~")


def split_key(text: str, size: int) -> list[str] | None:
    """The `size` key values written in `text` (their text forms), or None if it names none."""
    if size == 1:
        return [text]
    parts = text.split(",")
    if len(parts) != size:
        return None
    out = []
    for part in parts:
        text = part
        for raw, escaped in reversed(_ESCAPES):
            text = text.replace(escaped, raw)
        out.append(text)
    return out


def audit_id(bound_key: Sequence[str], pk: Any) -> Any:
    """The object id the audit log keeps: the key value, or a composite key's text."""
    if len(bound_key) > 1 and isinstance(pk, tuple):
        return key_text(pk)
    return pk


def row_key(key: Sequence[str], row: Any) -> Any:
    """A row's key as the admin passes it around: the value, or a tuple for a composite key."""
    if len(key) == 1:
        return row[key[0]]
    return tuple(row[k] for k in key)


def segment(pk: Any) -> str:
    """The URL path segment of a key from `row_key` (or `path_key`)."""
    if isinstance(pk, tuple):
        return path_segment(pk)
    return quote(str(pk), safe="")
