"""List query-string parameters validated against allow-lists into typed values (SEC-3, LIST-2..6)."""

from __future__ import annotations

import calendar
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from multidict import MultiMapping

from app.admin import types
from app.admin.resources import BoundResource, filter_kind
from app.db.catalog import INTEGER_TYPES, TEXT_TYPES, Column
from app.errors import Invalid

RESERVED = ("q", "o", "cursor", "last", "per_page", "format")
MAX_VALUE = 200  # characters in any one parameter value
MAX_PARAMS = 60
MAX_WORDS = 8
MAX_ORDER_KEYS = 3
PER_PAGE_MAX = 500
DATE_PRESETS = {
    "today": "today",
    "past_7_days": "past 7 days",
    "past_30_days": "past 30 days",
    "this_month": "this month",
    "this_year": "this year",
}
# Casts for typed parameters: applied to the *parameter*, never to the column (LIST-5).
CAST = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "real": "real",
    "double precision": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "time": "time",
    "uuid": "uuid",
    "text": "text",
    "varchar": "text",
    "char": "text",
}
_INT_RANGE = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
MAX_EXPONENT = 1000  # decimal places accepted in a numeric filter value
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE, _FALSE = ("yes", "true", "1", "on"), ("no", "false", "0", "off")
MAX_TIEBREAK = 8  # columns ordering a list that is paged by position


def parse_value(col: Column, text: str, *, strict: bool = True) -> Any:
    """Text → the Python value for this column's type; ValueError says what was expected.

    `strict` (user input) also refuses control characters and long text; cursors, which are
    signed, carry whatever the database held."""
    t = col.type_name
    if strict and (len(text) > MAX_VALUE or _CONTROL.search(text)):
        raise ValueError(f"at most {MAX_VALUE} printable characters")
    s = text.strip()
    if col.choices and t not in TEXT_TYPES and not t.endswith("[]"):  # an enum: its labels
        return text if not strict else s
    if t in INTEGER_TYPES:
        if not re.fullmatch(r"[+-]?[0-9]{1,20}", s):
            raise ValueError("a whole number")
        n = int(s)
        if not -_INT_RANGE[t] <= n < _INT_RANGE[t]:
            raise ValueError("a number in range")
        return n
    if t == "numeric":
        if len(s) > 40:
            raise ValueError("a number")
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise ValueError("a number") from None
        # `adjusted()` (the exponent of the first digit) compares without arithmetic: abs()
        # would round in the default context and raise Overflow for 9e999999999.
        if not d.is_finite() or (d != 0 and d.adjusted() >= 30):
            raise ValueError("a finite number")
        # Postgres numeric holds at most 16383 digits after the point: 1e-20000 (or 0E-99999)
        # would overflow there, so the exponent is bounded here (SEC-3: 400, not 500).
        if d.as_tuple().exponent < -MAX_EXPONENT:  # type: ignore[operator]
            raise ValueError(f"a number with at most {MAX_EXPONENT} decimal places")
        return Decimal(0) if d.is_zero() else d  # -0 and 0E-9 are plain 0
    if t in ("real", "double precision"):
        try:
            f = float(s)
        except ValueError:
            raise ValueError("a number") from None
        if not math.isfinite(f):
            raise ValueError("a finite number")
        return f
    if t == "boolean":
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise ValueError("yes or no")
    if t == "date":
        return _date(s)
    if t in ("timestamptz", "timestamp"):
        return _datetime(s, aware=t == "timestamptz")
    if t == "time":
        try:
            return time.fromisoformat(s)
        except ValueError:
            raise ValueError("a time like 14:30") from None
    if t == "uuid":
        try:
            return uuid.UUID(s)
        except ValueError:
            raise ValueError("a UUID") from None
    if t in TEXT_TYPES:
        return text if not strict else text.strip()
    raise ValueError(f"a value of type {t}")


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise ValueError("a date like 2024-05-31") from None


def _datetime(s: str, *, aware: bool) -> datetime:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError("a date like 2024-05-31 or 2024-05-31T14:30") from None
    if aware and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    if not aware and dt.tzinfo is not None:
        try:  # 0001-01-01T00:00+14:00 is in year 0 in UTC: Python cannot name it
            return dt.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError("a date and time from year 1 to 9999 in UTC") from None
    return dt


def encode_value(value: Any) -> Any:
    """A keyset value as JSON (parse_value reads it back with the column's type)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Condition:
    """One validated filter predicate: `column op value`, and how to show and remove it."""

    column: str
    op: str  # in | eq | gte | lt | lte | isnull
    value: Any
    label: str
    param: str


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    q: str = ""
    words: tuple[str, ...] = ()
    ordering: tuple[tuple[str, bool], ...] = ()  # (column, descending); the key is last
    order_param: str = ""
    cursor: str | None = None
    last: bool = False
    per_page: int = 50
    state: tuple[tuple[str, str], ...] = ()  # filters, q, o and per_page: what links keep
    also: tuple[str, ...] = ()  # columns selected beyond the list's (global search's reasons)

    @property
    def filtered(self) -> bool:
        return bool(self.conditions or self.words)

    @property
    def order_signature(self) -> str:
        return ",".join(("-" if d else "") + n for n, d in self.ordering)


def _bad(name: str, message: str) -> Invalid:
    return Invalid(f"{name}: {message}", fields={name[:60]: message})


def _ordering(b: BoundResource, raw: str | None) -> tuple[tuple[tuple[str, bool], ...], str]:
    """Requested (or declared) ordering; unknown keys are ignored (LIST-2); the key is last.

    A resource paged by position (no usable key) is ordered by its sortable columns after
    the requested ones, so that every row has one place."""
    sortable = {c.name for c in b.list_columns} | set(b.key)
    sortable |= {o.removeprefix("-") for o in b.resource.ordering}
    keys: list[tuple[str, bool]] = []
    for item in (raw or "").split(",")[:MAX_ORDER_KEYS] if raw else ():
        name = item.strip().removeprefix("-")
        col = b.resolve_column(name)
        if col is None or col.name not in sortable or not types.sortable(col):
            continue
        if col.name not in (k for k, _d in keys):
            keys.append((col.name, item.strip().startswith("-")))
    used = ",".join(("-" if d else "") + n for n, d in keys)
    if not keys:
        for item in b.resource.ordering or tuple(f"-{k}" for k in b.key):
            col = b.resolve_column(item.removeprefix("-"))
            if col is not None and types.sortable(col):
                keys.append((col.name, item.startswith("-")))
    named = {k for k, _d in keys}
    if b.offset_paging:
        for c in b.table.columns:
            if len(keys) < MAX_TIEBREAK and c.name not in named and types.sortable(c):
                keys.append((c.name, False))
        return tuple(keys), used
    for k in b.key:
        if k not in named:
            keys.append((k, keys[0][1] if keys else True))
    return tuple(keys), used


def _filter(b: BoundResource, name: str, values: list[str], now: datetime) -> list[Condition]:
    base, _, op = name.partition("__")
    col = b.resolve_column(base)
    if col is None or base not in _filter_names(b) or op not in ("", "gte", "lte"):
        allowed = ", ".join(sorted(_filter_names(b))) or "none"
        raise _bad(name, f"unknown parameter; filters here: {allowed}")
    kind = filter_kind(col)
    label = b.label(col.name)
    try:
        if op:
            if kind not in ("date", "number") or len(values) != 1:
                raise ValueError("a single value; ranges apply to dates and numbers")
            return [_range(col, op, values[0], label, name)]
        if kind == "bool":
            v = values[-1].strip().lower()
            if v in ("", "any"):
                return []
            return [Condition(col.name, "eq", parse_value(col, v), f"{label}: {v}", name)]
        if kind == "date":
            return _date_preset(col, values[-1], label, name, now)
        typed = [parse_value(col, v) for v in values if v.strip()]
        if kind == "choice" and any(v not in (col.choices or ()) for v in typed):
            raise ValueError(f"one of {', '.join(col.choices or ())}")
    except ValueError as exc:
        raise _bad(name, f"expected {exc}") from None
    if not typed:
        return []
    shown = ", ".join(str(v) for v in typed)
    return [Condition(col.name, "in", tuple(dict.fromkeys(typed)), f"{label}: {shown}", name)]


def _range(col: Column, op: str, raw: str, label: str, name: str) -> Condition:
    # A plain date on a timestamp column: the range covers whole days.
    text = raw.strip()
    if col.type_name in ("timestamptz", "timestamp") and len(text) == 10:
        day = _date(text)
        if op == "lte":
            end_op, end = _day_end(col, day)
            return Condition(col.name, end_op, end, f"{label} ≤ {text}", name)
        return Condition(col.name, "gte", _day_start(col, day), f"{label} ≥ {text}", name)
    value = parse_value(col, raw)
    sign = "≥" if op == "gte" else "≤"
    return Condition(col.name, op, value, f"{label} {sign} {raw.strip()}", name)


def _date_preset(col: Column, raw: str, label: str, name: str, now: datetime) -> list[Condition]:
    """A preset (today, past 7 or 30 days, this month, this year), or one given day, as day ranges in UTC (LIST-5)."""
    preset = raw.strip().lower()
    if preset in ("", "any"):
        return []
    today = now.astimezone(UTC).date()
    if preset == "today":
        first, last = today, today
    elif preset == "past_7_days":
        first, last = today - timedelta(days=6), today
    elif preset == "past_30_days":
        first, last = today - timedelta(days=29), today
    elif preset == "this_year":
        first, last = today.replace(month=1, day=1), today.replace(month=12, day=31)
    elif preset == "this_month":
        first = today.replace(day=1)
        last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    elif col.type_name != "date" and len(preset) != 10:  # a date and time: that instant
        return [Condition(col.name, "eq", parse_value(col, preset), f"{label}: {preset}", name)]
    else:  # a plain date: that whole day, on date and timestamp columns alike
        first = last = _date(preset)
        return _day_range(col, first, last, f"{label}: {preset}", name)
    return _day_range(col, first, last, f"{label}: {DATE_PRESETS[preset]}", name)


def _day_start(col: Column, day: date) -> date | datetime:
    if col.type_name == "date":
        return day
    return datetime.combine(day, time.min, UTC if col.type_name == "timestamptz" else None)


def _day_end(col: Column, day: date) -> tuple[str, date | datetime]:
    """Up to the end of `day`: `< the next day`, or on 9999-12-31, the last day Python can
    name, `<= its last microsecond` (Postgres keeps microseconds: the same rows)."""
    if day < date.max:
        return "lt", _day_start(col, day + timedelta(days=1))
    if col.type_name == "date":
        return "lte", day
    return "lte", datetime.combine(day, time.max, UTC if col.type_name == "timestamptz" else None)


def _day_range(col: Column, first: date, last: date, label: str, name: str) -> list[Condition]:
    """Every moment from the start of `first` to the end of `last`, sargable on the column."""
    end_op, end = _day_end(col, last)
    return [
        Condition(col.name, "gte", _day_start(col, first), label, name),
        Condition(col.name, end_op, end, label, name),
    ]


def _filter_names(b: BoundResource) -> set[str]:
    out = set()
    for name in b.resource.list_filter:
        col = b.resolve_column(name)
        if col is not None:
            out.add(col.name)
    return out


def _search(raw: str) -> tuple[str, tuple[str, ...]]:
    if len(raw) > MAX_VALUE or _CONTROL.search(raw):
        raise _bad("q", f"search for at most {MAX_VALUE} printable characters")
    words = tuple(dict.fromkeys(raw.split()))
    if len(words) > MAX_WORDS:
        raise _bad("q", f"search for at most {MAX_WORDS} words")
    return " ".join(raw.split()), words


def parse_query(
    b: BoundResource, query: MultiMapping[str] | Mapping[str, str], *, now: datetime | None = None
) -> ListQuery:
    """Every parameter checked against the allow-list: unknown names, wrong types, oversized
    values → Invalid (400); unknown sort keys are ignored (LIST-2, SEC-3)."""
    items = list(query.items())
    if len(items) > MAX_PARAMS:
        raise _bad("query", f"at most {MAX_PARAMS} parameters")
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        if len(value) > MAX_VALUE * 4 or len(name) > 100:
            raise _bad(name[:60], "value too long")
        grouped.setdefault(name, []).append(value)
    conditions: list[Condition] = []
    state: list[tuple[str, str]] = []
    now = now or datetime.now(UTC)
    for name, raw_values in grouped.items():
        values = [v for v in raw_values if v.strip()]  # an empty form field means "no filter"
        if name in RESERVED or not values:
            continue
        conditions += _filter(b, name, values, now)
        state += [(name, v) for v in values]
    q, words = _search(grouped.get("q", [""])[-1])
    ordering, used = _ordering(b, grouped.get("o", [""])[-1])
    per_page = b.resource.list_per_page
    if "per_page" in grouped:
        raw = grouped["per_page"][-1].strip()
        if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= PER_PAGE_MAX:
            raise _bad("per_page", f"a whole number from 1 to {PER_PAGE_MAX}")
        per_page = int(raw)
        state.append(("per_page", raw))
    cursor = grouped.get("cursor", [""])[-1].strip() or None
    last = grouped.get("last", [""])[-1].strip() in ("1", "yes", "true")
    if cursor and last:
        raise _bad("cursor", "give a cursor or last, not both")
    if cursor is not None and len(cursor) > 2000:
        raise _bad("cursor", "this page link is invalid")
    fmt = grouped.get("format", [""])[-1].strip()
    if fmt not in ("", "html", "json"):
        raise _bad("format", "html or json")
    if q:
        state.append(("q", q))
    if used:
        state.append(("o", used))
    return ListQuery(
        tuple(conditions), q, words, ordering, used, cursor, last, per_page, tuple(state)
    )
