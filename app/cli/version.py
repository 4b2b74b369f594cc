"""`keel version`: version, build id, Python, and the site built into this executable."""

from __future__ import annotations

import argparse
import platform
import sys

from app.buildinfo import build_info, describe
from app.cli.common import common_options, out_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "version",
        parents=[common_options()],
        help="print version, build id and Python version",
        description="Print the version, the build id of this executable, the Python running "
        "it and, for an executable made by `keel build`, the site it holds.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    info = build_info()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    data = {
        "version": info["version"],
        "build_id": info["build_id"],
        "python": python,
        "platform": sys.platform,
    }
    for key in ("site_name", "site_version", "keel_build_id"):
        if key in info:
            data[key] = info[key]
    if args.json:
        out_from(args).json(data)
    else:
        out_from(args).result(f"{describe(info)} on {python}, {sys.platform}")
    return 0
