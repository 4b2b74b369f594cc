"""`keel import RESOURCE FILE`: preview a CSV import, or apply it (EDIT-10); thin over
app/admin/importing.py, the service the admin's import pages use."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import common_options, config_from, out_from, run_async
from app.cli.output import Out
from app.config import Config
from app.errors import NotFound, UsageError

if TYPE_CHECKING:
    from app.admin.importing import Plan, Preview
    from app.admin.resources import BoundResource

SHOWN_ERRORS = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        parents=[common_options()],
        help="import rows of a resource from a CSV file (preview first)",
        description="Read FILE (CSV with a header row), map its columns to the fields of "
        "RESOURCE by name or label, and check every row with the edit form's rules. Without "
        "--apply nothing is written: the report shows the mapping and the rows with errors. "
        "--apply writes every row or none, in one transaction; --apply-valid writes the "
        "valid rows and skips the others. Rows whose key matches a record update it.",
    )
    p.add_argument("resource", metavar="RESOURCE", help="the resource's slug, e.g. customers")
    p.add_argument("file", metavar="FILE", help="the CSV file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--apply", action="store_true", help="write every row, or none if any row has errors"
    )
    mode.add_argument(
        "--apply-valid", action="store_true", help="write the valid rows, skip the others"
    )
    p.add_argument(
        "--key",
        metavar="FIELD",
        help="match existing records by this field (the primary key or the declared natural "
        "key); 'none' adds every row; default: the natural key, else the primary key, when "
        "the file has it",
    )
    p.add_argument(
        "--map",
        metavar="COLUMN=FIELD",
        action="append",
        default=[],
        help="fill FIELD from the file's COLUMN (repeatable); FIELD empty ignores the column",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(
            f"{args.file[:200]} is not a file",
            fix="give the path of a CSV file with a header row",
        )
    config = config_from(args)
    return run_async(_run(config, out_from(args), args, path))


def _plan(bound: BoundResource, header: list[str], args: argparse.Namespace) -> Plan:
    from app.admin import importing

    mapping = importing.auto_mapping(bound, header)
    fields = importing.importable(bound)
    for item in args.map:
        column, sep, name = item.partition("=")
        if not sep or column.strip() not in header:
            raise UsageError(
                f"--map {item[:80]!r} names no column of the file",
                fix=f"write COLUMN=FIELD with COLUMN one of: {', '.join(header)[:300]}",
            )
        if name and name not in fields:
            raise UsageError(
                f"--map {item[:80]!r}: {name[:60]!r} is not a field that can be imported",
                fix=f"use one of: {', '.join(fields)}",
            )
        mapping[header.index(column.strip())] = name
    if args.key is None:
        key = importing.default_key(bound, mapping)
    elif args.key == "none":
        key = ""
    else:
        key = importing.key_option(bound, args.key)
    return importing.Plan(tuple(mapping), key)


def _report(out: Out, report: Preview, slug: str, args: argparse.Namespace) -> int:
    """The preview: mapping problems, counts, the first rows with errors; nothing written."""
    for problem in report.problems:
        out.warn(problem)
    if report.problems:
        return 1
    out.result(f"{report.total} rows: {report.valid} valid, {report.invalid} with errors")
    for row in report.error_rows[:SHOWN_ERRORS]:
        where = "; ".join(f"{k or 'row'}: {v}" for k, v in row.errors.items())
        out.result(f"  row {row.line}: {where}")
    if report.invalid > SHOWN_ERRORS:
        out.result(f"  … and {report.invalid - SHOWN_ERRORS} more rows with errors")
    out.next_step(
        f"keel import {slug} {args.file} --apply"
        + ("-valid" if report.invalid else "")
        + "   (nothing was written)"
    )
    return 1 if report.invalid else 0


async def _run(config: Config, out: Out, args: argparse.Namespace, path: Path) -> int:
    from app.admin import importing
    from app.admin.setup import check_declarations, refuse_errors
    from app.cli.actor import cli_context
    from app.db.pool import connect

    async with connect(config) as conn:
        bound_all, problems = await check_declarations(conn)
        refuse_errors(problems)
        bound = bound_all.get(args.resource)
        if bound is None:
            raise NotFound(
                f"there is no resource called {args.resource[:60]!r}",
                fix=f"use one of: {', '.join(bound_all) or '(none declared)'}",
            )
        header = importing.read_header(path)
        plan = _plan(bound, header, args)
        for name, field in zip(header, plan.mapping, strict=True):
            out.result(f"  {importing.shown(name)!r} → {field or '(ignored)'}")
        matched = importing.key_choices(bound).get(plan.key, ())
        out.result(f"match existing records by: {', '.join(matched) or 'nothing (add every row)'}")
        if not (args.apply or args.apply_valid):
            return _report(out, await importing.preview(bound, path, plan), bound.slug, args)
        upload = importing.Upload("", path, importing.clean_filename(path.name), "", bound.slug, 0)
        result = await importing.apply_import(
            conn,
            cli_context(config),
            bound,
            upload,
            plan,
            mode="valid" if args.apply_valid else "all",
        )
    out.ok(
        f"imported {path.name}: {result.inserted} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.skipped} skipped"
    )
    return 0
