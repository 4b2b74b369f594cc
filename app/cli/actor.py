"""Who acts at the command line: the audit Context (CLI-5), confirmations (R4-1), password prompts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from app.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from app.audit import Context
    from app.cli.output import Out
    from app.config import Config

# Flags whose value is a secret: their values never reach the audit log (CLI-5, AUDIT-7).
SECRET_FLAGS = ("--password", "--token", "--secret", "--secret-key", "--smtp-password")
MASK = "***"


def scrub_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """argv with secret values replaced: flag values, `--flag=value`, and URL passwords."""
    from app.config import redact_url

    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _value = arg.partition("=")
        if name in SECRET_FLAGS or name.endswith(("-password", "-token", "-secret")):
            out.append(f"{name}={MASK}" if eq else name)
            hide_next = not eq
            continue
        out.append(redact_url(arg) if "://" in arg else arg)
    return tuple(out)


def cli_context(config: Config, argv: Sequence[str] | None = None) -> Context:
    """The Context for a CLI command: the OS operator and the cleaned argv (CLI-5)."""
    from app.audit import Context, derive_key
    from app.config import secret_key_problem
    from app.db.migrate import os_actor

    problem = secret_key_problem(config.secret_key)
    if problem:
        raise ConfigError(
            "secret_key",
            f"{problem}, so the audit event of this change cannot be sealed",
            "set KEEL_SECRET_KEY (or secret_key in keel.toml, or a systemd credential) to the "
            "key `keel serve` uses",
        )
    raw = list(sys.argv[1:] if argv is None else argv)
    return Context(
        audit_key=derive_key(config.secret_key),
        os_actor=os_actor(),
        argv=("keel", *scrub_argv(raw)),
    )


def banner(out: Out, operation: str, target: str, reason: str, operator: str) -> None:
    """What is about to happen, to whom, why, by whom, when (R4-1)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    rule = "=" * 64
    for line in (
        rule,
        f"BREAK-GLASS: {operation}",
        f"  target:   {target}",
        f"  reason:   {reason}",
        f"  operator: {operator}",
        f"  time:     {now}",
        "This is recorded in the audit log.",
        rule,
    ):
        out.result(line)


def confirm(
    yes: bool, *, stdin: TextIO | None = None, question: str = "Type yes to go on: "
) -> None:
    """Go on with --yes, or when a person types `yes`; otherwise refuse with exit code 2."""
    if yes:
        return
    stream = stdin or sys.stdin
    if not stream.isatty():
        raise UsageError(
            "refused: no terminal to confirm on and --yes was not given",
            why="break-glass actions need a person to confirm them",
            fix="run it in a terminal and type yes, or add --yes in a script",
        )
    print(question, end="", flush=True)
    answer = stream.readline().strip()
    if answer != "yes":
        raise UsageError("cancelled: nothing was changed", fix="run it again and type yes")


def read_new_password(args: argparse.Namespace, *, stdin: TextIO | None = None) -> str:
    """From `--password-stdin` (one line) or a prompt typed twice; never from argv (CLI-5)."""
    stream = stdin or sys.stdin
    if getattr(args, "password_stdin", False):
        line = stream.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise UsageError(
                "no password on standard input",
                fix="pipe it in: printf '%s\\n' \"$PASSWORD\" | keel … --password-stdin",
            )
        return password
    if not stream.isatty():
        raise UsageError(
            "no password given",
            why="there is no terminal to prompt on, and passwords are never read from arguments",
            fix="pipe it with --password-stdin, or run the command in a terminal",
        )
    import getpass

    first = getpass.getpass("New password: ")
    second = getpass.getpass("Same password again: ")
    if first != second:
        raise UsageError("the two passwords differ; nothing was changed", fix="run it again")
    return first
