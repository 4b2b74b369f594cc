"""`keel audit tail|verify`: read the audit log and check its chain from a shell (AUDIT-4, AUDIT-8)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from app.cli.common import common_options, config_from, out_from, run_async
from app.cli.output import Out
from app.config import Config, secret_key_problem
from app.errors import KeelError, UsageError

_DURATION = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        parents=[common_options()],
        help="show recent audit events and verify the tamper-evident chain",
        description="Read the append-only audit log (tail) and check its HMAC chain (verify).",
    )
    actions = p.add_subparsers(title="actions", dest="action", metavar="<action>")
    tail = actions.add_parser(
        "tail",
        parents=[common_options()],
        help="print the latest events, oldest first",
        description="Print the latest audit events, oldest first, optionally filtered.",
    )
    tail.add_argument(
        "--since", metavar="AGE", help="only events newer than this: 30s, 15m, 2h, 7d"
    )
    tail.add_argument("--user", metavar="EMAIL|ID", help="only events by this actor")
    tail.add_argument("--resource", metavar="R", help="only events about this resource (users, …)")
    tail.add_argument("--event", metavar="TYPE", help="only this event type (login_failed, …)")
    tail.add_argument("--limit", metavar="N", default="20", help="at most N events (1-500, 20)")
    tail.add_argument("--json", action="store_true", help="machine-readable output")
    tail.set_defaults(run=run_tail)
    verify = actions.add_parser(
        "verify",
        parents=[common_options()],
        help="walk the chain and name the first broken row",
        description="Recompute every row's HMAC in id order, each with the key of the ring that "
        "signed it; exit 1 naming the first broken row. Rows signed by a key no longer in the "
        "ring are reported as unverifiable, not as broken (exit 3).",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=run_verify)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def parse_since(text: str, now: datetime) -> datetime:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(
            f"--since {text[:40]!r} is not a duration",
            why="--since takes an age such as 30s, 15m, 2h or 7d",
            fix="write e.g. --since 15m",
        )
    return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def parse_limit(text: str) -> int:
    if not re.fullmatch(r"\d{1,4}", text.strip()) or not 1 <= int(text) <= 500:
        raise UsageError(
            f"--limit {text[:20]!r} is not allowed",
            why="the limit is a whole number from 1 to 500",
            fix="write e.g. --limit 50",
        )
    return int(text)


def run_tail(args: argparse.Namespace) -> int:
    from app import audit
    from app.errors import Invalid

    limit = parse_limit(args.limit)
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    try:
        if args.event:
            audit.check_event(args.event)
    except Invalid as exc:
        names = ", ".join(t.value for t in audit.EventType)
        raise UsageError(exc.problem, why=f"known event types: {names}", fix=exc.fix) from None
    config = config_from(args)
    filters = {"event": args.event, "actor": args.user, "resource": args.resource}
    return run_async(
        _tail(config, out_from(args), filters=filters, since=since, limit=limit, as_json=args.json)
    )


async def _tail(
    config: Config,
    out: Out,
    *,
    filters: dict[str, Any],
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> int:
    from app import audit
    from app.db.pool import connect
    from app.errors import Invalid

    async with connect(config) as conn:
        try:
            page = await audit.history(conn, since=since, limit=limit, **filters)
        except Invalid as exc:
            field = next(iter(exc.fields), "filter")
            raise UsageError(
                exc.problem,
                why=f"--{'user' if field == 'actor' else field}: {exc.fields.get(field, '')}",
                fix=exc.fix or "see `keel audit tail --help`",
            ) from None
    rows = list(reversed(page.rows))  # like tail: the newest line last
    if as_json:
        out.json([r.as_dict() for r in rows])
        return 0
    for r in rows:
        who = r.actor_email or r.os_actor or "system"
        target = f"{r.target_resource}/{r.target_id}" if r.target_id else r.target_resource or "-"
        mark = "" if r.outcome == "success" else f" [{r.outcome}]"
        stamp = r.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        out.result(f"{stamp}  {r.event_type:<28} {who:<28} {target:<20} {r.summary}{mark}")
    if not rows:
        out.line("No audit events match.")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    config = config_from(args)
    problem = secret_key_problem(config.secret_key)
    if problem:
        raise KeelError(
            f"cannot verify the audit chain: {problem}",
            why="the chain is sealed with a key derived from secret_key",
            fix="run with the same secret_key as the server (KEEL_SECRET_KEY or the credential)",
        )
    return run_async(_verify(config, out_from(args), args.json))


async def _verify(config: Config, out: Out, as_json: bool) -> int:
    from app import audit
    from app.db.pool import connect

    async with connect(config) as conn:
        result = await audit.verify(conn, audit.ring_keys(config.ring))
    if as_json:
        out.json(result.as_dict())
    elif result.ok and result.unverified:
        # Links are still checked; contents need the key. Not tampering, but not proven either.
        checked = result.rows - result.unverified
        out.warn(f"audit chain: {checked} rows verify; {result.retired_text}")
        out.next_step("put the retired key back in secret_keys (last) to verify those rows")
        return 3
    elif result.ok:
        out.ok(f"audit chain verifies: {result.rows} rows")
        if result.head_id:
            out.result(f"head: row {result.head_id}, hash {result.head_hash}")
            out.next_step("note the head somewhere the database cannot write (see docs)")
    else:
        at = result.broken_at.astimezone(UTC).isoformat() if result.broken_at else "?"
        out.fail(
            f"audit chain broken at row {result.broken_id} ({result.broken_type}, {at}): "
            f"{result.reason}"
        )
        out.result(f"{result.rows} rows before it verify.")
    return 0 if result.ok else 1
