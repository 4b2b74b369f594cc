"""`keel demo`: a local PostgreSQL, migrations and the server, on one machine (OPS-8)."""

from __future__ import annotations

import argparse

from app.cli.common import common_options


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common_options()],
        help="run a local demo: PostgreSQL, migrations, server",
        description="Start a local PostgreSQL in a data directory, migrate it and serve on "
        "http://127.0.0.1:8000. Ctrl-C stops everything it started.",
    )
    p.add_argument(
        "--data-dir",
        default=".keel-demo",
        metavar="DIR",
        help="where the demo keeps its database (default: ./.keel-demo)",
    )
    p.add_argument("--listen", default="127.0.0.1:8000", metavar="ADDR", help="address to serve on")
    p.add_argument(
        "--no-serve", action="store_true", help="prepare the database, print its URL and stop"
    )
    p.add_argument(
        "--size",
        choices=("small", "large"),
        default="small",
        help="demo data on first run: small (a few thousand rows, seconds) or large "
        "(the benchmark's 1.1 million rows, about a minute)",
    )
    p.add_argument(
        "--reset-admin",
        action="store_true",
        help="print a new one-time password for the demo administrator",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.ops.demo import run_demo

    return run_demo(args)
