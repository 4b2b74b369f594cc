"""`keel build [DIR] -o FILE`: the site's own executable, made from the one running."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.cli.common import common_options, out_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build",
        parents=[common_options()],
        help="build one executable holding Keel and your site",
        description="Check the site project in DIR (manifest, declarations, migrations, "
        "templates) and write one executable holding this Keel and the site. The same "
        "executable and the same project always give the same bytes. Needs only this "
        "executable and its Python: no pip, no network. Tables and columns the declarations "
        "name are checked against the database by `migrate`, `serve` and `doctor`.",
        epilog="Example: keel build ~/acme -o /tmp/acme   then   /tmp/acme version",
    )
    p.add_argument(
        "directory",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the site project (default: the current directory)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        default=None,
        help="where to write the executable (default: ./dist/<site name>)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.errors import UsageError
    from app.sitebuild import build_site

    directory = args.directory
    # `--site DIR` (an option every command shares) names the project too.
    site = getattr(args, "site", None)
    if site is not None:
        if directory not in (".", site):
            raise UsageError(
                f"two projects named: {directory} and --site {site}",
                why="`keel build` builds one site",
                fix=f"run `keel build {site}`",
            )
        directory = site
    out = out_from(args)
    started = time.monotonic()
    built = build_site(directory, args.output)
    elapsed = time.monotonic() - started
    if args.json:
        out.json(
            {
                "output": str(built.output),
                "site_name": built.site_name,
                "site_version": built.site_version,
                "build_id": built.build_id,
                "keel_version": built.keel_version,
                "keel_build_id": built.keel_build_id,
                "files": built.files,
                "size": built.size,
                "sha256": built.sha256,
                "seconds": round(elapsed, 2),
            }
        )
        return 0
    for line in built.summary():
        out.result(line)
    out.line(f"  took      {elapsed:.1f} s")
    out.next_step(
        f"copy {built.output.name} to the host, then `{built.output.name} migrate` and "
        f"`{built.output.name} serve` (`keel docs your-tables`)"
    )
    return 0
