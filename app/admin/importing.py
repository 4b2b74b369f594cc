"""CSV import: uploads kept as temporary files, column mapping, a preview with per-row errors,
and one all-or-nothing apply with one `import_applied` event (EDIT-10).

The same field rules as the edit form (app/admin/forms.py) decide whether a cell is valid, so a
value the form refuses is refused here too. Nothing is written before `apply_import`, which
validates the whole file again (the file, not the preview, is what counts), streams the rows
into a temporary table with COPY, then updates the rows whose key matches and inserts the
others with two set-based statements, and records the event, all in one transaction.

Empty cells: NULL in a nullable column; in a column with a database default, the default when
the row is added and the stored value kept when it is updated; in a required column, an error.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import secrets
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from app import audit, audit_events
from app.admin import csvsafe, forms, writes
from app.admin.resources import BoundResource
from app.errors import Invalid, KeelError, NotFound

MAX_COLUMNS = 300
ERROR_ROWS = 100  # rows with errors the preview lists; the counts cover every row
SAMPLE_ROWS = 20  # valid rows the preview shows
BATCH = 5_000  # rows parsed per step: the parsing runs in a thread, a batch at a time
UPLOAD_MAX_AGE = 24 * 3600  # an upload nobody applied is removed after a day
TOKEN = re.compile(r"^[A-Za-z0-9_-]{24}$")
# One import may run longer than an ordinary statement (the pool's statement_timeout).
STATEMENT_TIMEOUT = "15min"
MODES = ("all", "valid")  # all or nothing; or the valid rows, skipping the others
_BOOL = {"true": True, "t": True, "yes": True, "y": True, "on": True, "1": True}
_BOOL |= {"false": False, "f": False, "no": False, "n": False, "off": False, "0": False}
_ROW = "_keel_row_"


class TooLarge(KeelError):
    """The upload passed `import_max_size`; what was received is already deleted."""

    def __init__(self, limit: int) -> None:
        mib = limit / (1 << 20)
        super().__init__(
            f"The file is larger than the import limit of {mib:g} MiB.",
            why="Uploads are capped so that one file cannot fill the server's disk; the "
            "upload was stopped and what arrived was deleted.",
            fix="Split the file into smaller ones and import each, or ask the operator to "
            "raise import_max_size (or use `keel import` on the server).",
            exit_code=1,
            http_status=413,
        )


# ---- uploads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """An uploaded file waiting for its preview and apply, owned by one user and resource."""

    token: str
    path: Path
    filename: str
    owner: str
    resource: str
    size: int


def upload_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "keel-imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def clean_filename(name: str | None) -> str:
    """The name shown and audited: the last path segment, printable, at most 120 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:120].strip()
    return base or "upload.csv"


class UploadSink:
    """Receives an upload chunk by chunk into a private temporary file, never in memory, and
    stops (deleting the file) as soon as it passes the cap."""

    def __init__(self, owner: str, resource: str, filename: str, cap: int) -> None:
        sweep_uploads()
        self.token = secrets.token_urlsafe(18)
        self.path = upload_dir() / f"{self.token}.csv"
        self.owner, self.resource, self.cap = owner, resource, cap
        self.filename = clean_filename(filename)
        self.size = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            self.abort()
            raise TooLarge(self.cap)
        self._file.write(chunk)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def finish(self) -> Upload:
        self._file.close()
        meta = {
            "owner": self.owner,
            "resource": self.resource,
            "filename": self.filename,
            "size": self.size,
        }
        self.path.with_suffix(".json").write_text(json.dumps(meta))
        return Upload(self.token, self.path, self.filename, self.owner, self.resource, self.size)


def find_upload(token: str, owner: str, resource: str) -> Upload:
    """The upload `token` names, if it is this owner's for this resource; NotFound otherwise
    (someone else's upload is not found either: tokens are not shared)."""
    gone = NotFound(
        "This upload is no longer available.",
        why="Uploads are kept for a day, are removed once applied, and belong to whoever "
        "uploaded them.",
        fix="Upload the file again.",
    )
    if not TOKEN.match(token):
        raise gone
    base = upload_dir() / token
    try:
        meta = json.loads(base.with_suffix(".json").read_text())
    except (OSError, ValueError):
        raise gone from None
    path = base.with_suffix(".csv")
    if meta.get("owner") != owner or meta.get("resource") != resource or not path.exists():
        raise gone
    return Upload(token, path, str(meta["filename"]), owner, resource, int(meta["size"]))


def discard_upload(upload: Upload) -> None:
    upload.path.unlink(missing_ok=True)
    upload.path.with_suffix(".json").unlink(missing_ok=True)


def sweep_uploads(max_age: float = UPLOAD_MAX_AGE) -> None:
    """Removes uploads older than `max_age` seconds (called on each new upload)."""
    cutoff = time.time() - max_age
    for path in upload_dir().glob("*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        except OSError:
            continue


# ---- reading the file ---------------------------------------------------------------------


def _open(path: Path) -> Any:
    # utf-8-sig drops the byte-order mark spreadsheets write; newline="" as csv requires.
    return open(path, encoding="utf-8-sig", errors="strict", newline="")


def _delimiter(first_line: str) -> str:
    """Comma unless the header line clearly uses semicolons or tabs (European spreadsheets)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _unreadable(why: str) -> Invalid:
    return Invalid(
        "The file could not be read as CSV.",
        why=why,
        fix="Save it from the spreadsheet as CSV (UTF-8, comma separated), with a header row.",
    )


def read_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line-numbered row, cells) for every row after the header; row 2 is the first data row,
    as a spreadsheet numbers it."""
    try:
        with _open(path) as f:
            first = f.readline()
            f.seek(0)
            reader = csv.reader(f, delimiter=_delimiter(first), strict=True)
            next(reader, None)
            for n, cells in enumerate(reader, start=2):
                if cells and any(c.strip() for c in cells):
                    yield n, cells
    except UnicodeDecodeError as exc:
        raise _unreadable(f"It is not UTF-8 text (byte {exc.start} of a line).") from None
    except csv.Error as exc:
        raise _unreadable(f"Malformed CSV: {str(exc)[:160]}.") from None


def read_header(path: Path) -> list[str]:
    try:
        with _open(path) as f:
            first = f.readline()
            f.seek(0)
            header = next(csv.reader(f, delimiter=_delimiter(first), strict=True), None)
    except UnicodeDecodeError:
        raise _unreadable("It is not UTF-8 text.") from None
    except csv.Error as exc:
        raise _unreadable(f"Malformed CSV: {str(exc)[:160]}.") from None
    if not header or not any(h.strip() for h in header):
        raise _unreadable("The first line, which names the columns, is empty.")
    if len(header) > MAX_COLUMNS:
        raise _unreadable(f"It has {len(header)} columns; at most {MAX_COLUMNS} are read.")
    return [csvsafe.restore(h.strip())[:200] for h in header]


# ---- fields and mapping -------------------------------------------------------------------


def field_specs(bound: BoundResource) -> tuple[forms.FieldSpec, ...]:
    """The edit form's fields for this resource: the same specs, so the same rules."""
    r = bound.resource
    return forms.build_fields(
        bound.table.columns,
        readonly_fields=r.readonly_fields,
        labels={c.name: bound.label(c.name) for c in bound.table.columns},
        help_texts=r.help_texts,
        widgets=r.widgets,
        keel_filled=writes.keel_filled(bound.table),
    )


def importable(bound: BoundResource) -> dict[str, forms.FieldSpec]:
    """Field name → spec of every column a file may fill: the writable form fields, and the
    primary key (read-only in forms) so that rows can be matched by it."""
    out = {}
    for spec in field_specs(bound):
        col = bound.table.column(spec.name)
        if col is None or col.is_generated:
            continue
        if spec.name in bound.key and not bound.composite and col.fk is None:
            # An identity key is the database's on the form, but a file names existing rows by it.
            out[spec.name] = replace(spec, readonly=False, required=False)
        elif not spec.readonly:
            out[spec.name] = spec
    return out


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s_\-.]+", "", text)


def auto_mapping(bound: BoundResource, header: Sequence[str]) -> list[str]:
    """Per file column, the field it fills ("" for none): by column name or label, ignoring
    case, spaces, underscores and hyphens; each field taken by its first matching column."""
    names: dict[str, str] = {}
    for name, spec in importable(bound).items():
        names.setdefault(_norm(name), name)
        names.setdefault(_norm(spec.label), name)
    out, taken = [], set()
    for h in header:
        name = names.get(_norm(h), "")
        if name in taken:
            name = ""
        taken.add(name)
        out.append(name)
    return out


def key_choices(bound: BoundResource) -> dict[str, tuple[str, ...]]:
    """How rows can be matched: "pk", and "natural" when the resource declares one."""
    out: dict[str, tuple[str, ...]] = {}
    if bound.keyed and not bound.composite:
        out["pk"] = bound.key
    if bound.resource.natural_key:
        out["natural"] = bound.resource.natural_key
    return out


def key_option(bound: BoundResource, name: str) -> str:
    """The key option for `--key FIELD`: a field of the primary or the natural key."""
    for option, cols in key_choices(bound).items():
        if name in cols or name == option:
            return option
    raise Invalid(
        f"{bound.title} rows cannot be matched by {name[:60]!r}.",
        why="rows are matched by the primary key or by a declared natural key",
        fix="use one of: " + ", ".join(c for cols in key_choices(bound).values() for c in cols)
        if key_choices(bound)
        else "leave the key out: every row is added",
    )


@dataclass(frozen=True)
class Plan:
    """What the operator chose: which field each column fills, how rows are matched."""

    mapping: tuple[str, ...]  # per column: a field name or ""
    key: str = ""  # "" (add every row), "pk" or "natural"

    def fields(self) -> list[str]:
        return [f for f in self.mapping if f]


def default_key(bound: BoundResource, mapping: Sequence[str]) -> str:
    """The natural key when the file fills it, else the primary key when it does, else none;
    but a database-numbered primary key in the file can only be matched by."""
    if _generated_key(bound) and bound.pk in mapping:
        return "pk"
    for option, cols in sorted(key_choices(bound).items(), key=lambda kv: kv[0] != "natural"):
        if all(c in mapping for c in cols):
            return option
    return ""


def check_plan(bound: BoundResource, plan: Plan, width: int) -> list[str]:
    """Problems with the mapping itself (not with any one row); empty when it can be applied."""
    fields = importable(bound)
    problems = []
    if len(plan.mapping) != width:
        problems.append("The mapping does not match the file's columns; upload it again.")
        return problems
    used = [f for f in plan.mapping if f]
    unknown = sorted({f for f in used if f not in fields})
    if unknown:
        problems.append(f"{unknown[0]!r} is not a field that can be imported.")
    dupes = sorted({f for f in used if used.count(f) > 1})
    if dupes:
        problems.append(
            f"Two columns fill {fields[dupes[0]].label if dupes[0] in fields else dupes[0]}: choose one."
        )
    if not used:
        problems.append("No column is mapped to a field.")
    choices = key_choices(bound)
    if plan.key and plan.key not in choices:
        problems.append("Choose how rows are matched from the list.")
    elif plan.key and not all(c in used for c in choices[plan.key]):
        names = ", ".join(choices[plan.key])
        problems.append(f"Rows are matched by {names}, but no column fills it.")
    if _generated_key(bound) and bound.pk in used and plan.key != "pk":
        label = fields[bound.pk].label if bound.pk in fields else bound.pk
        problems.append(
            f"{label} is numbered by the database: match rows by it, or ignore that column."
        )
    key_cols = choices.get(plan.key, ())
    missing = [
        s.label
        for n, s in fields.items()
        if s.required and n not in used and n not in key_cols and n not in bound.key
    ]
    if missing and not plan.key:
        problems.append(f"Required fields have no column: {', '.join(missing)}.")
    return problems


# ---- validating rows ----------------------------------------------------------------------


@dataclass
class RowResult:
    line: int
    cells: list[str]
    values: tuple[Any, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)


def _parse_cell(spec: forms.FieldSpec, text: str) -> Any:
    """One cell by the form's rules; None for an empty cell the column can take."""
    if spec.widget not in ("textarea", "json"):
        text = text.strip()
    if text == "":
        if spec.nullable or spec.has_default:
            return None
        if spec.required:
            raise forms.FieldError("This field is required.")
        return None
    if spec.type_name == "boolean" or spec.widget == "checkbox":
        found = _BOOL.get(text.lower())
        if found is None:
            raise forms.FieldError("Enter true or false (yes/no, 1/0 are read too).")
        return found
    return forms.parse_value(spec, text)


class Validator:
    """Checks rows of one file against the plan: cell rules, and keys unique within the file."""

    def __init__(self, bound: BoundResource, plan: Plan) -> None:
        fields = importable(bound)
        self.columns = [(i, fields[f]) for i, f in enumerate(plan.mapping) if f in fields]
        self.names = [s.name for _i, s in self.columns]
        self.key_cols = key_choices(bound).get(plan.key, ())
        self.key_at = [self.names.index(c) for c in self.key_cols]
        self.natural = plan.key == "natural"
        self.seen: dict[tuple[Any, ...], int] = {}
        self.width = len(plan.mapping)

    def check(self, line: int, cells: list[str]) -> RowResult:
        result = RowResult(line, cells)
        if len(cells) != self.width:
            result.errors[""] = f"This row has {len(cells)} cells; the header has {self.width}."
            return result
        values = []
        for i, spec in self.columns:
            try:
                values.append(_parse_cell(spec, csvsafe.restore(cells[i])))
            except forms.FieldError as exc:
                result.errors[spec.name] = str(exc)
                values.append(None)
        result.values = tuple(values)
        if self.key_at and not result.errors:
            key = tuple(result.values[k] for k in self.key_at)
            if any(v is None for v in key):
                if self.natural:
                    result.errors[self.key_cols[0]] = "Needed to find the record."
            elif key in self.seen:
                result.errors[self.key_cols[0]] = f"The same as row {self.seen[key]}."
            else:
                self.seen[key] = line
        return result


def _batches(path: Path, validator: Validator) -> Iterator[list[RowResult]]:
    batch: list[RowResult] = []
    for line, cells in read_rows(path):
        batch.append(validator.check(line, cells))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _each_batch(path: Path, validator: Validator) -> Any:
    """The batches, parsed in a worker thread so the server keeps answering meanwhile."""
    it = _batches(path, validator)
    done = object()
    while (batch := await asyncio.to_thread(next, it, done)) is not done:
        yield batch


@dataclass
class Preview:
    header: list[str]
    plan: Plan
    problems: list[str]  # with the mapping; rows are not checked while there are any
    total: int = 0
    invalid: int = 0
    error_rows: list[RowResult] = field(default_factory=list)
    sample: list[RowResult] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return self.total - self.invalid


async def preview(bound: BoundResource, upload_path: Path, plan: Plan | None = None) -> Preview:
    """Reads the whole file and checks every row; writes nothing."""
    header = await asyncio.to_thread(read_header, upload_path)
    if plan is None:
        mapping = auto_mapping(bound, header)
        plan = Plan(tuple(mapping), default_key(bound, mapping))
    out = Preview(header, plan, check_plan(bound, plan, len(header)))
    if out.problems:
        return out
    async for batch in _each_batch(upload_path, Validator(bound, plan)):
        for row in batch:
            out.total += 1
            if row.errors:
                out.invalid += 1
                if len(out.error_rows) < ERROR_ROWS:
                    out.error_rows.append(row)
            elif len(out.sample) < SAMPLE_ROWS:
                out.sample.append(row)
    return out


def shown(cell: str) -> str:
    """A cell as the preview shows it: formula-like text neutralised, long text cut."""
    text = csvsafe.restore(cell)
    text = text if len(text) <= 200 else text[:199] + "…"
    return csvsafe.neutralise(text)


# ---- applying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    inserted: int
    updated: int
    skipped: int  # rows with errors, left out ("apply the valid rows")
    unchanged: int = 0  # rows that matched a record already holding their values


def _refused(preview_: Preview) -> Invalid:
    first = preview_.error_rows[0]
    where = ", ".join(f"{k or 'row'}: {v}" for k, v in first.errors.items())
    return Invalid(
        f"Nothing was imported: {preview_.invalid} of {preview_.total} rows have errors "
        f"(row {first.line}: {where}).",
        why="An import is applied whole or not at all.",
        fix="Correct those rows and upload the file again, or apply the valid rows only.",
    )


def _ident(bound: BoundResource) -> sql.Composable:
    return sql.Identifier(bound.table.schema, bound.table.name)


def _default_expr(bound: BoundResource, name: str) -> sql.Composable | None:
    """What an empty cell becomes when a row is added: the column's default expression, as
    PostgreSQL's catalog prints it, or Keel's managed timestamp; None for NULL."""
    col = bound.table.column(name)
    if col is None:
        return None
    if col.has_default and col.default and not col.is_identity:
        return sql.SQL(col.default)  # from pg_get_expr: the database's own text
    if name in writes.keel_filled(bound.table):
        return sql.SQL("clock_timestamp()")
    return None


def _generated_key(bound: BoundResource) -> bool:
    """The primary key is the database's to number (identity or a sequence default)."""
    col = bound.column(bound.pk) if bound.keyed and not bound.composite else None
    return col is not None and (col.is_identity or (col.default or "").startswith("nextval("))


async def apply_import(
    conn: psycopg.AsyncConnection[Any],
    ctx: audit.Context,
    bound: BoundResource,
    upload: Upload,
    plan: Plan,
    *,
    mode: str = "all",
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Validates the file again, then writes it in one transaction with one `import_applied`
    event: every row or none (`mode="all"`), or the valid rows only (`mode="valid"`)."""
    if mode not in MODES:
        raise Invalid(f"Unknown import mode {mode[:20]!r}.", fix="use all or valid")
    header = await asyncio.to_thread(read_header, upload.path)
    problems = check_plan(bound, plan, len(header))
    if problems:
        raise Invalid(f"Nothing was imported: {problems[0]}", fix="correct the mapping")
    validator = Validator(bound, plan)
    names = validator.names
    table = bound.table
    # JSON columns need psycopg's wrapper to be sent as JSON (writes.adapt does the same).
    wrap: dict[int, Callable[[Any], Any]] = {}
    for i, n in enumerate(names):
        col = table.column(n)
        if col is not None and col.type_name in ("json", "jsonb"):
            wrap[i] = Jsonb if col.type_name == "jsonb" else Json
    key_cols = list(validator.key_cols)
    skipped = total = 0
    tmp = sql.Identifier("keel_import_rows")
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT))
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT 0::integer AS {}, {} FROM {} "
                    "WITH NO DATA"
                ).format(
                    tmp,
                    sql.Identifier(_ROW),
                    sql.SQL(", ").join(map(sql.Identifier, names)),
                    _ident(bound),
                )
            )
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                tmp, sql.SQL(", ").join(map(sql.Identifier, [_ROW, *names]))
            )
            # One pass: rows are checked as they are sent. In "all" mode the first bad row
            # stops the sending; the rest is only counted for the message, then all rolls back.
            refused = Preview(header, plan, [])
            async with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                async for batch in _each_batch(upload.path, validator):
                    for row in batch:
                        refused.total += 1
                        if row.errors:
                            skipped += 1
                            refused.invalid += 1
                            if not refused.error_rows:
                                refused.error_rows.append(row)
                            continue
                        if refused.invalid and mode == "all":
                            continue
                        values = row.values
                        if wrap:
                            values = tuple(
                                wrap[i](v) if i in wrap and v is not None else v
                                for i, v in enumerate(values)
                            )
                        await copy.write_row((row.line, *values))
                        total += 1
                    if progress is not None:
                        progress(total + skipped)
            if refused.invalid and mode == "all":
                raise _refused(refused)
            await conn.execute(sql.SQL("ANALYZE {}").format(tmp))
            updated = inserted = 0
            if key_cols:
                if plan.key == "pk" and _generated_key(bound):
                    await _refuse_unknown_keys(conn, bound, tmp, key_cols)
                updated = await _update(conn, bound, tmp, names, key_cols)
            inserted = await _insert(conn, bound, tmp, names, key_cols)
            result = Result(inserted, updated, skipped, total - inserted - updated)
            event = audit_events.import_applied(
                bound.slug,
                upload.filename,
                inserted=inserted,
                updated=updated,
                skipped=skipped,
                details={
                    "unchanged": result.unchanged,
                    "matched_by": key_cols,
                    "mode": mode,
                    "columns": names,
                },
            )
            await audit.record(conn, ctx, event)
    except (pgerrors.IntegrityError, pgerrors.DataError) as exc:
        invalid = writes.translate(exc, table)
        reason = next(iter(invalid.fields.values()), invalid.problem)
        detail = (exc.diag.message_detail or exc.diag.message_primary or "")[:200]
        raise Invalid(
            f"Nothing was imported: {reason}",
            why=f"The database refused a row ({detail}). An import is applied whole or not "
            "at all, so no row was written.",
            fix="Correct that row (or the record it collides with) and import the file again.",
        ) from None
    return result


async def _refuse_unknown_keys(
    conn: psycopg.AsyncConnection[Any],
    bound: BoundResource,
    tmp: sql.Identifier,
    key_cols: list[str],
) -> None:
    """A numbered key that names no record: adding it under that number would collide with
    the numbers the database hands out later, so the import stops and says which row."""
    (k,) = key_cols
    cur = await conn.execute(
        sql.SQL(
            "SELECT s.{row}, s.{k} FROM {tmp} s WHERE s.{k} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM {t} t WHERE t.{k} = s.{k}) ORDER BY 1 LIMIT 1"
        ).format(row=sql.Identifier(_ROW), k=sql.Identifier(k), tmp=tmp, t=_ident(bound))
    )
    found = await cur.fetchone()
    if found is not None:
        raise Invalid(
            f"Nothing was imported: row {found[0]} names {bound.title} {k} {found[1]}, "
            "which does not exist.",
            why=f"{k} numbers are given by the database; a row with a new {k} would collide "
            "with the numbers it gives later.",
            fix=f"Leave {k} empty in rows that add new records.",
        )


def _key_match(key_cols: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("t.{} = s.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in key_cols
    )


def _type_of(bound: BoundResource, name: str) -> str:
    col = bound.table.column(name)
    return col.type_name if col is not None else ""


async def _update(
    conn: psycopg.AsyncConnection[Any],
    bound: BoundResource,
    tmp: sql.Identifier,
    names: list[str],
    key_cols: list[str],
) -> int:
    sets, olds, news = [], [], []
    for n in names:
        if n in key_cols or n in bound.key:
            continue
        keep = _default_expr(bound, n) is not None  # an empty cell keeps the stored value
        value = (
            sql.SQL("COALESCE(s.{}, t.{})").format(sql.Identifier(n), sql.Identifier(n))
            if keep
            else sql.SQL("s.{}").format(sql.Identifier(n))
        )
        sets.append(sql.SQL("{} = {}").format(sql.Identifier(n), value))
        # json has no equality operator; its jsonb form compares as the value it stands for.
        cast = sql.SQL("::jsonb" if _type_of(bound, n) == "json" else "")
        olds.append(sql.SQL("t.{}{}").format(sql.Identifier(n), cast))
        news.append(sql.SQL("({}){}").format(value, cast))
    if not sets:
        return 0  # the file names only the key: matching rows are left as they are
    # A row whose values are all as stored is left alone: no new row version, no index entries,
    # no updated_at bump. It counts as unchanged.
    changed = sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
        sql.SQL(", ").join(olds), sql.SQL(", ").join(news)
    )
    if writes._managed(bound.table, writes.MANAGED_UPDATED) and writes.MANAGED_UPDATED not in names:
        sets.append(
            sql.SQL("{} = clock_timestamp()").format(sql.Identifier(writes.MANAGED_UPDATED))
        )
    cur = await conn.execute(
        sql.SQL("UPDATE {} AS t SET {} FROM {} s WHERE {} AND {}").format(
            _ident(bound), sql.SQL(", ").join(sets), tmp, _key_match(key_cols), changed
        )
    )
    return cur.rowcount


async def _insert(
    conn: psycopg.AsyncConnection[Any],
    bound: BoundResource,
    tmp: sql.Identifier,
    names: list[str],
    key_cols: list[str],
) -> int:
    """Adds the rows whose key names no record (all rows when there is no key). Rows with an
    empty database-numbered key are added without it, so the database numbers them."""
    generated = _generated_key(bound)
    inserted = 0
    groups: list[tuple[list[str], sql.Composable]] = []
    unmatched = (
        sql.SQL("NOT EXISTS (SELECT 1 FROM {} t WHERE {})").format(
            _ident(bound), _key_match(key_cols)
        )
        if key_cols
        else sql.SQL("true")
    )
    if generated and bound.pk in names:
        pk = sql.Identifier(bound.pk)
        with_key = sql.SQL("s.{} IS NOT NULL AND {}").format(pk, unmatched)
        groups.append((names, with_key))
        without = sql.SQL("s.{} IS NULL AND {}").format(pk, unmatched)
        groups.append(([n for n in names if n != bound.pk], without))
    else:
        groups.append((names, unmatched))
    for cols, where in groups:
        targets: list[sql.Composable] = []
        exprs: list[sql.Composable] = []
        for n in cols:
            default = _default_expr(bound, n)
            targets.append(sql.Identifier(n))
            exprs.append(
                sql.SQL("COALESCE(s.{}, {})").format(sql.Identifier(n), default)
                if default is not None
                else sql.SQL("s.{}").format(sql.Identifier(n))
            )
        for managed in writes.keel_filled(bound.table):
            if managed not in cols:
                targets.append(sql.Identifier(managed))
                exprs.append(sql.SQL("clock_timestamp()"))
        query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s WHERE {} ORDER BY s.{}").format(
            _ident(bound),
            sql.SQL(", ").join(targets),
            sql.SQL(", ").join(exprs),
            tmp,
            where,
            sql.Identifier(_ROW),
        )
        cur = await conn.execute(query)
        inserted += cur.rowcount
    return inserted


def mapping_from(bound: BoundResource, header: Sequence[str], data: Mapping[str, str]) -> Plan:
    """The plan a preview or apply form sends: `col0`…`colN` (field names) and `key`."""
    fields = importable(bound)
    mapping = []
    for i in range(len(header)):
        value = data.get(f"col{i}", "")
        mapping.append(value if value in fields else "")
    key = data.get("key", "")
    return Plan(tuple(mapping), key if key in key_choices(bound) else "")
