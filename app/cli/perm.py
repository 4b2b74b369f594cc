"""`keel perm …`: the permissions the site declares, and direct grants to users (AUTHZ-4, CLI-3..5)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from app.cli.common import common_options, config_from, out_from, run_async

Handler = Callable[..., Awaitable[int]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "perm",
        parents=[common_options()],
        help="list permissions; grant or revoke them directly on users",
        description="Permissions are named <resource>.<action>. Prefer groups; direct "
        "grants are for exceptions. Changes are audited.",
    )
    p.set_defaults(run=lambda args: _usage(p))
    cmds = p.add_subparsers(title="subcommands", metavar="<subcommand>", parser_class=type(p))
    c = cmds.add_parser(
        "list",
        parents=[common_options()],
        help="list every permission, or a user's effective ones with their source",
        description="Without --email: every permission the site declares. With --email: the "
        "user's effective permissions and where each comes from (direct, via <group>).",
    )
    c.add_argument("--email", help="show this user's effective permissions")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=lambda args: run_async(_list(args)))
    for name, text, fn in (
        ("grant", "grant permissions directly to a user", _grant),
        ("revoke", "revoke a user's direct permissions", _revoke),
    ):
        c = cmds.add_parser(
            name, parents=[common_options()], help=text, description=text.capitalize() + "."
        )
        c.add_argument("--email", required=True, help="the user's email address")
        c.add_argument("permissions", nargs="+", metavar="PERM", help="e.g. bookings.change")
        c.set_defaults(run=lambda args, fn=fn: run_async(_change(args, fn)))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


async def _list(args: argparse.Namespace) -> int:
    from app.authority import permissions

    out = out_from(args)
    if not args.email:
        rows = permissions.all_permissions()
        if args.json:
            out.json([{"name": n, "description": d} for n, d in rows])
            return 0
        for name, description in rows:
            out.result(f"{name:<36} {description}")
        out.line(f"{len(rows)} permission(s).")
        return 0
    from app.authority import users
    from app.db.pool import connect

    async with connect(config_from(args)) as conn:
        user = await users.get_by_email(conn, args.email)
        effective = await permissions.effective_permissions(conn, user.id)
    bypass = user.role in ("administrator", "developer")
    if args.json:
        out.json(
            {"email": user.email, "role": user.role, "bypass": bypass, "permissions": effective}
        )
        return 0
    if bypass:
        out.line(f"{user.email} is {user.role}: every permission check passes (AUTHZ-2).")
    for name, sources in effective.items():
        out.result(f"{name:<36} {', '.join(sources)}")
    if not effective and not bypass:
        out.line(f"{user.email} holds no permission.")
        out.next_step(f"keel group add-user editor --email {user.email}")
    return 0


async def _change(args: argparse.Namespace, fn: Handler) -> int:
    from app.authority import users
    from app.cli.actor import cli_context
    from app.db.pool import connect

    config = config_from(args)
    ctx = cli_context(config)
    out = out_from(args)
    async with connect(config) as conn:
        user = await users.get_by_email(conn, args.email)
        return await fn(conn, ctx, out, user, args.permissions)


async def _grant(conn: Any, ctx: Any, out: Any, user: Any, names: list[str]) -> int:
    from app.authority import users

    added = await users.grant(conn, ctx, None, user.id, names)
    out.ok(
        f"granted {', '.join(added)} to {user.email}" if added else f"{user.email} already had them"
    )
    out.next_step(f"keel perm list --email {user.email}")
    return 0


async def _revoke(conn: Any, ctx: Any, out: Any, user: Any, names: list[str]) -> int:
    from app.authority import users

    removed = await users.revoke(conn, ctx, None, user.id, names)
    out.ok(
        f"revoked {', '.join(removed)} from {user.email}"
        if removed
        else f"{user.email} held none of them directly"
    )
    return 0
