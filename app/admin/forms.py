"""Create/edit forms from the catalog: field specs and typed parsing, no HTML (EDIT-1, EDIT-3, SEC-3)."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from app.admin import types

# Types a form never shows. None: a type the form cannot edit (a search vector, bytes, an
# array…) is shown read-only as its text, with the reason (app/admin/types.py).
HIDDEN_TYPES: frozenset[str] = frozenset()
INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
TEXT_TYPES = frozenset({"text", "varchar", "character varying", "char", "bpchar", "citext"})
# Column names whose text is long by nature: a textarea rather than one line (EDIT-1).
LONG_TEXT = re.compile(
    r"(^|_)(notes?|description|body|comments?|details|message|content|bio|address)$"
)
EMAIL_NAME = re.compile(r"(^|_)e?mail$")
PHONE_NAME = re.compile(r"(^|_)(phone|mobile|tel)$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# One-line inputs take no control characters (C0, DEL, C1) nor lone surrogates, which
# PostgreSQL cannot store; textareas keep tab and newlines.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_TEXT = 100_000  # beyond max_body_size anyway; a clear message beats a 413 for one field
WIDGETS = frozenset(
    {
        "text",
        "textarea",
        "number",
        "checkbox",
        "date",
        "datetime-local",
        "time",
        "email",
        "tel",
        "select",
        "autocomplete",
        "json",
        "uuid",
    }
)


class ForeignKeyLike(Protocol):
    @property
    def target_table(self) -> str: ...
    @property
    def target_column(self) -> str: ...


class ColumnLike(Protocol):
    """The catalog column contract (app/db/catalog.py) as far as forms need it."""

    @property
    def name(self) -> str: ...
    @property
    def type_name(self) -> str: ...
    @property
    def max_length(self) -> int | None: ...
    @property
    def numeric_precision(self) -> int | None: ...
    @property
    def numeric_scale(self) -> int | None: ...
    @property
    def nullable(self) -> bool: ...
    @property
    def has_default(self) -> bool: ...
    @property
    def default(self) -> str | None: ...
    @property
    def is_identity(self) -> bool: ...
    @property
    def is_generated(self) -> bool: ...
    @property
    def choices(self) -> tuple[str, ...] | None: ...
    @property
    def fk(self) -> Any: ...


@dataclass(frozen=True)
class FieldSpec:
    """Everything a template needs to draw one input and the parser needs to read it back."""

    name: str
    label: str
    widget: str
    type_name: str
    required: bool = False
    nullable: bool = True
    has_default: bool = False
    readonly: bool = False
    maxlength: int | None = None
    step: str | None = None
    min: str | None = None
    max: str | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    fk_table: str | None = None
    fk_column: str | None = None
    # A constant default as the input shows it ("junior", "0", "on"); None when there is none
    # or it is an expression such as now(), which the database computes on insert.
    default: str | None = None
    # Shown under the field of a create form when the database fills an empty field.
    default_help: str = ""


@dataclass
class ParsedForm:
    """Typed values of the writable fields, per-field errors, and the raw text to redisplay."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def humanize(name: str) -> str:
    text = name.replace("_", " ").strip()
    if text.endswith(" id") and len(text) > 3:
        text = text[:-3]
    return text[:1].upper() + text[1:]


def widget_for(column: ColumnLike, override: str | None = None) -> str:
    """The input kind for a column: declared override first, then by type and name (EDIT-1)."""
    if override:
        return override
    t = column.type_name
    if types.is_opaque(column):
        return "textarea"  # read-only text, possibly long
    if column.fk is not None:
        return "autocomplete"
    if column.choices:
        return "select"
    if t == "boolean":
        return "checkbox"
    if t in INT_RANGES or t in ("numeric", "real", "double precision"):
        return "number"
    if t == "date":
        return "date"
    if t in ("timestamptz", "timestamp"):
        return "datetime-local"
    if t in ("time", "timetz"):
        return "time"
    if t in ("json", "jsonb"):
        return "json"
    if t == "uuid":
        return "uuid"
    if EMAIL_NAME.search(column.name):
        return "email"
    if PHONE_NAME.search(column.name):
        return "tel"
    if t == "text" and LONG_TEXT.search(column.name):
        return "textarea"
    return "text"


def _numeric_bounds(column: ColumnLike) -> tuple[str | None, str | None, str | None]:
    """step/min/max for number inputs: step from the numeric scale (EDIT-1)."""
    t = column.type_name
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return "1", str(lo), str(hi)
    if t == "numeric":
        scale = column.numeric_scale
        step = "any" if scale is None else ("1" if scale == 0 else f"0.{'0' * (scale - 1)}1")
        if column.numeric_precision is not None and scale is not None:
            limit = "9" * (column.numeric_precision - scale) or "0"
            frac = "9" * scale
            top = f"{limit}.{frac}" if scale else limit
            return step, f"-{top}", top
        return step, None, None
    return "any", None, None


# How PostgreSQL prints a constant default (pg_get_expr): a quoted literal with a cast, a
# number (negative ones in parentheses or quoted), a boolean, NULL.
_QUOTED_DEFAULT = re.compile(r"^'((?:[^']|'')*)'::[\w \[\]\".(),]+$")
_NUMBER_DEFAULT = re.compile(r"^\(?(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\)?(?:::[\w ]+)?$")
# Expressions an operator knows by what they give, not by their SQL.
_FILLED_AS = {
    "now()": "the time of saving",
    "CURRENT_TIMESTAMP": "the time of saving",
    "LOCALTIMESTAMP": "the time of saving",
    "clock_timestamp()": "the time of saving",
    "statement_timestamp()": "the time of saving",
    "transaction_timestamp()": "the time of saving",
    "CURRENT_DATE": "the day of saving",
    "CURRENT_TIME": "the time of saving",
    "LOCALTIME": "the time of saving",
    "gen_random_uuid()": "a new random id",
    "uuid_generate_v4()": "a new random id",
}
KEEL_FILLED_HELP = "Leave empty for the time of saving."


def constant_default(spec: FieldSpec, expr: str | None) -> str | None:
    """The form text of a constant default (`'junior'::text` → "junior", `true` → "on"), or
    None for none, NULL, or an expression the database must compute when the row is inserted."""
    if expr is None:
        return None
    text = expr.strip()
    quoted = _QUOTED_DEFAULT.match(text)
    number = _NUMBER_DEFAULT.match(text)
    if quoted:
        literal = quoted.group(1).replace("''", "'")
    elif number:
        literal = number.group(1)
    elif text.lower() in ("true", "false"):
        literal = text.lower()
    else:
        return None  # NULL, now(), nextval(…), any other expression
    try:
        return format_value(spec, parse_value(spec, literal))
    except (FieldError, ValueError):
        return None  # a literal the form cannot show faithfully: left to the database


def default_help(column: ColumnLike, constant: str | None) -> str:
    """What an empty field becomes on insert, for an expression default: "Leave empty for …"."""
    expr = (column.default or "").strip()
    if not column.has_default or constant is not None or expr.upper().startswith("NULL"):
        return ""
    if expr.startswith("nextval("):
        return "Leave empty for the next number."
    what = _FILLED_AS.get(expr) or _FILLED_AS.get(expr.split("::")[0]) or f"the default ({expr})"
    return f"Leave empty for {what[:80]}."


def field_for(
    column: ColumnLike,
    *,
    label: str | None = None,
    help: str = "",
    widget: str | None = None,
    readonly: bool = False,
    keel_filled: bool = False,
) -> FieldSpec:
    """`keel_filled`: Keel fills the column on insert (a `created_at` without a default, see
    writes.insert_row), so like a column with a default it may be left empty when creating."""
    kind = widget_for(column, widget)
    step = lo = hi = None
    if kind == "number":
        step, lo, hi = _numeric_bounds(column)
    elif kind in ("datetime-local", "time"):
        # Shown to the second (the control refuses six decimals, see format_value): step 1
        # lets the browser show and accept those seconds.
        step = "1"
    # Identity and generated columns are the database's to fill (EDIT-3); types the form
    # cannot edit are shown as text, with the reason.
    reason = types.readonly_reason(column)
    locked = readonly or column.is_identity or column.is_generated or reason is not None
    has_default = column.has_default or keel_filled
    required = not column.nullable and not has_default and kind != "checkbox"
    tz_help = " (UTC)" if kind == "datetime-local" else ""
    spec = FieldSpec(
        name=column.name,
        label=label or humanize(column.name),
        widget=kind,
        type_name=column.type_name,
        required=required and not locked,
        nullable=column.nullable,
        has_default=has_default,
        readonly=locked,
        maxlength=column.max_length,
        step=step,
        min=lo,
        max=hi,
        choices=tuple(column.choices or ()),
        help=" ".join(p for p in (help + tz_help, reason or "") if p).strip(),
        fk_table=getattr(column.fk, "target_table", None) if column.fk is not None else None,
        fk_column=getattr(column.fk, "target_column", None) if column.fk is not None else None,
    )
    if locked or not has_default:
        return spec
    constant = constant_default(spec, column.default) if column.has_default else None
    filled = KEEL_FILLED_HELP if keel_filled and not column.has_default else ""
    return replace(spec, default=constant, default_help=filled or default_help(column, constant))


def build_fields(
    columns: Sequence[ColumnLike],
    *,
    readonly_fields: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    help_texts: Mapping[str, str] | None = None,
    widgets: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
    keel_filled: Sequence[str] = (),
) -> tuple[FieldSpec, ...]:
    """One FieldSpec per editable or displayable column, in `order` first, then table order."""
    by_name = {c.name: c for c in columns if c.type_name not in HIDDEN_TYPES}
    names = [n for n in order if n in by_name] + [n for n in by_name if n not in order]
    labels, help_texts, widgets = labels or {}, help_texts or {}, widgets or {}
    return tuple(
        field_for(
            by_name[n],
            label=labels.get(n),
            help=help_texts.get(n, ""),
            widget=widgets.get(n) if widgets.get(n) in WIDGETS else None,
            readonly=n in readonly_fields,
            keel_filled=n in keel_filled,
        )
        for n in names
    )


def defaults(fields: Sequence[FieldSpec]) -> dict[str, str]:
    """A create form's starting values: the constant defaults (an expression stays empty)."""
    return {f.name: f.default for f in fields if f.default is not None and not f.readonly}


class FieldError(ValueError):
    """A value that does not fit its column; the message is shown next to the field."""


def _parse_int(spec: FieldSpec, text: str) -> int:
    if not re.fullmatch(r"[+-]?\d{1,20}", text):
        raise FieldError("Enter a whole number.")
    value = int(text)
    lo, hi = INT_RANGES.get(spec.type_name, INT_RANGES["bigint"])
    if not lo <= value <= hi:
        raise FieldError(f"Enter a number between {lo} and {hi}.")
    return value


def _parse_decimal(spec: FieldSpec, text: str) -> Decimal:
    if len(text) > 60:
        raise FieldError("Enter a shorter number.")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise FieldError("Enter a number.") from None
    if not value.is_finite():
        raise FieldError("Enter a finite number.")
    if spec.max is not None and spec.min is not None:
        if not Decimal(spec.min) <= value <= Decimal(spec.max):
            raise FieldError(f"Enter a number between {spec.min} and {spec.max}.")
        places = len(spec.max.partition(".")[2])
        if value != value.quantize(Decimal(1).scaleb(-places)):
            raise FieldError(f"Use at most {places} decimal places.")
    return value


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FieldError("Enter a number.") from None
    if not math.isfinite(value):
        raise FieldError("Enter a finite number.")
    return value


def _parse_datetime(text: str) -> datetime:
    # datetime-local sends no zone: forms show and read UTC (docs/editing.md).
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise FieldError("Enter a date and time like 2024-05-31T14:30.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_text(spec: FieldSpec, text: str) -> str:
    multiline = spec.widget in ("textarea", "json")
    if (CONTROL_MULTILINE if multiline else CONTROL).search(text):
        raise FieldError("Remove control characters (for example line breaks or NUL).")
    limit = spec.maxlength or MAX_TEXT
    if len(text) > limit:
        raise FieldError(f"Use at most {limit} characters (this has {len(text)}).")
    if spec.widget == "email" and not EMAIL.match(text):
        raise FieldError("Enter an email address like name@example.com.")
    if spec.choices and text not in spec.choices:
        raise FieldError(f"Choose one of: {', '.join(spec.choices)}.")
    return text


def parse_value(spec: FieldSpec, text: str) -> Any:
    """Text from the form → the Python value psycopg sends for this column type."""
    t = spec.type_name
    if spec.widget == "checkbox" or t == "boolean":
        return text.lower() in ("on", "true", "1", "yes")
    if t in INT_RANGES:
        return _parse_int(spec, text)
    if t == "numeric":
        return _parse_decimal(spec, text)
    if t in ("real", "double precision"):
        return _parse_float(text)
    if t == "date":
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise FieldError("Enter a date like 2024-05-31.") from None
    if t in ("timestamptz", "timestamp"):
        value = _parse_datetime(text)
        return value if t == "timestamptz" else value.replace(tzinfo=None)
    if t in ("time", "timetz"):
        try:
            return time.fromisoformat(text)
        except ValueError:
            raise FieldError("Enter a time like 14:30.") from None
    if t == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise FieldError("Enter a UUID like 123e4567-e89b-12d3-a456-426614174000.") from None
    if t in ("inet", "cidr"):
        try:
            return ipaddress.ip_interface(text) if t == "inet" else ipaddress.ip_network(text)
        except ValueError:
            raise FieldError(
                f"Enter an address like 192.0.2.1{'/24' if t == 'cidr' else ''}."
            ) from None
    if t in ("json", "jsonb"):
        _parse_text(spec, text)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FieldError(f"Enter valid JSON ({str(exc)[:80]}).") from None
    return _parse_text(spec, text)


def parse_form(
    fields: Sequence[FieldSpec], data: Mapping[str, str], *, creating: bool
) -> ParsedForm:
    """Read the allow-listed, writable fields from submitted data (SEC-3, EDIT-3).

    Unknown names are ignored and read-only fields are never taken, whatever the POST says.
    On create, an empty field with a database default is left out so the default applies, and
    so is a value equal to the constant default the form started with: the INSERT names only
    the columns the operator changed. On update, a field missing from the POST altogether is
    left unchanged (an unchecked checkbox sends nothing, so a missing checkbox still means
    false)."""
    out = ParsedForm()
    for spec in fields:
        if spec.readonly:
            continue
        raw = data.get(spec.name)
        if raw is None and not creating and spec.widget != "checkbox":
            continue  # absent from the POST (not even empty): left as it is
        if spec.widget == "checkbox":
            # An unchecked box sends nothing: absence means false (docs/design.md).
            checked = raw is not None and bool(parse_value(spec, raw or "on"))
            out.raw[spec.name] = "on" if checked else ""
            if not (creating and spec.default is not None and checked == (spec.default == "on")):
                out.values[spec.name] = checked
            continue
        text = "" if raw is None else str(raw)
        out.raw[spec.name] = text[:MAX_TEXT]
        if spec.widget not in ("textarea", "json"):
            text = text.strip()
        if text == "":
            if creating and (spec.has_default or spec.nullable):
                continue  # left to the database: its default, or NULL
            if spec.nullable:
                out.values[spec.name] = None
            elif (
                spec.type_name in TEXT_TYPES
                and (spec.has_default or not creating)
                and not spec.choices
            ):
                # An empty text is a value NOT NULL allows: a stored "" saves unchanged.
                out.values[spec.name] = ""
            else:
                out.errors[spec.name] = "This field is required."
            continue
        try:
            value = parse_value(spec, text)
        except FieldError as exc:
            out.errors[spec.name] = str(exc)
            continue
        if creating and spec.default is not None and _is_default(spec, value):
            continue  # as the form showed it: the database's default applies
        out.values[spec.name] = value
    return out


def _is_default(spec: FieldSpec, value: Any) -> bool:
    assert spec.default is not None
    try:
        default = parse_value(spec, spec.default)
    except FieldError:
        return False
    # 1 == True and 0 == False in Python: a type must match too.
    return type(default) is type(value) and bool(default == value)


def format_value(spec: FieldSpec, value: object) -> str:
    """A stored value as the text an input shows (the inverse of parse_value).

    Times are shown to the second: Chromium empties a datetime-local or time input whose value
    has six decimals (`now()` stores microseconds), so the value would vanish from the page.
    Saving such a field untouched keeps the stored fraction (`unchanged` below)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(timespec="seconds")
    if isinstance(value, time):
        return value.isoformat(timespec="seconds")
    if spec.type_name in ("json", "jsonb"):
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)


_WHOLE = re.compile(r"-?\d{1,19}")


def parse_key(column: ColumnLike, text: str) -> Any:
    """A primary key from a URL or a form, typed by its column (SEC-3); FieldError otherwise."""
    t = column.type_name
    if t in INT_RANGES:
        if not _WHOLE.fullmatch(text):
            raise FieldError(f"{text[:40]!r} is not a whole number")
        value = int(text)
        lo, hi = INT_RANGES[t]
        if not lo <= value <= hi:
            raise FieldError(f"{text[:40]!r} is out of range")
        return value
    if t == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise FieldError(f"{text[:40]!r} is not a UUID") from None
    if not text or len(text) > 200 or CONTROL.search(text):
        raise FieldError("a key is 1 to 200 printable characters")
    return text


def unchanged(stored: object, value: object) -> bool:
    """`value`, read from a form, leaves `stored` as it is: equal, or a time the form showed to
    the second (format_value) and sent back untouched, which must not drop the stored fraction."""
    if stored == value:
        return True
    if isinstance(stored, datetime | time) and type(value) is type(stored):
        assert isinstance(value, datetime | time)
        return value.microsecond == 0 and stored.replace(microsecond=0) == value
    return False
