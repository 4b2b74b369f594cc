"""Dates and timestamps as the request pool loads them: infinities, zones, precision, speed path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import _cmodule

from app.db import adapt


async def _conn(url: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await adapt.configure(conn)
    return conn


async def test_infinities_load_as_the_extremes_and_ordinary_values_unchanged(
    empty_database_url: str,
) -> None:
    async with await _conn(empty_database_url) as conn:
        cur = await conn.execute(
            "SELECT 'infinity'::date, '-infinity'::date, 'infinity'::timestamp,"
            " '-infinity'::timestamp, 'infinity'::timestamptz, '-infinity'::timestamptz,"
            " '2024-02-29'::date, '2024-02-29 23:59:58.123456'::timestamp,"
            " '2024-02-29 23:59:58.123456+02'::timestamptz, NULL::timestamptz"
        )
        row = await cur.fetchone()
    assert row == (
        date.max,
        date.min,
        datetime.max,
        datetime.min,
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        date(2024, 2, 29),
        datetime(2024, 2, 29, 23, 59, 58, 123456),
        datetime(2024, 2, 29, 21, 59, 58, 123456, tzinfo=UTC),
        None,
    )


async def test_timestamptz_follows_the_session_time_zone(empty_database_url: str) -> None:
    async with await _conn(empty_database_url) as conn:
        await conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        cur = await conn.execute("SELECT '2024-01-01 00:00:00+00'::timestamptz")
        (value,) = await cur.fetchone()  # type: ignore[misc]
    assert value == datetime(2024, 1, 1, tzinfo=UTC)
    assert value.utcoffset() == timedelta(hours=5, minutes=30)
    assert value.tzinfo is not None and value.tzinfo != UTC


async def test_a_date_before_year_one_is_still_refused_as_before(empty_database_url: str) -> None:
    # Python has no year 0; the driver's own error, as without these loaders (no silent value).
    async with await _conn(empty_database_url) as conn:
        with pytest.raises(psycopg.DataError):
            await (await conn.execute("SELECT '0044-03-15 BC'::date")).fetchone()


@pytest.mark.skipif(_cmodule._psycopg is None, reason="psycopg's C module is not installed")
def test_the_compiled_loaders_do_the_parsing_when_installed() -> None:
    """A list page loads about a hundred timestamps; psycopg's Python parser made that a tenth
    of the page's CPU (docs/benchmarks.md). The built executable ships the C module."""
    assert adapt._Timestamptz.base is _cmodule._psycopg.TimestamptzLoader
    assert adapt._Timestamp.base is _cmodule._psycopg.TimestampLoader
    assert adapt._Date.base is _cmodule._psycopg.DateLoader
