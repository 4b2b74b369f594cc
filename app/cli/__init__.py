"""`keel <command>`: the argument parser and dispatch; errors rendered per CLI-1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from app import __version__
from app.errors import ConfigError, KeelError, UsageError

# Every subcommand module has register(subparsers) and sets `run` (args -> exit code).
COMMANDS = (
    "serve",
    "migrate",
    "doctor",
    "demo",
    "docs",
    "version",
    "new",
    "build",
    "startapp",
    "audit",
    "mail",
    "user",
    "group",
    "perm",
    "theme",
    "ai",
    "memory",
    "secret",
    "token",
    "import",
)
# A command whose name is a Python keyword lives in a module of another name.
MODULES = {"import": "importing"}


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in the Problem/Why/Fix shape, exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(
            message,
            why=f"`{self.prog}` was called with arguments it does not accept",
            fix=f"see `{self.prog} --help`",
        )


# Global options that take a value: the word after them is not a command.
_VALUED_OPTIONS = ("--config", "--site")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line, or None (help, a typo, no command yet)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None  # `keel --help …` lists every command
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> Parser:
    """The parser with every command, or with `only` that one: a process runs one command, and
    importing the other command modules (and what they import) would cost every start."""
    parser = Parser(
        prog="keel",
        description="Keel: an operations appliance on PostgreSQL.",
        epilog="Run `keel <command> --help` for a command's options.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $KEEL_CONFIG, /etc/keel/keel.toml)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    parser.add_argument(
        "--site",
        metavar="DIR",
        help="serve the site project in DIR instead of the one built in (development)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"keel {__version__}")
    sub = parser.add_subparsers(
        title="commands", dest="command", metavar="<command>", parser_class=Parser
    )
    import importlib

    for name in (only,) if only else COMMANDS:
        importlib.import_module(f"app.cli.{MODULES.get(name, name)}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from app.ops.extraction import prune_old_extractions

        prune_old_extractions()
    except Exception:  # noqa: S110 - pruning is housekeeping; never block a command on it
        pass
    parser = build_parser(chosen_command(argv))
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 2
        return int(args.run(args))
    except ConfigError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    except KeelError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `keel audit tail --json | head`: the reader left; that is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
