"""Values in their human form: choice labels and badge colours, numbers by declared format.

Pure functions shared by list cells, filters and forms; no database, no aiohttp."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from markupsafe import escape


def ascii_html(html: str) -> str:
    """`html` with every non-ASCII character as a character reference (`€` → `&#8364;`).

    Keel's own page text is ASCII (entities where a sign is wanted), so a page whose data is
    ASCII stays ASCII end to end. One non-ASCII character anywhere makes CPython store the
    whole page two or four bytes a character and encode it to UTF-8 the slow way: about 60 µs
    for a 48 KB list page, against 4 µs in ASCII. Used for text Keel makes itself (a
    currency sign, an estimate's sign), not for stored data, which is sent as it is."""
    return html if html.isascii() else html.encode("ascii", "xmlcharrefreplace").decode("ascii")


# Common status words and the colour their meaning suggests; anything else is coloured by its
# position among the column's choices, so neighbouring values never share a colour.
_MEANING: Mapping[str, str] = {
    **dict.fromkeys(
        ("active", "approved", "complete", "completed", "confirmed", "delivered", "done", "paid",
         "published", "resolved", "success", "succeeded", "verified", "yes"),
        "success",
    ),
    **dict.fromkeys(
        ("awaiting", "draft", "due", "hold", "on_hold", "pending", "review", "in_review",
         "waiting", "unpaid", "partial", "scheduled"),
        "warning",
    ),
    **dict.fromkeys(
        ("blocked", "declined", "error", "failed", "lost", "no_show", "overdue", "rejected",
         "refused", "suspended"),
        "danger",
    ),
    **dict.fromkeys(
        ("cancelled", "canceled", "archived", "closed", "expired", "inactive", "retired"),
        "neutral",
    ),
    **dict.fromkeys(("in_progress", "new", "open", "processing", "sent", "started"), "info"),
}  # fmt: skip
_CYCLE = ("brand", "info", "success", "warning", "neutral")

_SYMBOLS: Mapping[str, str] = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}


def choice_label(value: str) -> str:
    """`no_show` → "No show": the stored word, readable."""
    text = value.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def choice_options(choices: Sequence[str]) -> list[tuple[str, str]]:
    """(value, label) pairs for a select or a filter."""
    return [(c, choice_label(c)) for c in choices]


def choice_tones(
    choices: Sequence[str], declared: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each choice's badge tone: declared, else from its meaning, else by position."""
    declared = declared or {}
    out = {}
    for i, c in enumerate(choices):
        out[c] = declared.get(c) or _MEANING.get(c.lower()) or _CYCLE[i % len(_CYCLE)]
    return out


def badge_html(value: str, tone: str) -> str:
    """A choice as a coloured badge (the `k.badge` macro's markup, built once per choice)."""
    cls = "k-badge" if tone == "neutral" else f"k-badge k-badge--{tone}"
    return f'<span class="{cls}">{escape(choice_label(value))}</span>'


@lru_cache(maxsize=64)
def number_formatter(spec: str) -> Callable[[Any], str]:
    """A declared format (`money:EUR`, `percent`, `integer`, `decimal:2`) as value → text.
    One function per spec for the process, so what it keeps lasts from page to page."""
    kind, _, arg = spec.partition(":")
    if kind in ("money", "integer", "decimal"):
        return _kept(_number_formatter(kind, arg))
    return _number_formatter(kind, arg)


# Formatting a Decimal with grouped digits costs microseconds, and a list page formats fifty
# amounts that repeat across pages: formats that round to fixed places keep their text per
# value. Only values whose text depends on the value alone are kept: finite, not zero (0 and
# -0 are equal but print apart) and well inside the precision the rounding needs.
_KEPT_MAX = 4096
_KEPT_BOUND = Decimal(10) ** 15


def _kept(fn: Callable[[Any], str]) -> Callable[[Any], str]:
    kept: dict[Decimal, str] = {}

    def call(value: Any) -> str:
        if type(value) is not Decimal or not value.is_finite():
            return fn(value)
        found = kept.get(value)
        if found is not None:
            return found
        text = fn(value)
        if value and -_KEPT_BOUND < value < _KEPT_BOUND:
            if len(kept) >= _KEPT_MAX:
                kept.clear()
            kept[value] = text
        return text

    return call


def _number_formatter(kind: str, arg: str) -> Callable[[Any], str]:
    if kind == "money":
        code = arg.upper() or ""
        symbol = _SYMBOLS.get(code)
        places = 0 if code == "JPY" else 2

        def money(v: Any) -> str:
            text = _fixed(v, places)
            if symbol is None:
                return f"{text} {code}".strip()
            return f"−{symbol}{text[1:]}" if text.startswith("-") else f"{symbol}{text}"

        return money
    if kind == "percent":
        return lambda v: f"{_fixed(v, None)} %"
    if kind == "integer":
        return lambda v: _fixed(v, 0)
    if kind == "decimal":
        places = int(arg) if arg.isdigit() else 2
        return lambda v: _fixed(v, places)
    return str


# The quantum of each number of places (Decimal("0.01") for 2), made once: a list page asks for
# one per money cell.
_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(7)}


def _fixed(value: Any, places: int | None) -> str:
    """Grouped digits with `places` decimals (None: as stored)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return str(value)
    if places is None:
        return f"{value:,}" if not isinstance(value, float) else f"{value:,.6g}"
    if isinstance(value, Decimal):
        quantum = _QUANTA.get(places) or Decimal(1).scaleb(-places)
        # More digits than the context holds: shown as stored.
        with contextlib.suppress(InvalidOperation):
            value = value.quantize(quantum, rounding=ROUND_HALF_UP)
        return f"{value:,}"
    return f"{value:,.{places}f}"
