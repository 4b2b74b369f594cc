"""How the request pool's connections load values the driver cannot represent by default.

PostgreSQL dates and timestamps may be `infinity` or `-infinity` (common in "valid until"
columns); Python's date and datetime cannot, and psycopg refuses to load them, which would
fail every page that reads such a row. Here they load as the largest and smallest values
Python has (9999-12-31, 0001-01-01), as psycopg's documentation suggests: pages show them,
and a form saved without touching the field leaves the stored `infinity` unchanged (the admin
writes only the fields that changed).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader


class _Date(DateLoader):
    def load(self, data: Any) -> date:
        raw = bytes(data)
        if raw == b"infinity":
            return date.max
        if raw == b"-infinity":
            return date.min
        return super().load(data)


class _Timestamp(TimestampLoader):
    def load(self, data: Any) -> datetime:
        raw = bytes(data)
        if raw == b"infinity":
            return datetime.max
        if raw == b"-infinity":
            return datetime.min
        return super().load(data)


class _Timestamptz(TimestamptzLoader):
    def load(self, data: Any) -> datetime:
        raw = bytes(data)
        if raw == b"infinity":
            return datetime.max.replace(tzinfo=UTC)
        if raw == b"-infinity":
            return datetime.min.replace(tzinfo=UTC)
        return super().load(data)


def register_loaders(conn: psycopg.AsyncConnection[Any]) -> None:
    """Install the loaders above on one connection (text format, psycopg's default)."""
    conn.adapters.register_loader("date", _Date)
    conn.adapters.register_loader("timestamp", _Timestamp)
    conn.adapters.register_loader("timestamptz", _Timestamptz)


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's `configure` callback."""
    register_loaders(conn)
