"""`keel doctor` knows the site: declarations against the live catalog, and searches that scan
a large table without an index (real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import psycopg

from app.admin.drift import drift_checks
from app.admin.resources import Registry, Resource, register
from app.admin.setup import check_declarations, doctor_checks
from app.config import Config
from app.ops.doctor import FAIL, OK, WARN, Check

TABLES = """
CREATE TABLE parts (
  id serial PRIMARY KEY, name text NOT NULL, colour text, code text, weight numeric);
CREATE TABLE bins (id serial PRIMARY KEY, label text NOT NULL, part_id int REFERENCES parts);
"""


async def run(conn: psycopg.AsyncConnection[Any], registry: Registry) -> list[Check]:
    bound, _problems = await check_declarations(conn, registry)
    return await drift_checks(conn, registry, bound)


async def test_matching_declarations_give_one_ok_line(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(TABLES)
        checks = await run(conn, register(Resource("parts", search_fields=("name",))))
    assert [(c.status, c.name) for c in checks] == [(OK, "site drift")]


async def test_a_dropped_column_or_table_is_a_failure_with_the_fix(database_url: str) -> None:
    registry = register(
        Resource(
            "parts",
            list_display=("name", "colour"),
            search_fields=("colour",),
            labels={"colour": "Colour"},
        ),
        Resource("bins", list_display=("label", "part.colour")),
        Resource("gone"),
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(TABLES)
        assert [c.status for c in await run(conn, registry)].count(FAIL) == 1  # only "gone"
        await conn.execute("ALTER TABLE parts DROP COLUMN colour")
        checks = await run(conn, registry)
    failures = [c.detail for c in checks if c.status == FAIL]
    assert len(failures) == 3, failures
    parts = next(f for f in failures if f.startswith("parts:"))
    assert "'colour'" in parts and "list_display, search_fields, labels" in parts
    assert "fix: remove 'colour'" in parts
    assert any(f.startswith("bins:") and "'part.colour'" in f for f in failures)
    assert any("'gone'" in f and "keel migrate" in f for f in failures)


async def test_a_not_null_column_the_form_cannot_fill_is_a_warning(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(TABLES)
        await conn.execute("ALTER TABLE parts ADD COLUMN sizes int[] NOT NULL")
        await conn.execute("ALTER TABLE parts ADD COLUMN sku text NOT NULL")
        await conn.execute("ALTER TABLE parts ADD COLUMN note text NOT NULL DEFAULT ''")
        checks = await run(conn, register(Resource("parts", readonly_fields=("sku",))))
        read_only = await run(conn, register(Resource("parts", read_only=True)))
    warnings = [c.detail for c in checks if c.status == WARN]
    assert len(warnings) == 2, warnings
    assert any("'sizes'" in w and "Arrays" in w for w in warnings)
    sku = next(w for w in warnings if "'sku'" in w)
    assert "readonly_fields" in sku and 'ALTER TABLE "public"."parts" ALTER COLUMN "sku"' in sku
    assert [c.status for c in read_only] == [OK]  # no form creates rows there


async def test_unindexed_search_on_a_large_table_names_the_index_to_create(
    database_url: str,
) -> None:
    registry = register(
        Resource("parts", search_fields=("name", "code", "id")),
        Resource("bins", search_fields=("label", "part.name")),
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(TABLES)
        await conn.execute(
            "INSERT INTO parts (name, code) SELECT 'part ' || g, 'C' || g"
            " FROM generate_series(1, 120000) g"
        )
        await conn.execute("INSERT INTO bins (label, part_id) VALUES ('b', 1)")
        await conn.execute("ANALYZE parts; ANALYZE bins")
        checks = await run(conn, registry)
        warnings = [c.detail for c in checks if c.status == WARN]
        assert len(warnings) == 3, warnings  # parts.name, parts.code, bins → part.name
        name = next(w for w in warnings if w.startswith("parts:") and "'name'" in w)
        fix = name.partition("fix: ")[2]
        assert fix == (
            "CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX CONCURRENTLY "
            '"parts_name_trgm" ON "public"."parts" USING gin ("name" gin_trgm_ops);'
        )
        assert "≈ 120,000 rows" in name
        # The fix, run as printed, clears the finding (CONCURRENTLY: outside a transaction).
        for statement in fix.split("; "):
            await conn.execute(statement)
        after = [c.detail for c in await run(conn, registry) if c.status == WARN]
    assert len(after) == 1 and "'code'" in after[0], after
    # Below the threshold nothing is said: a small table is read quickly.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        bound, _p = await check_declarations(conn, registry)
        small = await drift_checks(conn, registry, bound, large=10**9)
    assert [c.status for c in small] == [OK]


async def test_doctor_reports_the_site_check(config: Config) -> None:
    checks = await doctor_checks(config)
    assert any(c.name == "site drift" for c in checks), checks
