"""How the request pool's connections load values the driver cannot represent by default.

PostgreSQL dates and timestamps may be `infinity` or `-infinity` (common in "valid until"
columns); Python's date and datetime cannot, and psycopg refuses to load them, which would
fail every page that reads such a row. Here they load as the largest and smallest values
Python has (9999-12-31, 0001-01-01), as psycopg's documentation suggests: pages show them,
and a form saved without touching the field leaves the stored `infinity` unchanged (the admin
writes only the fields that changed).

Every other value goes to psycopg's own loader, the compiled one when psycopg's C module is
installed (it is, in the built executable). The compiled loaders cannot be subclassed, so each
loader here wraps one: a list page loads a hundred timestamps, and the pure-Python parser
cost about a tenth of the page's CPU, the compiled one a quarter of that.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import _cmodule
from psycopg.abc import AdaptContext
from psycopg.adapt import Loader
from psycopg.types import datetime as pydatetime

# The compiled module when installed (psycopg[binary] or [c]), else psycopg's Python loaders.
_FAST: Any = _cmodule._psycopg if _cmodule._psycopg is not None else pydatetime


class _Infinite(Loader):
    """psycopg's loader for one type, with the two infinities mapped to Python's extremes."""

    base: Any
    highest: Any
    lowest: Any

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._load: Callable[[Any], Any] = self.base(oid, context).load

    def load(self, data: Any) -> Any:
        # Both infinities end in "y", no date or timestamp text does: one cheap test per value.
        if data[-1:] == b"y":
            raw = bytes(data)
            if raw == b"infinity":
                return self.highest
            if raw == b"-infinity":
                return self.lowest
        return self._load(data)


class _Date(_Infinite):
    base = _FAST.DateLoader
    highest, lowest = date.max, date.min


class _Timestamp(_Infinite):
    base = _FAST.TimestampLoader
    highest, lowest = datetime.max, datetime.min


class _Timestamptz(_Infinite):
    base = _FAST.TimestamptzLoader
    highest, lowest = datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)


def register_loaders(conn: psycopg.AsyncConnection[Any]) -> None:
    """Install the loaders above on one connection (text format, psycopg's default)."""
    conn.adapters.register_loader("date", _Date)
    conn.adapters.register_loader("timestamp", _Timestamp)
    conn.adapters.register_loader("timestamptz", _Timestamptz)


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's `configure` callback."""
    register_loaders(conn)
