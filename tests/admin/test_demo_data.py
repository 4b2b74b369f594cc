"""Demo data (OPS-8, CLI-2): realistic rows in all four site tables, deterministic, idempotent."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from app.demo import data as demo_data

NOW = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)
# The benchmark's data set, kept in the repository beside the floor server it is measured with.
SEED_SQL = Path(__file__).resolve().parents[2] / "bench" / "floor" / "seed.sql"


async def _fingerprint(url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        out = {}
        for table in demo_data.TABLES:
            cur = await conn.execute(
                f"SELECT count(*)::text || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM {table} t"
            )
            out[table] = (await cur.fetchone())[0]
        return out


async def test_small_seed_fills_all_four_tables_and_reports_progress(database_url: str) -> None:
    seen: list[tuple[str, int, int]] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        counts = await demo_data.seed_demo(conn, progress=lambda *a: seen.append(a), now=NOW)
        assert counts == {"technicians": 30, "properties": 300, "customers": 1000, "bookings": 3000}
        assert sum(counts.values()) >= 2000  # "a few thousand rows"
        for table, n in counts.items():
            assert (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone())[0] == n
        # Identity sequences continue after the seeded ids: a new row does not collide.
        cur = await conn.execute(
            "INSERT INTO customers (name, email, city, created_at)"
            " VALUES ('New', 'new@example.com', 'Oslo', now()) RETURNING id"
        )
        assert (await cur.fetchone())[0] == 1001
        # Every booking points at an existing customer; statuses are the five allowed ones.
        cur = await conn.execute("SELECT DISTINCT status FROM bookings ORDER BY 1")
        assert [r[0] for r in await cur.fetchall()] == [
            "cancelled",
            "completed",
            "confirmed",
            "no_show",
            "pending",
        ]
        # The self-reference and the FK to technicians are used.
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE supervisor_id IS NOT NULL) FROM technicians"
        )
        assert (await cur.fetchone())[0] > 0
    assert ("bookings", 3000, 3000) in seen and ("customers", 1000, 1000) in seen


async def test_seeding_again_skips_and_changes_nothing(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await demo_data.seed_demo(conn, now=NOW)
    before = await _fingerprint(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        again = await demo_data.seed_demo(conn, now=NOW)
    assert again == dict.fromkeys(demo_data.TABLES, 0)
    assert await _fingerprint(database_url) == before


async def test_same_seed_gives_identical_data(pg_server, template_db: str) -> None:  # type: ignore[no-untyped-def]
    prints = []
    for _ in range(2):
        name = pg_server.create_database(template_db)
        try:
            url = pg_server.url(name)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await demo_data.seed_demo(conn, now=NOW)
            prints.append(await _fingerprint(url))
        finally:
            pg_server.drop_database(name)
    assert prints[0] == prints[1]


async def test_unknown_size_is_refused(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="small, large"):
            await demo_data.seed_demo(conn, size="huge")


def _seed_select(marker: str, series: str, replacement: str) -> str:
    text = SEED_SQL.read_text()
    start = text.index(marker) + len(marker)
    body = text[start : text.index(";\n", start)]
    assert series in body
    return body.replace(series, replacement)


async def test_large_generator_reproduces_the_benchmark_rows(database_url: str) -> None:
    """`size=large` must give seed.sql's data row for row (customer 4242 is the S3 search)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(demo_data.MIX)
        theirs = await (
            await conn.execute(
                _seed_select(
                    "INSERT INTO customers (id, name, email, city, created_at)\n",
                    "generate_series(1, 100000)",
                    "generate_series(4200, 4300)",
                )
            )
        ).fetchall()
        ours = await (
            await conn.execute(
                demo_data.CUSTOMERS.strip().split("\n", 1)[1],
                {"base": datetime(2019, 1, 1, tzinfo=UTC), "lo": 4200, "hi": 4300},
            )
        ).fetchall()
        assert ours == theirs
        assert next(r for r in ours if r[0] == 4242)[2] == "richard.adams.4242@example.org"
        theirs = await (
            await conn.execute(
                _seed_select(
                    "INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, notes, created_at)\n",
                    "generate_series(1, 1000000)",
                    "generate_series(1, 400)",
                )
            )
        ).fetchall()
        ours = await (
            await conn.execute(
                demo_data.BOOKINGS.strip().split("\n", 1)[1],
                {"base": datetime(2022, 1, 1, tzinfo=UTC), "customers": 100000, "lo": 1, "hi": 400},
            )
        ).fetchall()
        assert ours == theirs


def test_progress_is_plain_lines_without_a_terminal() -> None:
    stream = io.StringIO()
    show = demo_data.console_progress(stream)
    show("bookings", 100_000, 1_000_000)
    show("bookings", 1_000_000, 1_000_000)
    assert (
        stream.getvalue()
        == "bookings: 100,000/1,000,000 rows\nbookings: 1,000,000/1,000,000 rows\n"
    )
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_progress_is_a_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    show = demo_data.console_progress(stream)
    show("customers", 50, 100)
    show("customers", 100, 100)
    text = stream.getvalue()
    assert text.startswith("\r") and "█" in text and text.endswith("100/100\n")
