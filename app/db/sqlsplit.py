"""Split a SQL script into statements, keeping each one's line number (for DB-4 errors)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in the file


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    """Index just past the closing quote; doubled quotes are escapes."""
    i += 1
    while i < len(sql):
        if sql[i] == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _skip_block_comment(sql: str, i: int) -> int:
    depth, i = 1, i + 2
    while i < len(sql) and depth:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
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


def split_sql(sql: str) -> list[Statement]:
    """Statements separated by top-level semicolons; strings, identifiers, comments and
    dollar-quoted bodies are respected."""
    out: list[Statement] = []
    start, i, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            i = _skip_quoted(sql, i, ch)
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif (
            ch == "$"
            and (m := _DOLLAR.match(sql, i))
            and not (i and (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            end = sql.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
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
