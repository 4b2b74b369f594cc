"""Split a SQL script into statements, keeping each one's line number (for DB-4 errors).

A script whose quoted string, quoted identifier, dollar-quoted body or block comment never
ends is refused with `UnterminatedSql`: splitting it anyway would silently swallow every
statement after the opening quote into one, and the error would surface (if at all) far from
its cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import KeelError

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in the file


class UnterminatedSql(KeelError):
    """A quote, dollar quote or block comment opened at `line` and never closed."""

    def __init__(self, what: str, line: int) -> None:
        self.what, self.line = what, line
        super().__init__(
            f"{what} opened at line {line} is never closed",
            why="everything after it would be read as part of it, so the statements cannot "
            "be told apart",
            fix=f"close the {what} that starts at line {line}",
        )


def _line_of(sql: str, i: int) -> int:
    return sql.count("\n", 0, i) + 1


def _skip_quoted(sql: str, i: int, quote: str, backslash: bool = False) -> int:
    """Index just past the closing quote; doubled quotes (and, in E'' strings, backslashes)
    are escapes."""
    start, i = i, i + 1
    while i < len(sql):
        if backslash and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    what = "quoted identifier" if quote == '"' else "string"
    raise UnterminatedSql(what, _line_of(sql, start))


def _skip_block_comment(sql: str, i: int) -> int:
    start, depth, i = i, 1, i + 2
    while i < len(sql) and depth:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    if depth:
        raise UnterminatedSql("/* comment", _line_of(sql, start))
    return i


def _skip_blank(text: str) -> int:
    """Index of the first character that is neither white space nor a comment."""
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        else:
            return i
    return len(text)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def split_sql(sql: str) -> list[Statement]:
    """Statements separated by top-level semicolons; strings, identifiers, comments and
    dollar-quoted bodies are respected. Raises UnterminatedSql for one that never ends."""
    out: list[Statement] = []
    start, i, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            # E'…' (escape string syntax): a backslash escapes the next character.
            escape = (
                ch == "'"
                and i > 0
                and sql[i - 1] in "eE"
                and not (i > 1 and _is_word_char(sql[i - 2]))
            )
            i = _skip_quoted(sql, i, ch, backslash=escape)
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch == "$" and (m := _DOLLAR.match(sql, i)) and not (i and _is_word_char(sql[i - 1])):
            end = sql.find(m.group(0), m.end())
            if end < 0:
                raise UnterminatedSql(f"dollar-quoted body {m.group(0)}", _line_of(sql, i))
            i = end + len(m.group(0))
        elif ch == ";":
            _emit(sql, start, i, out)
            start = i = i + 1
        else:
            i += 1
    _emit(sql, start, n, out)
    return out


def _emit(sql: str, start: int, end: int, out: list[Statement]) -> None:
    chunk = sql[start:end]
    lead = _skip_blank(chunk)
    if lead == len(chunk):
        return
    out.append(Statement(chunk[lead:].rstrip(), sql.count("\n", 0, start + lead) + 1))
