"""`keel mail test|status`: send a test message and inspect the outbox (MAIL-2)."""

from __future__ import annotations

import argparse

from app.cli.common import common_options, config_from, out_from, run_async
from app.cli.output import Out
from app.config import Config
from app.errors import KeelError, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mail",
        parents=[common_options()],
        help="send a test message and show the outgoing mail queue",
        description="Send a test message (test) and show the outbox (status).",
    )
    actions = p.add_subparsers(title="actions", dest="action", metavar="<action>")
    test = actions.add_parser(
        "test",
        parents=[common_options()],
        help="send a test message now and report the SMTP result",
        description="Queue a test message and deliver it at once over the configured SMTP server.",
    )
    test.add_argument("--to", metavar="ADDR", required=True, help="the recipient address")
    test.set_defaults(run=run_test)
    status = actions.add_parser(
        "status",
        parents=[common_options()],
        help="show the queue: counts by status, oldest waiting, last errors",
        description="Show the outbox: messages by status, the oldest waiting one, the last errors.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_test(args: argparse.Namespace) -> int:
    from app.errors import Invalid
    from app.mail.outbox import check_address

    try:
        check_address(args.to)
    except Invalid as exc:
        raise UsageError(
            f"--to {args.to[:60]!r} is not a single email address",
            why=exc.problem,
            fix=exc.fix,
        ) from None
    config = config_from(args)
    if not config.smtp_host:
        raise KeelError(
            "smtp_host is not set, so no mail can be sent",
            why="`keel mail test` delivers over the configured SMTP server",
            fix="set smtp_host (and smtp_port, smtp_tls, smtp_username, smtp_password)",
        )
    return run_async(_test(config, out_from(args), args.to))


async def _test(config: Config, out: Out, to: str) -> int:
    from datetime import UTC, datetime

    from app.db.migrate import os_actor
    from app.db.pool import connect
    from app.mail import SmtpSettings, Worker, send_now, worker_seal_key
    from app.mail.delivery import describe

    settings = SmtpSettings.from_config(config)
    where = f"{settings.host}:{settings.port} ({settings.tls})"
    async with connect(config) as conn:
        worker = Worker(lambda: connect(config), settings, seal_key=worker_seal_key(config))
        context = {"when": datetime.now(UTC), "operator": os_actor(), "site_name": config.site_name}
        try:
            mail_id, reply = await send_now(conn, worker, to=to, template="test", context=context)
        except Exception as exc:
            raise KeelError(
                f"the test message to {to} was not accepted by {where}",
                why=describe(exc),
                fix="check smtp_host, smtp_port, smtp_tls and the credentials; `keel doctor` "
                "checks the handshake",
                retry=f"keel mail test --to {to}",
            ) from None
    out.ok(f"message {mail_id} to {to} accepted by {where}: {reply}")
    out.next_step("check the inbox (and the spam folder) of the recipient")
    return 0


def run_status(args: argparse.Namespace) -> int:
    return run_async(_status(config_from(args), out_from(args), args.json))


async def _status(config: Config, out: Out, as_json: bool) -> int:
    from app.db.pool import connect
    from app.mail import queue_status

    async with connect(config) as conn:
        status = await queue_status(conn)
    if as_json:
        out.json({**status.as_dict(), "smtp_host": config.smtp_host or None})
        return 0
    counts = status.counts
    out.result(
        f"pending {counts['pending']}, sending {counts['sending']}, sent {counts['sent']}, "
        f"failed {counts['failed']}"
    )
    if status.oldest_pending:
        out.result(f"oldest waiting since {status.oldest_pending.isoformat(timespec='seconds')}")
    for err in status.last_errors:
        out.result(
            f"  #{err['id']} to {err['to']} ({err['status']}, {err['attempts']} attempts): "
            f"{err['error']}"
        )
    if not config.smtp_host:
        out.warn("smtp_host is not set: queued mail is not sent (demo prints it instead)")
        out.next_step("set smtp_host, then `keel mail test --to you@example.com`")
    return 0
