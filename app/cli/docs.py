"""`keel docs`: the documentation embedded in this executable, and the generated CLI reference."""

from __future__ import annotations

import argparse
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from app.cli.common import common_options, out_from
from app.errors import NotFound


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "docs",
        parents=[common_options()],
        help="read the embedded documentation",
        description="List the documentation pages embedded in this executable, or print one.",
    )
    p.add_argument(
        "topic", nargs="?", help="page to print, e.g. configuration or security/sessions"
    )
    p.add_argument(
        "--cli-reference",
        action="store_true",
        help="print the CLI reference generated from the parser",
    )
    p.add_argument(
        "--config-reference",
        action="store_true",
        help="print the configuration reference generated from the settings table",
    )
    p.set_defaults(run=run)


def docs_root() -> Traversable:
    """`app/docs` inside a built artifact; the repository's docs/ when run from source."""
    embedded = resources.files("app") / "docs"
    if embedded.is_dir():
        return embedded
    return Path(__file__).resolve().parents[2] / "docs"


def topics(root: Traversable | None = None) -> list[str]:
    root = root or docs_root()
    found: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        if not node.is_dir():
            return
        for entry in node.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".md"):
                found.append(prefix + entry.name[:-3])

    walk(root, "")
    return sorted(found)


def cli_reference() -> str:
    from app.cli import build_parser

    parser = build_parser()
    lines = [
        "# CLI reference",
        "",
        "Generated from the parser by `keel docs --cli-reference`.",
        "",
        "```",
        parser.format_help().rstrip(),
        "```",
    ]
    _walk(parser, "keel", 2, lines)
    return "\n".join(lines) + "\n"


def _walk(parser: argparse.ArgumentParser, prefix: str, depth: int, lines: list[str]) -> None:
    """Every command and every subcommand below it (`keel user create`, …), depth first."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in subs:
        for name, p in sub.choices.items():
            if p.prog != f"{prefix} {name}":  # an alias (`keel new`) shares its parser
                continue
            heading = "#" * min(depth, 6)
            lines += ["", f"{heading} {prefix} {name}", "", "```", p.format_help().rstrip(), "```"]
            _walk(p, f"{prefix} {name}", depth + 1, lines)


def run(args: argparse.Namespace) -> int:
    out = out_from(args)
    if args.config_reference:
        from app.config import reference_markdown

        out.result(reference_markdown())
        return 0
    if args.cli_reference:
        out.result(cli_reference())
        return 0
    if not args.topic:
        for t in topics():
            out.result(t)
        return 0
    parts = args.topic.removesuffix(".md").split("/")
    node = docs_root()
    for part in parts[:-1]:
        node = node / part
    node = node / f"{parts[-1]}.md"
    if any(p in ("", ".", "..") for p in parts):
        raise NotFound(
            f"no documentation page named {args.topic!r}", fix="run `keel docs` to list the pages"
        )
    if not node.is_file():
        raise NotFound(
            f"no documentation page named {args.topic!r}", fix="run `keel docs` to list the pages"
        )
    out.result(node.read_text(encoding="utf-8"))
    return 0
