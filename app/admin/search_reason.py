"""Why a row came up in global search: the field that matched and its text with the match marked.

Computed from the values the search page already selected (the searched columns ride along in
the page query), so explaining a hit costs no query of its own. The rules mirror the search's own
WHERE clause in `listing._word_sql`: a substring of a text field, an equal integer or uuid, a
related row's name, or the full-text column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from markupsafe import Markup

from app.admin.list_render import highlight, highlighter
from app.admin.listing import Page
from app.admin.resources import BoundResource, search_kind

CONTEXT = 30  # characters kept on each side of the match in a long value


def own_search_columns(b: BoundResource) -> tuple[str, ...]:
    """The resource's own searched columns, for the page query to select with the row."""
    names = []
    for name in b.resource.search_fields:
        col = b.resolve_column(name) if "." not in name else None
        if col is not None and search_kind(col) is not None:
            names.append(col.name)
    return tuple(dict.fromkeys(names))


def _excerpt(text: str, word: str) -> str:
    """The part of a long value around the first match, so the reason stays one short line."""
    at = text.casefold().find(word.casefold())
    if at < 0 or len(text) <= 2 * CONTEXT + len(word):
        return text
    start, end = max(0, at - CONTEXT), min(len(text), at + len(word) + CONTEXT)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _equal(value: Any, word: str) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return word.strip().lstrip("+").isdigit() and value == int(word)
    if isinstance(value, UUID):
        return str(value) == word.strip().lower()
    return False


def _word_reason(b: BoundResource, row: dict[str, Any], labels: Page, word: str) -> Markup | None:
    pattern = highlighter([word])
    related: str | None = None  # a related field whose value this page did not select
    # The key counts only where the search compares it (declared as a search field).
    if b.keyed and not b.composite and b.pk in own_search_columns(b) and _equal(row[b.pk], word):
        return Markup("<mark>ID {}</mark>").format(row[b.pk])
    for name in b.resource.search_fields:
        if "." in name:
            found = b.resolve_related(name)
            if found is None:
                continue
            fk_col = found[0]
            shown = labels.labels.get(fk_col.name, {}).get(row.get(fk_col.name))
            if shown is not None and word.casefold() in str(shown).casefold():
                text = highlight(_excerpt(str(shown), word), pattern)
                return Markup("{}: ").format(b.label(fk_col.name)) + Markup(text)  # noqa: S704 - escaped by highlight
            related = related or name
            continue
        col = b.resolve_column(name)
        if col is None or col.name not in row:
            continue
        value = row[col.name]
        kind = search_kind(col)
        if kind == "text" and isinstance(value, str) and word.casefold() in value.casefold():
            text = highlight(_excerpt(value, word), pattern)
            return Markup("{}: ").format(b.label(col.name)) + Markup(text)  # noqa: S704 - escaped by highlight
        if kind in ("int", "uuid") and _equal(value, word):
            return Markup("{}: <mark>{}</mark>").format(b.label(col.name), value)
    if related is not None:
        # No own field holds the word, so the related row's field did (the WHERE said so).
        return Markup("{}: contains <mark>{}</mark>").format(b.label(related), word)
    if b.resource.tsvector_field:
        return Markup("Full text: {}").format(word)
    return None


def reasons(b: BoundResource, page: Page, words: Sequence[str]) -> list[Markup]:
    """One reason per row of `page`: each search word's first matching field, joined."""
    out: list[Markup] = []
    for values in page.rows:
        row = dict(zip(page.columns, values, strict=True))
        parts: list[Markup] = []
        for word in words:
            found = _word_reason(b, row, page, word)
            if found is not None and found not in parts:
                parts.append(found)
        out.append(Markup("; ").join(parts) if parts else Markup(""))
    return out
