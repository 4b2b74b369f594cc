"""`keel new DIR`: write a site project (empty, the demo as an example, or from a database)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import common_options, out_from, run_async
from app.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "new",
        parents=[common_options()],
        help="write a new site project: your tables' declarations, migrations, templates",
        description="Write a site project into DIR: site.toml, resources.py, migrations/, "
        "templates/, static/, a keel.toml for local development, a README and a .gitignore. "
        "With --from-database, one declaration per existing table.",
    )
    p.add_argument("directory", metavar="DIR", help="the project directory (new or empty)")
    p.add_argument("--name", help="the site's name (default: from DIR, e.g. acme_ops)")
    p.add_argument("--title", help="the title shown in the admin's header")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--example", action="store_true", help="the demo's service desk, as a project to learn from"
    )
    source.add_argument(
        "--from-database",
        metavar="URL",
        help="read the tables of an existing PostgreSQL database (nothing is written to it) "
        "and declare each of them",
    )
    p.add_argument(
        "--schema",
        action="append",
        default=[],
        metavar="S",
        help="with --from-database: only this schema (repeat for several; default: every "
        "schema but the system ones)",
    )
    p.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="T",
        help="with --from-database: only this table or view (repeat; schema.table allowed)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.scaffold import write_project

    out = out_from(args)
    if (args.schema or args.table) and not args.from_database:
        raise UsageError(
            "--schema and --table need --from-database",
            why="they choose which existing tables to declare",
            fix="add --from-database postgresql://…",
        )
    target = Path(args.directory)
    if args.from_database:
        source = run_async(_declarations(args.from_database, args.schema, args.table))
        project = write_project(
            target,
            name=args.name,
            title=args.title,
            resources_source=source,
            database_url=args.from_database,
        )
        out.ok(f"declared {project.resources} table(s) from the database in resources.py")
    else:
        project = write_project(target, name=args.name, title=args.title, example=args.example)
        if args.example:
            out.ok(f"the service-desk example: {project.resources} resources and their migration")
    out.ok(f"wrote the site project {project.name!r} in {project.root}")
    out.line(f"  cd {project.root}")
    out.line("  keel --config keel.toml migrate        # Keel's tables, then yours")
    out.line("  keel --config keel.toml user create --email you@example.com --role administrator")
    out.line("  keel --config keel.toml serve --dev    # http://127.0.0.1:8000")
    out.next_step(f"read {project.root / 'README.md'}")
    return 0


async def _declarations(url: str, schemas: list[str], tables: list[str]) -> str:
    """resources.py for the database at `url`; only the catalog is read."""
    from app.admin.introspect import generate_declarations
    from app.config import load_config
    from app.db.pool import connect

    config = load_config(env={}, flags={"database_url": url})
    async with connect(config) as conn:
        return await generate_declarations(conn, schemas or None, tables or None)
