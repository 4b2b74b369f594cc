"""Terminal output: colour only on a TTY and never with NO_COLOR (CLI-2); next steps (CLI-4)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "bold": "1", "dim": "2"}


class Out:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout

    @property
    def colour(self) -> bool:
        return self.stream.isatty() and "NO_COLOR" not in os.environ

    @property
    def tty(self) -> bool:
        return self.stream.isatty()

    def paint(self, text: str, colour: str) -> str:
        return f"\033[{_COLOURS[colour]}m{text}\033[0m" if self.colour else text

    def line(self, text: str = "") -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def result(self, text: str) -> None:
        """Output that is the point of the command: printed even with --quiet."""
        print(text, file=self.stream, flush=True)

    def ok(self, text: str) -> None:
        self.line(f"{self.paint('✓', 'green')} {text}")

    def warn(self, text: str) -> None:
        self.line(f"{self.paint('!', 'yellow')} {text}")

    def fail(self, text: str) -> None:
        self.result(f"{self.paint('✗', 'red')} {text}")

    def next_step(self, text: str) -> None:
        self.line(f"{self.paint('Next:', 'bold')} {text}")

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str), file=self.stream, flush=True)
