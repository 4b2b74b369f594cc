"""List rows as pre-formatted HTML: one escape per cell, no per-cell template work (LIST-1, LIST-6).

The benchmark lesson (BASELINE): Jinja expressions and filters per cell dominate a list page's
CPU; building each row once here and emitting the table body as one Markup keeps S1 cheap."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape

from app.admin.listing import Page
from app.admin.resources import BoundResource
from app.db.catalog import NUMBER_TYPES, Column

NULL = '<td><span class="k-null">—</span></td>'
MAX_CELL = 120  # characters shown in a cell; the edit page shows the rest


def format_value(value: Any) -> str:
    """A cell's text: numbers grouped, times to the minute in UTC, booleans as Yes/No."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M")
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


class RowRenderer:
    """Turns a page of rows into `<tr>` HTML, with links, FK names and highlighted matches."""

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
        self.columns = b.list_columns
        self.index = [page.columns.index(c.name) for c in self.columns]
        self.pk_index = page.columns.index(b.pk)
        self.highlight = [c.name in searched for c in self.columns]
        self.numeric = [c.type_name in NUMBER_TYPES and c.fk is None for c in self.columns]
        self.fk_urls = [
            f"/admin/{slugs_by_table[c.fk.target_table]}/"
            if c.fk is not None and c.fk.target_table in slugs_by_table
            else None
            for c in self.columns
        ]
        self.back = f"?{urlencode({'back': back})}" if back else ""
        self.base = f"/admin/{b.slug}/"
        self.selectable = selectable

    def _cell(self, i: int, col: Column, value: Any, href: str | None) -> str:
        """One `<td>`; `href` makes it the row's link to the edit page."""
        if value is None:
            return NULL
        cls = "num" if self.numeric[i] else "trunc"
        if col.fk is not None:
            label = self.page.labels.get(col.name, {}).get(value)
            inner = str(escape(label if label is not None else value))
            url = self.fk_urls[i]
            if url and href is None:
                inner = f'<a href="{url}{quote(str(value), safe="")}/">{inner}</a>'
        else:
            text = format_value(value)
            inner = highlight(text, self.pattern) if self.highlight[i] else str(escape(text))
        if href is not None:
            inner = f'<a class="k-row-link" href="{href}">{inner}</a>'
        return f'<td class="{cls}">{inner}</td>'

    def row(self, values: tuple[Any, ...]) -> str:
        pk = values[self.pk_index]
        # The first column links to the edit page and carries the list state back (LIST-7).
        href = str(escape(f"{self.base}{quote(str(pk), safe='')}/{self.back}"))
        cells: list[str] = []
        if self.selectable:
            v = escape(str(pk))
            cells.append(
                f'<td class="k-col-select"><input type="checkbox" class="k-row-select" '
                f'name="ids" value="{v}" aria-label="Select row {v}"></td>'
            )
        for i, (col, j) in enumerate(zip(self.columns, self.index, strict=True)):
            cells.append(self._cell(i, col, values[j], href if i == 0 else None))
        return "<tr>" + "".join(cells) + "</tr>"

    def body(self) -> Markup:
        return Markup("\n".join(self.row(r) for r in self.page.rows))  # noqa: S704 - escaped above


def json_rows(b: BoundResource, page: Page) -> list[dict[str, Any]]:
    """Rows for `?format=json` (LIST-10): the key and list columns, JSON-typed."""
    wanted = [b.pk] + [c.name for c in b.list_columns if c.name != b.pk]
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
