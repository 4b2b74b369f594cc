"""`keel token …`: API tokens for scripts, from the server's shell (thin: app/authority/tokens.py)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.cli.common import common_options, config_from, out_from, run_async

if TYPE_CHECKING:
    from app.audit import Context
    from app.cli.output import Out

Handler = Callable[..., Awaitable[int]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "token",
        parents=[common_options()],
        help="make, list and revoke API tokens",
        description="API tokens let scripts call the JSON API under /admin/api/ with "
        "`Authorization: Bearer <token>`. A token acts as its account, with at most the "
        "permissions it was given. Changes are audited with your OS user and the command line.",
    )
    p.set_defaults(run=lambda args: _usage(p))
    cmds = p.add_subparsers(title="subcommands", metavar="<subcommand>", parser_class=type(p))

    def add(name: str, help: str, run: Handler) -> argparse.ArgumentParser:
        c = cmds.add_parser(
            name,
            parents=[common_options()],
            help=help,
            description=help[0].upper() + help[1:] + ".",
        )
        c.set_defaults(run=lambda args: run_async(_run(args, run)))
        return c

    c = add("create", "make a token for an account and print it once", _create)
    c.add_argument("--email", required=True, help="the account the token acts as")
    c.add_argument("--name", required=True, help="what the token is for, e.g. nightly-sync")
    c.add_argument(
        "--days", type=int, default=30, help="days until it expires, 1 to 366 (default 30)"
    )
    c.add_argument(
        "--scope",
        nargs="+",
        metavar="PERM",
        help="permissions it may use, e.g. bookings.view bookings.change; "
        "default: every view permission of the account (read-only)",
    )
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = add("list", "list tokens with their last use (never the tokens themselves)", _list)
    c.add_argument("--email", help="only this account's tokens")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = add("revoke", "revoke a token at once", _revoke)
    c.add_argument("id", type=int, help="the token's id (see `keel token list`)")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


async def _run(args: argparse.Namespace, handler: Handler) -> int:
    from app.cli.actor import cli_context
    from app.db.pool import connect

    config = config_from(args)
    ctx = cli_context(config)
    async with connect(config) as conn:
        return await handler(args, conn, ctx, out_from(args))


async def _create(args: argparse.Namespace, conn: Any, ctx: Context, out: Out) -> int:
    from app.authority import tokens, users

    owner = await users.get_by_email(conn, args.email)
    made, token = await tokens.create(
        conn, ctx, None, owner_id=owner.id, name=args.name, days=args.days, scope=args.scope
    )
    if args.json:
        out.json({"id": made.id, "token": token, "scope": made.scope,
                  "expires_at": made.expires_at.isoformat()})  # fmt: skip
        return 0
    out.ok(
        f"made token {made.id} ({made.name}) for {owner.email}, expires {made.expires_at:%Y-%m-%d}"
    )
    out.line(f"scope: {', '.join(made.scope)}")
    out.line("The token is shown this once; keep it in the script's secret store:")
    out.result(token)
    out.next_step(f"keel token revoke {made.id}   # when the script no longer needs it")
    return 0


async def _list(args: argparse.Namespace, conn: Any, ctx: Context, out: Out) -> int:
    from app.authority import tokens, users

    owner = await users.get_by_email(conn, args.email) if args.email else None
    rows = await tokens.list_for_user(conn, owner.id if owner else None)
    if args.json:
        out.json([{"id": t.id, "user_id": t.user_id, "name": t.name, "prefix": t.prefix,
                   "scope": t.scope, "state": t.state(), "created_at": t.created_at.isoformat(),
                   "expires_at": t.expires_at.isoformat(),
                   "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                   "last_used_ip": t.last_used_ip} for t in rows])  # fmt: skip
        return 0
    for t in rows:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
        kind = "read-only" if t.read_only else "read-write"
        out.result(
            f"{t.id:>6}  {t.prefix}…  {t.name[:24]:<24} user {t.user_id:<6} {t.state():<8}"
            f" {kind:<10} expires {t.expires_at:%Y-%m-%d}  {used}"
        )
    out.line(f"{len(rows)} token(s).")
    return 0


async def _revoke(args: argparse.Namespace, conn: Any, ctx: Context, out: Out) -> int:
    from app.authority import tokens

    done = await tokens.revoke(conn, ctx, None, args.id)
    out.ok(f"revoked token {done.id} ({done.name}); requests with it are refused from now on")
    return 0
