"""Formula-injection safety for CSV cells, shared by the export, the import and its preview.

A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@` (or a tab or carriage return,
which some strip first) as a formula. Keel writes such text with a leading apostrophe, which
spreadsheets show as plain text, and reads that apostrophe back off on import, so an exported
file imports again to exactly the stored values. Text that already starts with an apostrophe
followed by one of those characters gets one more, so the round trip stays exact.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def needs_quote(text: str) -> bool:
    return text.startswith(FORMULA_START) or (
        text.startswith("'") and text.lstrip("'").startswith(FORMULA_START)
    )


def neutralise(text: str) -> str:
    """Text as it may go into a CSV file or be shown for copying into a spreadsheet."""
    return "'" + text if needs_quote(text) else text


def restore(text: str) -> str:
    """The inverse of `neutralise`: a cell read from a CSV file as the value it stands for."""
    if text.startswith("'") and needs_quote(text[1:]):
        return text[1:]
    return text
