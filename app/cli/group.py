"""`keel group …`: groups, their members and their permissions (AUTHZ-4, AUTHZ-6, CLI-3..5)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.cli.common import common_options, config_from, out_from, run_async

if TYPE_CHECKING:
    from app.audit import Context
    from app.cli.output import Out
    from app.config import Config

Handler = Callable[..., Awaitable[int]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "group",
        parents=[common_options()],
        help="create groups, add members, grant permissions",
        description="Groups hold permissions; users in a group hold them too. "
        "Changes are audited with your OS user and the command line.",
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

    c = add("create", "create a group", _create)
    c.add_argument("name", help="group name: letters, digits, spaces, . _ -")
    c.add_argument("--description", default="", help="what the group is for")
    c.add_argument("--grant", nargs="+", default=[], metavar="PERM", help="permissions to give it")
    c = add("list", "list groups with member and permission counts", _list)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = add("show", "show a group's members and permissions", _show)
    c.add_argument("name")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    add("delete", "delete a group (members lose what it granted)", _delete).add_argument("name")
    for name, text, fn in (
        ("add-user", "add a user to a group", _add_user),
        ("remove-user", "remove a user from a group", _remove_user),
    ):
        c = add(name, text, fn)
        c.add_argument("name", help="group name")
        c.add_argument("--email", required=True, help="the user's email address")
    for name, text, fn in (
        ("grant", "give a group permissions", _grant),
        ("revoke", "take permissions from a group", _revoke),
    ):
        c = add(name, text, fn)
        c.add_argument("name", help="group name")
        c.add_argument("permissions", nargs="+", metavar="PERM", help="e.g. bookings.change")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


async def _run(args: argparse.Namespace, handler: Handler) -> int:
    from app.cli.actor import cli_context
    from app.db.pool import connect

    config = config_from(args)
    ctx = cli_context(config)
    async with connect(config) as conn:
        return await handler(args, conn, ctx, config, out_from(args))


async def _create(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import groups

    group = await groups.create(
        conn, ctx, None, args.name, description=args.description, grant=args.grant
    )
    out.ok(
        f"created group {group.name}"
        + (f" with {group.permissions} permission(s)" if group.permissions else "")
    )
    out.next_step(f"keel group add-user '{group.name}' --email someone@example.com")
    return 0


async def _list(args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out) -> int:
    from app.authority import groups

    rows = await groups.list_groups(conn)
    if args.json:
        out.json([{"id": g.id, "name": g.name, "description": g.description,
                   "members": g.members, "permissions": g.permissions} for g in rows])  # fmt: skip
        return 0
    for g in rows:
        out.result(
            f"{g.name:<24} {g.members:>5} member(s) {g.permissions:>5} permission(s)  {g.description}"
        )
    out.line(f"{len(rows)} group(s).")
    if not rows:
        out.next_step("keel group create NAME --grant resource.view …")
    return 0


async def _show(args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out) -> int:
    from app.authority import groups

    group = await groups.get(conn, args.name)
    members = await groups.members(conn, group.id)
    perms = await groups.group_permissions(conn, group.id)
    if args.json:
        out.json({"id": group.id, "name": group.name, "description": group.description,
                  "members": [{"id": i, "email": e, "role": r} for i, e, r in members],
                  "permissions": perms})  # fmt: skip
        return 0
    out.result(f"group:       {group.name}")
    out.result(f"description: {group.description}")
    out.result(f"members ({len(members)}):")
    for _id, email, role in members:
        out.result(f"  {email:<40} {role}")
    out.result(f"permissions ({len(perms)}):")
    for name in perms:
        out.result(f"  {name}")
    return 0


async def _delete(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import groups

    group = await groups.get(conn, args.name)
    await groups.delete(conn, ctx, None, group.id)
    out.ok(f"deleted group {group.name} ({group.members} member(s) lost its permissions)")
    return 0


async def _membership(
    args: argparse.Namespace, conn: Any, ctx: Context, out: Out, add: bool
) -> int:
    from app.authority import groups, users

    group = await groups.get(conn, args.name)
    user = await users.get_by_email(conn, args.email)
    fn = groups.add_member if add else groups.remove_member
    changed = await fn(conn, ctx, None, group.id, user.id)
    if add:
        out.ok(f"{user.email} {'added to' if changed else 'was already in'} {group.name}")
    else:
        out.ok(f"{user.email} {'removed from' if changed else 'was not in'} {group.name}")
    out.next_step(f"keel user show --email {user.email}")
    return 0


async def _add_user(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    return await _membership(args, conn, ctx, out, True)


async def _remove_user(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    return await _membership(args, conn, ctx, out, False)


async def _grant(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import groups

    added = await groups.grant(conn, ctx, None, args.name, args.permissions)
    out.ok(f"granted {', '.join(added)}" if added else "nothing new: the group already had them")
    out.next_step(f"keel group show '{args.name}'")
    return 0


async def _revoke(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import groups

    removed = await groups.revoke(conn, ctx, None, args.name, args.permissions)
    out.ok(
        f"revoked {', '.join(removed)}"
        if removed
        else "nothing to revoke: the group did not have them"
    )
    return 0
