"""List rows as pre-formatted HTML: one escape per cell, no per-cell template work (LIST-1, LIST-6).

The benchmark lesson (BASELINE): Jinja expressions and filters per cell dominate a list page's
CPU; building each row once here and emitting the table body as one Markup keeps S1 cheap."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

import markupsafe
from markupsafe import Markup, escape

from app.admin.listing import Page
from app.admin.resources import BoundResource
from app.admin.rowkey import path_segment
from app.admin.values import ascii_html, badge_html, choice_tones, number_formatter
from app.db.catalog import NUMBER_TYPES, Column

# markupsafe's own C escaper without the Markup wrapping: the same text, a tenth of the cost.
_escape_str: Callable[[str], str] = getattr(markupsafe, "_escape_inner", None) or (
    lambda s: str(escape(s))
)

NULL = '<td><span class="k-null">&mdash;</span></td>'
MAX_CELL = 120  # characters shown in a cell; the edit page shows the rest


def format_value(value: Any) -> str:
    """A cell's text: numbers grouped, times to the minute in UTC, booleans as Yes/No."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        when: datetime = value
        if when.tzinfo is not None:
            when = when.astimezone(UTC)
        return when.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, Decimal):
        return f"{value:,}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, date | time):
        return value.isoformat()
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def highlighter(words: Sequence[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern[str] | None) -> str:
    """Escaped text with search matches wrapped in <mark> (LIST-6)."""
    if pattern is None:
        return str(escape(text))
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(str(escape(text[pos : m.start()])))
        out.append(f"<mark>{escape(m.group())}</mark>")
        pos = m.end()
    out.append(str(escape(text[pos:])))
    return "".join(out)


Text = Callable[[Any], str]  # a value → its escaped cell text


def _generic(value: Any) -> str:
    return str(escape(format_value(value)))


@lru_cache(maxsize=4096)
def _ascii_refs(text: str) -> str:
    return ascii_html(text)


def _ascii_cell(text: str) -> str:
    """A formatted number's cell text in ASCII (`ascii_html`: a currency sign or minus as a
    character reference); the few distinct texts a page repeats are converted once."""
    return text if text.isascii() else _ascii_refs(text)


def _int_text(value: Any) -> str:
    # Digits and a sign need no escaping; anything else takes the general path.
    return str(value) if type(value) is int else _generic(value)


def _decimal_text(value: Any) -> str:
    return f"{value:,}" if type(value) is Decimal else _generic(value)


# Zones whose offset is always zero: a time in one of them already reads as UTC. psycopg
# gives timestamptz values the session's zone, which is one of these on most servers.
_UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"}
)
_UTC_ZONES: dict[int, tuple[Any, bool]] = {}


def _in_utc(tz: Any) -> bool:
    found = _UTC_ZONES.get(id(tz))
    if found is None or found[0] is not tz:
        found = _UTC_ZONES[id(tz)] = (tz, tz is UTC or getattr(tz, "key", None) in _UTC_NAMES)
    return found[1]


def _datetime_text(value: Any) -> str:
    """`format_value` for datetimes, without strftime: the same text, a few times faster."""
    if type(value) is not datetime or value.year < 1000:  # strftime does not pad small years
        return _generic(value)
    when: datetime = value
    if when.tzinfo is not None and not _in_utc(when.tzinfo):
        when = when.astimezone(UTC)
    return when.isoformat(" ", "minutes")[:16]


def _text_cell(value: Any) -> str:
    if type(value) is not str:
        return _generic(value)
    if len(value) > MAX_CELL:
        value = value[: MAX_CELL - 1] + "…"
    return _escape_str(value)


def value_formatter(col: Column, b: BoundResource | None = None) -> Text:
    """Escaped cell text for one column, chosen once per column rather than once per cell.

    Choices become coloured badges with their labels and a declared number format (`formats=`)
    is applied; otherwise every formatter gives exactly `escape(format_value(value))`, the typed
    ones only skipping work that cannot change the result (escaping digits, re-dispatching)."""
    t = col.type_name
    if b is not None and col.name in b.resource.formats and col.type_name in NUMBER_TYPES:
        fmt = number_formatter(b.resource.formats[col.name])
        return lambda v: (
            _ascii_cell(_escape_str(fmt(v)))
            if isinstance(v, int | float | Decimal)
            else _generic(v)
        )
    if col.choices and col.type_name not in NUMBER_TYPES:
        declared = b.resource.badges.get(col.name) if b is not None else None
        tones = choice_tones(col.choices, declared)
        badges = {c: badge_html(c, tones[c]) for c in col.choices}
        return lambda v: badges.get(v) or _generic(v)
    if t in ("smallint", "integer", "bigint"):
        return _int_text
    if t == "numeric":
        return _decimal_text
    if t in ("timestamptz", "timestamp"):
        return _datetime_text
    if t in ("text", "varchar", "char", "citext", "name"):
        if col.choices:
            known = {c: _text_cell(c) for c in col.choices}
            return lambda v: known.get(v) or _text_cell(v)
        return _text_cell
    return _generic


def _key_text(value: Any) -> str:
    """A primary or foreign key as it appears in a URL path segment."""
    return str(value) if type(value) is int else quote(str(value), safe="")


class RowRenderer:
    """Turns a page of rows into `<tr>` HTML, with links, FK names and highlighted matches.

    Each column's cell is one small function chosen up front (by type, FK and highlight), so a
    row costs a call per cell and one escape per text cell (BASELINE: per-cell work dominates
    a list page)."""

    def __init__(
        self,
        b: BoundResource,
        page: Page,
        words: Sequence[str],
        *,
        back: str,
        slugs_by_table: Mapping[str, str],
        selectable: bool,
    ) -> None:
        self.b = b
        self.page = page
        self.pattern = highlighter(words)
        searched = {n for n in b.resource.search_fields if "." not in n}
        self._searched = searched if self.pattern is not None else set()
        self.columns = b.list_columns
        self.index = [page.columns.index(c.name) for c in self.columns]
        # Rows link to their edit page by key; a resource without a key has no row pages.
        self.keyed = b.keyed
        self.pk_index = page.columns.index(b.pk) if b.keyed else 0
        self.key_index = [page.columns.index(k) for k in b.key] if b.composite else None
        # The first column links to the edit page and carries the list state back (LIST-7);
        # escaping is per character, so the fixed parts of the link are escaped once.
        self.href_start = str(escape(f"/admin/{b.slug}/"))
        self.href_end = str(escape("/" + (f"?{urlencode({'back': back})}" if back else "")))
        self.selectable = selectable and b.keyed and not b.composite
        # The record opens from its display field when the list shows it, else from the first
        # column; that cell is the row's primary link, other links (FK names) stay secondary.
        names = [c.name for c in self.columns]
        shown = b.display_column
        self.link_pos = names.index(shown) if shown in names else 0
        texts = [
            self._text_for(c, searched, slugs_by_table, i == self.link_pos)
            for i, c in enumerate(self.columns)
        ]
        lp = self.link_pos
        self.first = texts[lp] if texts else None
        self.first_start = self._start(self.columns[lp]) if self.columns else ""
        self.first_index = self.index[lp] if self.columns else 0
        cells = [
            (self._cell(c, t), j) for c, t, j in zip(self.columns, texts, self.index, strict=True)
        ]
        self.before = cells[:lp]
        self.rest = cells[lp + 1 :]

    @staticmethod
    def _start(col: Column) -> str:
        numeric = col.type_name in NUMBER_TYPES and col.fk is None
        return f'<td class="{"num" if numeric else "trunc"}">'

    def _cell(self, col: Column, text: Text) -> Text:
        """`text` wrapped in its `<td>`, with the common cases done in one call: the cells of
        a page's FK names and of a column's choices are drawn once, integers and decimals
        inline."""
        start = self._start(col)
        known: dict[Any, str] | None = None
        if col.fk is not None:
            known = {k: f"{start}{text(k)}</td>" for k in self.page.labels.get(col.name, {})}
        elif col.choices and text is not _generic and col.name not in self._searched:
            known = {c: f"{start}{text(c)}</td>" for c in col.choices}

        def cell(value: Any) -> str:
            return NULL if value is None else f"{start}{text(value)}</td>"

        if known is not None:

            def known_cell(value: Any) -> str:
                found = known.get(value)
                return found if found is not None else cell(value)

            return known_cell
        if text is _int_text:
            return lambda v: f"{start}{v}</td>" if type(v) is int else cell(v)
        if text is _decimal_text:
            return lambda v: f"{start}{v:,}</td>" if type(v) is Decimal else cell(v)
        return cell

    def _text_for(
        self, col: Column, searched: set[str], slugs: Mapping[str, str], first: bool
    ) -> Text:
        if col.fk is not None:
            labels = self.page.labels.get(col.name, {})
            names = {
                k: _escape_str(v) if type(v) is str else str(escape(v)) for k, v in labels.items()
            }

            def name(value: Any) -> str:
                label = names.get(value)
                return label if label is not None else str(escape(value))

            target = slugs.get(col.fk.target)
            if target is None or first:  # the first column links to this row instead
                return name
            url = f"/admin/{target}/"
            return lambda v: f'<a href="{url}{_key_text(v)}/">{name(v)}</a>'
        if col.name in searched and self.pattern is not None:
            pattern = self.pattern
            return lambda v: highlight(format_value(v), pattern)
        return value_formatter(col, self.b)

    def row(self, values: tuple[Any, ...], tail: str = "") -> str:
        """The row's `<tr>`; `tail` is more cells, already escaped (search's reason)."""
        pk = values[self.pk_index]
        parts = []
        if self.selectable:
            v = str(pk) if type(pk) is int else str(escape(str(pk)))
            parts.append(
                f'<td class="k-col-select"><label class="k-hit"><input type="checkbox" '
                f'class="k-row-select" name="ids" value="{v}" aria-label="Select row {v}">'
                "</label></td>"
            )
        parts += [cell(values[j]) for cell, j in self.before]
        if self.first is not None:
            value = values[self.first_index]
            if value is None:
                parts.append(NULL)
            elif not self.keyed:
                parts.append(f"{self.first_start}{self.first(value)}</td>")
            else:
                if self.key_index is not None:
                    key = str(escape(path_segment([values[i] for i in self.key_index])))
                else:
                    key = str(pk) if type(pk) is int else str(escape(_key_text(pk)))
                parts.append(
                    f'{self.first_start}<a class="k-row-link" href="{self.href_start}{key}'
                    f'{self.href_end}">{self.first(value)}</a></td>'
                )
        parts += [cell(values[j]) for cell, j in self.rest]
        return "<tr>" + "".join(parts) + tail + "</tr>"

    def body(self) -> Markup:
        return Markup("\n".join([self.row(r) for r in self.page.rows]))  # noqa: S704 - escaped above


def json_rows(b: BoundResource, page: Page) -> list[dict[str, Any]]:
    """Rows for `?format=json` (LIST-10): the key and list columns, JSON-typed."""
    wanted = list(dict.fromkeys([*b.key, *(c.name for c in b.list_columns)]))
    idx = [page.columns.index(n) for n in wanted]
    return [{n: _jsonable(r[i]) for n, i in zip(wanted, idx, strict=True)} for r in page.rows]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return value
    return str(value)


def querystring(pairs: Iterable[tuple[str, str]], **extra: str | None) -> str:
    items = [(k, v) for k, v in pairs if k not in extra]
    items += [(k, v) for k, v in extra.items() if v is not None]
    return urlencode(items)
