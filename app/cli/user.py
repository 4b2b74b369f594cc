"""`keel user …`: manage accounts from the server, including break-glass recovery (CLI-3..5, R4-1)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.cli.common import common_options, config_from, out_from, run_async

if TYPE_CHECKING:
    import psycopg

    from app.audit import Context
    from app.authority.users import User
    from app.cli.output import Out
    from app.config import Config

# `--role editor|viewer` means role staff plus that default group (AUTHZ-6).
GROUP_ROLES = {"editor": "staff", "viewer": "staff"}
ROLE_CHOICES = ("user", "staff", "supervisor", "administrator", "developer", "editor", "viewer")
BREAK_GLASS = {
    "reset-password": "set a temporary password, printed once (break-glass)",
    "unlock": "clear a sign-in lock (break-glass)",
    "disable-mfa": "turn off the second factor (break-glass)",
    "promote": "make the user an administrator again (break-glass)",
    "emergency-access": "print a one-time link to choose a new password (break-glass)",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "user",
        parents=[common_options()],
        help="create, list and change users; break-glass recovery",
        description="Manage user accounts as the machine's operator. Changes are audited with "
        "your OS user (user@host) and the command line without secrets.",
    )
    p.set_defaults(run=lambda args: _usage(p))
    cmds = p.add_subparsers(title="subcommands", metavar="<subcommand>", parser_class=type(p))

    def add(name: str, help: str, run: Callable[..., Any], **kw: Any) -> argparse.ArgumentParser:
        c = cmds.add_parser(
            name,
            parents=[common_options()],
            help=help,
            description=kw.pop("description", help[0].upper() + help[1:] + "."),
        )
        c.set_defaults(run=lambda args: run_async(_run(args, run)))
        return c

    c = add("create", "create a user", _create)
    _email(c)
    c.add_argument(
        "--role",
        choices=ROLE_CHOICES,
        default="user",
        help="role; editor and viewer mean staff plus that group (default: user)",
    )
    c.add_argument("--name", default="", help="full name")
    c.add_argument("--display-name", default="", help="short name shown in the page header")
    c.add_argument("--job-title", default="", help="job title")
    c.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="add to this group (repeatable)",
    )
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    how.add_argument(
        "--no-password",
        action="store_true",
        help="create without a password (sign-in impossible until one is set)",
    )
    c.add_argument(
        "--must-change-password", action="store_true", help="force a new password at first sign-in"
    )

    c = add(
        "invite",
        "invite someone by mail to choose their own password",
        _invite,
        description="Invite an address: the account is created inactive with the role and groups,"
        " and a mail (through the outbox) carries a single-use link that works for"
        " invitation_ttl; the invitee chooses their password there. Needs public_url. With"
        " --resend a new link goes out and the old one stops working; with --revoke the"
        " invitation is withdrawn and the unused account removed. Audited.",
    )
    _email(c)
    c.add_argument(
        "--role",
        choices=ROLE_CHOICES,
        help="role; editor and viewer mean staff plus that group (required to invite)",
    )
    c.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="add to this group (repeatable)",
    )
    again = c.add_mutually_exclusive_group()
    again.add_argument(
        "--resend", action="store_true", help="send the open invitation again with a new link"
    )
    again.add_argument("--revoke", action="store_true", help="withdraw the open invitation")

    c = add("invitations", "list open invitations", _invitations)
    c.add_argument("--json", action="store_true", help="machine-readable output")

    c = add("list", "list users", _list)
    c.add_argument("--role", choices=ROLE_CHOICES[:5], help="only this role")
    state = c.add_mutually_exclusive_group()
    state.add_argument("--active", action="store_true", help="only active users")
    state.add_argument("--inactive", action="store_true", help="only inactive users")
    c.add_argument("--search", metavar="TEXT", help="part of the email or name")
    c.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    c.add_argument("--json", action="store_true", help="machine-readable output")

    c = add("show", "show a user, their groups and effective permissions", _show)
    _email(c)
    c.add_argument("--json", action="store_true", help="machine-readable output")

    c = add("set-role", "change a user's role (orphan guard applies)", _set_role)
    _email(c)
    c.add_argument("--role", required=True, choices=ROLE_CHOICES, help="the new role")

    _email(add("activate", "let a user sign in again", _activate))
    _email(add("deactivate", "stop a user signing in and end their sessions", _deactivate))
    c = add("delete", "delete a user (their audit history stays)", _delete)
    _email(c)
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    c = add("set-password", "set a user's password (sessions end)", _set_password)
    _email(c)
    c.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    c.add_argument("--temporary", action="store_true", help="force a change at the next sign-in")

    for name, text in BREAK_GLASS.items():
        c = add(name, text, _break_glass, description=_break_glass_help(name))
        _email(c)
        c.add_argument("--reason", required=True, help="why (at least 8 characters; audited)")
        c.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        if name == "promote":
            c.add_argument(
                "--role",
                default="administrator",
                choices=("administrator", "developer"),
                help="role to give (default: administrator)",
            )
        if name == "emergency-access":
            c.add_argument(
                "--minutes", type=int, default=15, help="link lifetime, 1–60 minutes (default 15)"
            )
        c.set_defaults(operation=name)

    c = add("sessions", "list a user's active sessions", _sessions)
    _email(c)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = add("revoke-sessions", "sign a user out everywhere", _revoke_sessions)
    _email(c)
    c.add_argument("--reason", default=None, help="note kept in the audit log")


def _email(c: argparse.ArgumentParser) -> None:
    c.add_argument("--email", required=True, help="the user's email address")


def _break_glass_help(name: str) -> str:
    return (
        f"Break-glass: {BREAK_GLASS[name].removesuffix(' (break-glass)')}. For when nobody can "
        "sign in. Prints a banner and asks for `yes` (without a terminal, --yes is required, "
        "else exit 2). Atomic; writes one emergency_recovery audit event with the reason."
    )


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


# ---- running ----------------------------------------------------------------------------

Handler = Callable[..., Awaitable[int]]


async def _run(args: argparse.Namespace, handler: Handler) -> int:
    from app.cli.actor import cli_context
    from app.db.pool import connect

    config = config_from(args)
    ctx = cli_context(config)
    async with connect(config) as conn:
        return await handler(args, conn, ctx, config, out_from(args))


async def _create(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import groups, users
    from app.cli.actor import read_new_password

    email = users.normalise_email(args.email)
    role, group_names = args.role, list(args.group)
    if role in GROUP_ROLES:
        group_names.append(role)
        role = GROUP_ROLES[role]
    # The default groups and their access to the site's resources, also when serve never ran.
    await groups.ensure_default_groups(conn, ctx)
    await groups.grant_resource_defaults(conn, ctx)
    for name in group_names:
        await groups.get(conn, name)  # unknown group: Problem/Why/Fix before any prompt
    password_hash = None
    if not args.no_password:
        password_hash = await _hash_new(config, read_new_password(args), email)
    user = await users.create(
        conn, ctx, None, email=email, role=role, password_hash=password_hash,
        must_change_password=args.must_change_password,
        profile={"full_name": args.name, "display_name": args.display_name,
                 "job_title": args.job_title},
        groups=group_names, via="cli",
    )  # fmt: skip
    extra = f", groups {', '.join(sorted(group_names))}" if group_names else ""
    out.ok(f"created {user.email} (role {user.role}{extra})")
    if password_hash is None:
        out.next_step(
            f"keel user emergency-access --email {user.email} --reason '…' to send them a link"
        )
    elif config.public_url:
        out.next_step(f"sign in at {config.public_url.rstrip('/')}/login")
    else:
        out.next_step("keel serve, then sign in at /login")
    return 0


async def _invite(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import groups, invitations
    from app.errors import UsageError

    if args.resend or args.revoke:
        if args.role or args.group:
            raise UsageError(
                "--role and --group go with a new invitation only",
                fix="leave them out with --resend or --revoke",
            )
        open_one = await invitations.find_pending(conn, args.email)
        if args.revoke:
            done = await invitations.revoke(conn, ctx, None, open_one.id)
            out.ok(f"withdrew the invitation to {done.email}; its link no longer works")
            return 0
        sent = await invitations.resend(
            conn, ctx, None, open_one.id, public_url=config.public_url,
            site_name=config.site_name, ttl=config.invitation_ttl,
        )  # fmt: skip
        out.ok(f"sent a new link to {sent.email}; the previous one no longer works")
        out.next_step(f"the link works until {sent.expires_at:%Y-%m-%d %H:%M} UTC")
        return 0
    if not args.role:
        raise UsageError(
            "an invitation needs a role",
            fix=f"add --role, e.g. keel user invite --email {args.email} --role staff",
        )
    role, group_names = args.role, list(args.group)
    if role in GROUP_ROLES:
        group_names.append(role)
        role = GROUP_ROLES[role]
    await groups.ensure_default_groups(conn, ctx)
    await groups.grant_resource_defaults(conn, ctx)
    for name in group_names:
        await groups.get(conn, name)  # unknown group: Problem/Why/Fix before anything is written
    invitation = await invitations.invite(
        conn, ctx, None, email=args.email, role=role, groups=group_names,
        public_url=config.public_url, site_name=config.site_name, ttl=config.invitation_ttl,
    )  # fmt: skip
    extra = f", groups {', '.join(invitation.groups)}" if invitation.groups else ""
    out.ok(f"invited {invitation.email} (role {invitation.role}{extra})")
    out.next_step(
        f"the mail goes out through the outbox (keel mail status); the link works until"
        f" {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    return 0


async def _invitations(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import invitations

    rows = await invitations.list_pending(conn)
    if args.json:
        out.json(
            [
                {"id": i.id, "email": i.email, "role": i.role, "groups": i.groups,
                 "state": i.state(), "invited_by": i.invited_by_email,
                 "expires_at": i.expires_at.isoformat(), "sent": i.send_count}
                for i in rows
            ]
        )  # fmt: skip
        return 0
    if not rows:
        out.line("no open invitations")
    for i in rows:
        out.line(
            f"{i.email}  {i.role}  {i.state()} until {i.expires_at:%Y-%m-%d %H:%M} UTC"
            f"  (by {i.invited_by_email or 'unknown'})"
        )
    return 0


async def _hash_new(config: Config, password: str, email: str) -> str:
    from app.authority.passwords import Hasher, Policy, hash_new

    hasher = Hasher(max_in_flight=1)
    try:
        return await hash_new(hasher, Policy.from_config(config), password, email=email)
    finally:
        hasher.close()


def _user_json(user: User) -> dict[str, Any]:
    data = user.as_dict()
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


async def _list(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import users

    active = True if args.active else False if args.inactive else None
    rows = await users.list_users(
        conn, role=args.role, active=active, search=args.search, limit=args.limit
    )
    if args.json:
        out.json([_user_json(u) for u in rows])
        return 0
    for u in rows:
        state = "active" if u.is_active else "inactive"
        if u.is_locked():
            state += ", locked"
        out.result(f"{u.email:<40} {u.role:<14} {state:<16} {u.full_name}")
    out.line(f"{len(rows)} user(s).")
    if not rows:
        out.next_step("keel user create --email you@example.com --role administrator")
    return 0


async def _show(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import permissions, users

    user = await users.get_by_email(conn, args.email)
    member_of = await users.group_names(conn, user.id)
    effective = await permissions.effective_permissions(conn, user.id)
    if args.json:
        out.json({**_user_json(user), "groups": member_of, "permissions": effective})
        return 0
    rows = [
        ("email", user.email), ("role", user.role),
        ("active", "yes" if user.is_active else "no"),
        ("locked", f"until {user.locked_until:%Y-%m-%d %H:%M %Z}" if user.is_locked() and user.locked_until else "no"),
        ("name", user.full_name), ("display name", user.display_name), ("job title", user.job_title),
        ("password", "set" if user.has_password else "none"),
        ("must change password", "yes" if user.must_change_password else "no"),
        ("second factor", "on" if user.mfa_enabled else "off"),
        ("created", f"{user.created_at:%Y-%m-%d %H:%M}"),
        ("last sign-in", f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"),
        ("groups", ", ".join(member_of) or "none"),
    ]  # fmt: skip
    for label, value in rows:
        out.result(f"{label + ':':<22} {value}")
    if user.role in ("administrator", "developer"):
        out.result(f"{'permissions:':<22} all (the {user.role} role bypasses permission checks)")
    elif effective:
        out.result("permissions:")
        for name, sources in effective.items():
            out.result(f"  {name:<32} {', '.join(sources)}")
    else:
        out.result(f"{'permissions:':<22} none")
    return 0


async def _set_role(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    config: Config,
    out: Out,
) -> int:
    from app.authority import accounts, users

    user = await users.get_by_email(conn, args.email)
    role = GROUP_ROLES.get(args.role, args.role)
    # The default groups (and their access to resources) are made first when `serve` never
    # ran, as `create` does.
    join = args.role if args.role in GROUP_ROLES else None
    changed = await accounts.set_role(conn, ctx, None, user.id, role, join_group=join)
    if changed.role == user.role and args.role not in GROUP_ROLES:
        out.ok(f"{user.email} already has the role {user.role}")
    else:
        extra = f" in group {args.role}" if args.role in GROUP_ROLES else ""
        out.ok(f"{user.email}: role {user.role} → {changed.role}{extra}")
    out.next_step(f"keel user show --email {user.email}")
    return 0


async def _set_active(
    args: argparse.Namespace,
    conn: psycopg.AsyncConnection[Any],
    ctx: Context,
    out: Out,
    active: bool,
) -> int:
    from app.authority import users

    user = await users.get_by_email(conn, args.email)
    changed = await users.set_active(conn, ctx, None, user.id, active)
    word = "active" if active else "inactive"
    if changed.is_active == user.is_active:
        out.ok(f"{user.email} was already {word}")
    else:
        out.ok(f"{user.email} is now {word}" + ("" if active else "; their sessions have ended"))
    return 0


async def _activate(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    return await _set_active(args, conn, ctx, out, True)


async def _deactivate(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    rc = await _set_active(args, conn, ctx, out, False)
    out.next_step(f"keel user activate --email {args.email.strip().lower()} undoes it")
    return rc


async def _delete(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import users
    from app.cli.actor import confirm

    user = await users.get_by_email(conn, args.email)
    if not args.yes:
        out.result(f"Delete {user.email} ({user.role})? Their audit history stays.")
    confirm(args.yes)
    await users.delete(conn, ctx, None, user.id)
    out.ok(f"deleted {user.email}")
    return 0


async def _set_password(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import users
    from app.cli.actor import read_new_password

    user = await users.get_by_email(conn, args.email)
    password_hash = await _hash_new(config, read_new_password(args), user.email)
    await users.set_password(
        conn,
        ctx,
        None,
        user.id,
        password_hash,
        temporary=args.temporary,
        reason="set with keel user set-password",
    )
    out.ok(f"password of {user.email} changed; their sessions have ended")
    if args.temporary:
        out.line("They must choose a new password at their next sign-in.")
    return 0


async def _break_glass(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import breakglass, users
    from app.authority.passwords import generate
    from app.cli.actor import banner, confirm

    op = args.operation
    reason = breakglass.check_reason(args.reason)
    if op == "emergency-access":
        breakglass.check_minutes(args.minutes)
    user = await users.get_by_email(conn, args.email)  # unknown email: exit 1 before the banner
    banner(
        out,
        op,
        f"{user.email} ({user.role}{'' if user.is_active else ', inactive'})",
        reason,
        ctx.os_actor or "",
    )
    confirm(args.yes)
    if op == "reset-password":
        password = generate()
        result = await breakglass.reset_password(
            conn,
            ctx,
            email=user.email,
            reason=reason,
            password_hash=await _hash_new(config, password, user.email),
        )
        out.ok(f"temporary password for {user.email} (shown once; they must change it at sign-in):")
        out.result(password)
    elif op == "unlock":
        await breakglass.unlock(conn, ctx, email=user.email, reason=reason)
        out.ok(f"{user.email} is unlocked")
    elif op == "disable-mfa":
        await breakglass.disable_mfa(conn, ctx, email=user.email, reason=reason)
        out.ok(f"second factor of {user.email} is off; their sessions have ended")
    elif op == "promote":
        result = await breakglass.promote(
            conn, ctx, email=user.email, reason=reason, role=args.role
        )
        out.ok(f"{user.email} is now an active {result.user.role}")
    else:
        result = await breakglass.emergency_access(
            conn,
            ctx,
            email=user.email,
            reason=reason,
            public_url=config.public_url,
            minutes=args.minutes,
        )
        out.ok(f"one-time link for {user.email}, valid {args.minutes} minute(s), usable once:")
        out.result(result.link or "")
        if not user.is_active:
            out.next_step(f"keel user activate --email {user.email} (the account is inactive)")
    return 0


async def _sessions(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from dataclasses import asdict

    from app.authority import sessions, users

    user = await users.get_by_email(conn, args.email)
    rows = await sessions.list_for_user(conn, user.id, idle=config.session_idle)
    data = [
        {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(s).items()}
        for s in rows
    ]
    if args.json:
        out.json(data)
        return 0
    for s in data:
        out.result(
            f"#{s.get('id')}  {s.get('trust', '')}  from {s.get('ip') or '?'}  "
            f"signed in {s.get('created_at', '')}  last seen {s.get('last_seen_at', '')}  "
            f"{s.get('user_agent') or ''}".rstrip()
        )
    out.line(f"{len(rows)} active session(s) for {user.email}.")
    if rows:
        out.next_step(f"keel user revoke-sessions --email {user.email}")
    return 0


async def _revoke_sessions(
    args: argparse.Namespace, conn: Any, ctx: Context, config: Config, out: Out
) -> int:
    from app.authority import accounts, users

    user = await users.get_by_email(conn, args.email)
    ids = await accounts.end_sessions(conn, ctx, None, user.id, reason=args.reason)
    out.ok(f"ended {len(ids)} session(s) of {user.email}")
    return 0
