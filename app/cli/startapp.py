"""`keel startapp`: add one table to a site project — its declaration and its migration."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from app import sites
from app.cli.common import common_options, out_from
from app.errors import KeelError, UsageError
from app.names import RESERVED_SLUGS

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CHOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_ .-]{0,62}$")
RESERVED_COLUMNS = frozenset({"id", "created_at", "updated_at"})  # always generated
# type → (SQL type, NOT NULL default or None). `fk:` and `choice:` are handled apart.
TYPES: dict[str, tuple[str, str | None]] = {
    "str": ("varchar(255)", None),
    "text": ("text", "''"),
    "int": ("integer", None),
    "bigint": ("bigint", None),
    "decimal": ("numeric(12,2)", None),
    "bool": ("boolean", "false"),
    "date": ("date", None),
    "datetime": ("timestamptz", None),
    "time": ("time", None),
    "uuid": ("uuid", None),
    "email": ("varchar(254)", None),
    "phone": ("varchar(32)", None),
    "json": ("jsonb", "'{}'"),
}
TYPE_LIST = ", ".join([*TYPES, "fk:<table>", "choice:a,b,c"])
SEARCHABLE = frozenset({"str", "text", "email", "phone"})
FILTERABLE = frozenset({"bool", "date", "datetime", "choice", "fk"})


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # a TYPES key, "fk" or "choice"
    nullable: bool
    target: str = ""  # fk target table
    choices: tuple[str, ...] = ()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "startapp",
        parents=[common_options()],
        help="add a table to a site project: its declaration and its migration",
        description="Write a resource declaration (<project>/<table>.py, added to REGISTRY in "
        "resources.py) and the next numbered migration, for review. Nothing is applied until you "
        "run `keel migrate`.",
        epilog=f"Field types: {TYPE_LIST}. Append ? to a type for an optional (NULL) column, "
        "e.g. --field notes:text?",
    )
    p.add_argument("table", help="table name: lowercase letters, digits, underscores")
    p.add_argument(
        "--field",
        dest="fields",
        action="append",
        default=[],
        metavar="NAME:TYPE",
        help="a column; repeat for each (e.g. --field title:str --field customer_id:fk:customers)",
    )
    p.add_argument(
        "--site-dir",
        metavar="DIR",
        help="the site project to write into (default: --site, else the current directory)",
    )
    p.set_defaults(run=run)


def _bad(problem: str, why: str, fix: str) -> UsageError:
    return UsageError(problem, why=why, fix=fix)


def check_name(what: str, name: str) -> str:
    if not NAME.match(name) or name.startswith(("pg_", "keel_")):
        raise _bad(
            f"{what} name {name[:70]!r} is not allowed",
            why="names become SQL identifiers and URL segments: lowercase letters, digits and "
            "underscores, starting with a letter, at most 63 characters; pg_ and keel_ are reserved",
            fix=f"choose a name like {'service_visits' if what == 'table' else 'due_date'}",
        )
    return name


def parse_field(spec: str) -> Field:
    name, sep, kind = spec.partition(":")
    if not sep or not kind:
        raise _bad(
            f"--field {spec[:70]!r} has no type",
            why="each field is NAME:TYPE",
            fix=f"write e.g. --field title:str; types: {TYPE_LIST}",
        )
    check_name("field", name)
    if name in RESERVED_COLUMNS:
        raise _bad(
            f"field {name!r} is added automatically",
            why="every scaffolded table gets id, created_at and updated_at",
            fix=f"remove --field {name}:…",
        )
    nullable = kind.endswith("?")
    kind = kind.removesuffix("?")
    if kind.startswith("fk:"):
        return Field(name, "fk", nullable, target=check_name("table", kind[3:]))
    if kind.startswith("choice:"):
        choices = tuple(c.strip() for c in kind[7:].split(","))
        if (
            not choices
            or any(not CHOICE.match(c) for c in choices)
            or len(set(choices)) != len(choices)
        ):
            raise _bad(
                f"field {name!r} has bad choices {kind[7:][:70]!r}",
                why="choices are distinct words of letters, digits, space, '.', '_' or '-'",
                fix="write e.g. --field status:choice:open,closed",
            )
        return Field(name, "choice", nullable, choices=choices)
    if kind not in TYPES:
        raise _bad(
            f"field {name!r} has unknown type {kind[:40]!r}",
            why="startapp knows a fixed set of column types",
            fix=f"use one of: {TYPE_LIST}",
        )
    return Field(name, kind, nullable)


def migration_sql(table: str, fields: list[Field], argv: str) -> str:
    """CREATE TABLE with every identifier quoted, so SQL keywords are safe names (RES-3)."""
    from psycopg import sql

    def ident(name: str) -> str:
        return sql.Identifier(name).as_string(None)

    def lit(value: str) -> str:
        return sql.Literal(value).as_string(None)

    t = ident(table)
    cols = ["    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"]
    extra: list[str] = []
    for f in fields:
        c = ident(f.name)
        null = "" if f.nullable else " NOT NULL"
        if f.kind == "fk":
            cols.append(f"    {c} bigint{null} REFERENCES {ident(f.target)} (id)")
            extra.append(f"CREATE INDEX {ident(f'{table}_{f.name}_idx'[:63])} ON {t} ({c});")
        elif f.kind == "choice":
            values = ", ".join(lit(v) for v in f.choices)
            cols.append(f"    {c} text{null} CHECK ({c} IN ({values}))")
        else:
            sqltype, default = TYPES[f.kind]
            fill = f" DEFAULT {default}" if default and not f.nullable else ""
            cols.append(f"    {c} {sqltype}{null}{fill}")
        if f.kind in SEARCHABLE:
            # A trigram index makes `ILIKE '%word%'` search indexable (LIST-6, RES-2 warning).
            extra.append(
                f"CREATE INDEX {ident(f'{table}_{f.name}_trgm_idx'[:63])} ON {t} "
                f"USING gin ({c} gin_trgm_ops);"
            )
    cols.append("    created_at timestamptz NOT NULL DEFAULT now()")
    cols.append("    updated_at timestamptz NOT NULL DEFAULT now()")
    body = ",\n".join(cols)
    if any(f.kind in SEARCHABLE for f in fields):
        extra.insert(0, "CREATE EXTENSION IF NOT EXISTS pg_trgm;")
    lines = [
        f"-- Written by `{argv}`. Review, then apply with `keel migrate`.",
        f"CREATE TABLE {t} (\n{body}\n);",
        *extra,
        "",
    ]
    return "\n".join(lines)


def declaration(table: str, fields: list[Field]) -> str:
    shown = ["id", *[f.name for f in fields][:5]]
    filters = [f.name for f in fields if f.kind in FILTERABLE]
    search = [f.name for f in fields if f.kind in SEARCHABLE]
    title = table.replace("_", " ").capitalize()

    def tup(names: list[str]) -> str:
        inner = ", ".join(f'"{n}"' for n in names)  # names are checked identifiers
        return f"({inner},)" if len(names) == 1 else f"({inner})"

    return (
        f'"""Admin declaration for {table}, written by `keel startapp`; adjust to taste."""\n\n'
        "from app.admin import Resource\n\n"
        f"{table.upper()} = Resource(\n"
        f'    "{table}",\n'
        f'    title="{title}",\n'
        f"    list_display={tup(shown)},\n"
        f"    list_filter={tup(filters)},\n"
        f"    search_fields={tup(search)},\n"
        '    ordering=("-id",),\n'
        '    readonly_fields=("created_at", "updated_at"),\n'
        ")\n"
    )


def project_dir(args: argparse.Namespace) -> Path:
    """The site project to write into: --site-dir, --site, else the current directory.

    Never the site inside an executable: that is an extraction cache the next build replaces."""
    given = args.site_dir or getattr(args, "site", None)
    root = Path(given) if given else Path.cwd()
    if not (root / sites.MANIFEST).is_file():
        raise _bad(
            f"{root} is not a site project (no {sites.MANIFEST})",
            why="startapp writes into your project so you can review and commit the files",
            fix="run it in the directory `keel new` wrote, or give --site-dir DIR",
        )
    return root


def next_number(migrations: Path) -> int:
    numbers = [int(p.name[:4]) for p in migrations.glob("[0-9][0-9][0-9][0-9]_*.sql")]
    return max(numbers, default=0) + 1


def run(args: argparse.Namespace) -> int:
    out = out_from(args)
    table = check_name("table", args.table)
    if table in RESERVED_SLUGS:
        raise _bad(
            f"table name {table!r} is reserved",
            why=f"/admin/{table}/ is a built-in page",
            fix="choose another name, e.g. customer_accounts",
        )
    if not args.fields:
        raise _bad(
            "no fields given",
            why="a table needs at least one column besides id",
            fix="add --field NAME:TYPE, e.g. keel startapp invoices --field number:str",
        )
    fields = [parse_field(s) for s in args.fields]
    names = [f.name for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _bad(
            f"field {dupes[0]!r} is given twice",
            why="column names must be unique",
            fix="remove or rename one",
        )
    site = project_dir(args)
    decl_path = site / f"{table}.py"
    if decl_path.exists():
        raise _bad(
            f"{decl_path} already exists",
            why="startapp never overwrites your code",
            fix="choose another table name or remove the file",
        )
    resources_py = site / sites.DECLARATIONS
    migrations = site / "migrations"
    try:
        registry_text = resources_py.read_text(encoding="utf-8")
        migrations.mkdir(parents=True, exist_ok=True)
        mig_path = migrations / f"{next_number(migrations):04d}_create_{table}.sql"
        argv = "keel startapp " + " ".join([table, *(f"--field {s}" for s in args.fields)])
        mig_path.write_text(migration_sql(table, fields, argv), encoding="utf-8")
        decl_path.write_text(declaration(table, fields), encoding="utf-8")
        # Two plain lines at the end of resources.py: visible in review, easy to move.
        sep = "" if registry_text.endswith("\n") else "\n"
        resources_py.write_text(
            f"{registry_text}{sep}\nfrom .{table} import {table.upper()}  # noqa: E402 - "
            f"added by keel startapp\n\nREGISTRY = register(*REGISTRY, {table.upper()})\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise KeelError(
            f"cannot write into {site}",
            why=exc.strerror or str(exc),
            fix="check the project directory's permissions",
        ) from None
    out.ok(f"wrote {mig_path}")
    out.ok(f"wrote {decl_path}")
    out.ok(f"added {table.upper()} to REGISTRY in {resources_py}")
    out.next_step("review the three files, then `keel migrate`")
    return 0
