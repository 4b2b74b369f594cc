"""Helpers shared by subcommands: configuration from args, running async work."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.cli.output import Out
from app.config import Config, load_config

T = TypeVar("T")


def config_from(args: argparse.Namespace, **flags: Any) -> Config:
    """The configuration, and the site it names (`--site` or `site_dir`) made the active one."""
    site_flag = getattr(args, "site", None)
    config = load_config(config_path=args.config, flags={**flags, "site_dir": site_flag})
    if config.site_dir:
        from app import sites

        sites.activate(sites.load_site(config.site_dir))
    return config


def out_from(args: argparse.Namespace) -> Out:
    return Out(quiet=bool(getattr(args, "quiet", False)))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # lazily: `keel --help` and `keel version` stay fast

    return asyncio.run(coro)


def common_options() -> argparse.ArgumentParser:
    """Options accepted after the subcommand too (`keel migrate --config x`)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help="TOML configuration file"
    )
    parent.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only results and errors",
    )
    parent.add_argument(
        "--site",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="serve the site project in DIR instead of the one built in (development)",
    )
    return parent
