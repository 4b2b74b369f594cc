"""`keel theme generate`: colour tokens from brand colours, with their contrast report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from app.cli.common import common_options, out_from
from app.errors import KeelError, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "theme",
        parents=[common_options()],
        help="compute colour tokens from brand colours",
        description="Colour themes for the admin.",
    )
    actions = p.add_subparsers(title="actions", dest="action", metavar="<action>")
    gen = actions.add_parser(
        "generate",
        parents=[common_options()],
        help="compute the tokens and check their contrast",
        description=(
            "Compute Keel's colour tokens (brand fill, hover, pressed, link text, tints, focus "
            "ring and the success/warning/danger/info colours, light and dark) from brand "
            "colours. Every text pair is checked for 4.5:1 and every border, focus ring and "
            "control for 3:1 (WCAG 2.2); a pair that fails is repaired by changing lightness, "
            "keeping the hue. Very vivid colours are toned down, status colours turned away "
            "from a brand hue they would be confused with. Save the result as static/theme.css "
            "in a site project, or set brand_color in the configuration instead."
        ),
        epilog="Example: keel theme generate --brand '#0f766e' --output static/theme.css",
    )
    gen.add_argument(
        "--brand",
        action="append",
        required=True,
        metavar="#RRGGBB",
        help="brand colour; repeat for accent colours (the first is the main one)",
    )
    gen.add_argument("--output", "-o", metavar="FILE", help="write the CSS tokens to FILE")
    gen.add_argument("--json", action="store_true", help="print the report as JSON")
    gen.set_defaults(run=run)
    p.set_defaults(run=lambda _args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    from app import theme as engine

    try:
        theme = engine.generate(args.brand)
    except engine.ColourError as exc:
        raise UsageError(
            f"brand colour {exc}",
            why="the theme engine needs an exact sRGB colour to compute contrast",
            fix="write it as six hex digits, e.g. --brand '#0f766e' (quote the #)",
        ) from None
    checks = theme.checks()
    if args.output:
        _write(Path(args.output), theme.css())
    out = out_from(args)
    if args.json:
        out.json({**theme.report(), "output": args.output or None})
        return 0 if all(c.ok for c in checks) else 1
    for note in theme.notes:
        out.warn(note)
    width = max(len(f"--keel-{c.fg} on --keel-{c.bg}") for c in checks)
    out.line(f"{'theme':<6} {'pair':<{width}} {'need':>5} {'ratio':>6}  use")
    for c in checks:
        mark = out.paint("ok", "green") if c.ok else out.paint("FAIL", "red")
        pair = f"--keel-{c.fg} on --keel-{c.bg}"
        out.line(f"{c.theme:<6} {pair:<{width}} {c.need:>5.1f} {c.ratio:>6.2f}  {mark} {c.use}")
    failed = [c for c in checks if not c.ok]
    if failed:  # the engine repairs every pair; this guards the guarantee itself
        out.fail(f"{len(failed)} pair(s) below their ratio")
        return 1
    out.ok(f"{len(checks)} pairs meet WCAG 2.2 contrast in light and dark")
    if args.output:
        out.ok(f"wrote {args.output}")
        out.next_step(
            "in a site project, keep it as static/theme.css (every page links it after keel.css)"
        )
    else:
        out.next_step("add --output static/theme.css to write the tokens, or --json for scripts")
    return 0


def _write(path: Path, css: str) -> None:
    """Atomically: a half-written stylesheet would silently break every page."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(css, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise KeelError(
            f"cannot write {path}: {exc.strerror}",
            why="the tokens file could not be saved",
            fix="check that the directory exists and that you may write to it",
            exit_code=1,
        ) from None
