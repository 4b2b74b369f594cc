"""`keel serve`: the web server; `--dev [DIR]` for the development loop."""

from __future__ import annotations

import argparse

from app.cli.common import common_options, config_from, run_async
from app.config import Config, ring_problem
from app.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common_options()],
        help="serve the web application",
        description="Serve the web application. Under systemd: Type=notify, watchdog, "
        "socket activation (LISTEN_FDS). SIGTERM finishes requests in flight, then exits 0.",
    )
    p.add_argument("--listen", metavar="ADDR", help="HOST:PORT or unix:/path (overrides `listen`)")
    p.add_argument("--database-url", metavar="URL", help="override database_url")
    p.add_argument(
        "--workers",
        metavar="N",
        help="processes serving requests on the one socket (overrides `workers`; 0: one per "
        "CPU, at most 8; 1: a single process)",
    )
    p.add_argument(
        "--dev",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="development: serve the site project in DIR (default: --site or site_dir) without "
        "a build, restart when its declarations, templates or migrations change, one ✓/✗ line "
        "per reload",
    )
    p.add_argument(
        "--watch", action="append", default=[], metavar="PATH", help="with --dev: also watch PATH"
    )
    p.set_defaults(run=run)


def require_secret_key(config: Config) -> None:
    problem = ring_problem(config)
    if problem and not config.demo:
        raise ConfigError(
            "secret_keys" if config.secret_keys else "secret_key",
            problem.removeprefix("secret_key "),
            "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )


def run(args: argparse.Namespace) -> int:
    if args.dev:
        args.site = args.dev or getattr(args, "site", None)
    config = config_from(
        args, listen=args.listen, database_url=args.database_url, workers=args.workers
    )
    require_secret_key(config)
    if args.dev is not None:
        import sys

        from app.web.devserver import run_dev

        return run_dev(sys.argv[1:], config.listen, args.watch, args.dev or None)
    from app.config import worker_count
    from app.ops.logging import setup_logging

    setup_logging(config.log_format, config.log_level)
    count = worker_count(config)
    if count > 1:
        from app.web.supervisor import supervise

        return supervise(config, count)
    from app.web.server import serve

    run_async(serve(config))
    return 0
