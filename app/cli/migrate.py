"""`keel migrate`: apply embedded migrations; `--status` and `--plan` (DB-1..4)."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.common import common_options, config_from, out_from, run_async
from app.cli.output import Out
from app.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        parents=[common_options()],
        help="apply pending database migrations",
        description="Apply pending migrations, each in its own transaction, under an advisory lock.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="list applied and pending migrations")
    mode.add_argument(
        "--plan", action="store_true", help="print the SQL that would run, without running it"
    )
    p.add_argument("--json", action="store_true", help="with --status: machine-readable output")
    p.add_argument("--database-url", metavar="URL", help="override database_url")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args, database_url=args.database_url)
    out = out_from(args)
    if args.status:
        return run_async(_status(config, out, args.json))
    if args.plan:
        return run_async(_plan(config, out))
    if config.pgbouncer and not args.database_url:
        from app.errors import KeelError

        raise KeelError(
            "`keel migrate` needs a direct connection to PostgreSQL, and pgbouncer is set",
            why="it holds a session lock while it works; PgBouncer in transaction mode hands"
            " each transaction to any server connection, which would lose or leak that lock",
            fix="give it PostgreSQL's own address: keel migrate --database-url"
            " postgresql://keel@db.internal:5432/keel",
        )
    return run_async(_apply(config, out))


async def _status(config: Config, out: Out, as_json: bool) -> int:
    from app.db import migrate
    from app.db.pool import connect

    async with connect(config) as conn:
        states = await migrate.status(conn)
        version = await migrate.schema_version(conn)
    if as_json:
        out.json(
            {
                "schema": version,
                "migrations": [
                    {
                        "version": s.version,
                        "file": s.migration.filename if s.migration else None,
                        "state": s.state,
                        "applied_at": s.applied_at or None,
                    }
                    for s in states
                ],
            }
        )
    else:
        marks = {"applied": "✓", "pending": "·", "modified": "✗", "unknown": "!"}
        for s in states:
            name = (
                s.migration.filename if s.migration else f"{s.version} (no such file in this build)"
            )
            out.result(f"{marks[s.state]} {s.state:<8} {name:<48} {s.applied_at}")
        waiting = sum(1 for s in states if s.state == "pending")
        out.line(f"Schema {version}; {waiting} pending.")
        if waiting:
            out.next_step("keel migrate")
    return 1 if any(s.state == "modified" for s in states) else 0


async def _plan(config: Config, out: Out) -> int:
    from app.db import migrate
    from app.db.pool import connect

    async with connect(config) as conn:
        todo = await migrate.pending(conn)
    if not todo:
        out.line("Nothing to apply: the database is up to date.")
    else:
        out.result(migrate.plan_text(todo))
    return 0


async def _apply(config: Config, out: Out) -> int:
    from app import sites
    from app.config import secret_key_problem
    from app.db import migrate
    from app.db.pool import connect

    site = sites.active()
    if site is not None:
        site.registry()  # a project whose declarations cannot load changes nothing
    async with connect(config) as conn:
        applied = await migrate.migrate(conn, progress=out.line)
        version = await migrate.schema_version(conn)
        if applied:
            out.ok(f"applied {len(applied)} migration(s); schema is now {version}")
        else:
            out.ok(f"the database is up to date (schema {version})")
        if secret_key_problem(config.secret_key) is None:
            await _grant_defaults(config, conn, out)
        else:
            out.line("  (default access for new resources is granted when `keel serve` starts)")
        administrators = await _active_administrators(conn)
    if administrators:
        out.next_step("keel serve")
    else:
        out.next_step("keel user create --email you@example.com --role administrator")
    return 0


async def _grant_defaults(config: Config, conn: Any, out: Out) -> None:
    from app.authority import groups
    from app.cli.actor import cli_context

    ctx = cli_context(config)
    if await groups.ensure_default_groups(conn, ctx):
        out.ok("created the groups administrator, editor and viewer")
    for slug, group, perms in await groups.grant_resource_defaults(conn, ctx):
        out.ok(f"group {group} may now {', '.join(p.split('.')[1] for p in perms)} {slug}")


async def _active_administrators(conn: Any) -> int:
    from app.authority import users

    return await users.count_active(conn, "administrator") + await users.count_active(
        conn, "developer"
    )
