"""`keel new DIR`: write a site project (empty, the demo as an example, or from a database)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import common_options, out_from


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
    p.add_argument(
        "--example", action="store_true", help="the demo's service desk, as a project to learn from"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.scaffold import write_project

    out = out_from(args)
    target = Path(args.directory)
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
