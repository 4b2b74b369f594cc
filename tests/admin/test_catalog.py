"""The catalog reads the site's tables from Postgres (RES-1): types, keys, choices, indexes."""

from __future__ import annotations

import psycopg
import pytest

from app.db.catalog import load_catalog, parse_choices


async def _catalog(url: str, tables: list[str]) -> dict:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await load_catalog(conn, tables)


async def test_bookings_columns_types_and_constraints_come_from_the_database(database_url):
    cat = await _catalog(database_url, ["bookings", "customers"])
    b = cat["bookings"]
    assert b.primary_key == ("id",)
    assert [c.name for c in b.columns] == [
        "id", "customer_id", "status", "amount", "scheduled_at", "notes", "created_at",
    ]  # fmt: skip
    by = {c.name: c for c in b.columns}
    assert by["id"].type_name == "bigint" and by["id"].is_identity
    assert by["customer_id"].type_name == "integer" and not by["customer_id"].nullable
    assert by["customer_id"].fk.target_table == "customers"
    assert by["customer_id"].fk.target_column == "id"
    assert by["status"].choices == ("pending", "confirmed", "completed", "cancelled", "no_show")
    assert (by["amount"].type_name, by["amount"].numeric_precision, by["amount"].numeric_scale) == (
        "numeric", 10, 2,
    )  # fmt: skip
    assert by["scheduled_at"].type_name == "timestamptz"
    assert by["notes"].has_default and not by["notes"].nullable
    assert by["notes"].default == "''::text" and by["amount"].default is None
    assert b.leading_index("scheduled_at") is not None
    assert b.trigram_index("notes") is not None
    assert b.constraint_columns("bookings_status_check") == ("status",)
    assert cat["customers"].constraint_columns("customers_email_key") == ("email",)
    assert [fk.table for fk in cat["customers"].referenced_by] == ["bookings"]


async def test_every_column_kind_of_the_demo_site_is_typed(database_url):
    cat = await _catalog(database_url, ["technicians", "properties"])
    t = {c.name: c for c in cat["technicians"].columns}
    assert t["name"].type_name == "varchar" and t["name"].max_length == 120
    assert t["is_active"].type_name == "boolean"
    assert t["hired_on"].type_name == "date"
    assert t["shift_start"].type_name == "time"
    assert t["profile"].type_name == "jsonb"
    assert t["supervisor_id"].fk.target_table == "technicians"
    assert t["supervisor_id"].fk.on_delete == "set null"
    p = {c.name: c for c in cat["properties"].columns}
    assert p["search"].type_name == "tsvector" and p["search"].is_generated
    assert not p["search"].writable
    assert p["units"].type_name == "smallint"
    assert p["details"].type_name == "json"
    assert p["kind"].choices[0] == "house"


async def test_missing_tables_are_left_out_and_hostile_names_are_harmless(database_url):
    cat = await _catalog(database_url, ["nope", "bookings; DROP TABLE bookings", "bookings"])
    assert list(cat) == ["bookings"]


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            "CHECK ((status = ANY (ARRAY['a'::text, 'b''c'::text])))",
            ("status", ("a", "b'c")),
        ),
        (
            "CHECK (((kind)::text = ANY ((ARRAY['x'::character varying, 'y'::character varying])::text[])))",
            ("kind", ("x", "y")),
        ),
        ("CHECK ((amount > (0)::numeric))", None),
    ],
)
def test_choices_are_parsed_from_in_checks(definition, expected):
    assert parse_choices(definition) == expected


async def test_many_tables_in_four_queries_each_as_if_read_alone(database_url):
    """A start reads every declared table at once: four catalog queries however many there are,
    with the same answer as reading each table by itself (schemas, the search_path, foreign
    keys between the tables read together and of a table to itself)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE SCHEMA other;"
            " CREATE TABLE other.bookings (id int PRIMARY KEY, note text);"
            " CREATE TABLE other.lines (id int PRIMARY KEY,"
            "   booking_id bigint NOT NULL REFERENCES public.bookings (id),"
            "   other_id int REFERENCES other.bookings (id));"
        )
        names = [
            "bookings", "customers", "technicians", "properties", "other.bookings",
            "other.lines", "public.customers", "nope", "other.nope",
        ]  # fmt: skip
        seen: list[str] = []

        class Counting(psycopg.AsyncCursor):  # type: ignore[type-arg]
            async def execute(self, query, params=None, **kwargs):  # type: ignore[no-untyped-def]
                seen.append(str(query))
                return await super().execute(query, params, **kwargs)

        conn.cursor_factory = Counting
        together = await load_catalog(conn, names)
        assert len(seen) == 4
        alone = {n: (await load_catalog(conn, [n])).get(n) for n in names}
    assert list(together) == [n for n in names if "nope" not in n]
    assert together == {n: t for n, t in alone.items() if t is not None}
    assert together["bookings"].schema == "public"
    assert together["other.bookings"].column_names == ("id", "note")
    assert together["public.customers"] == together["customers"]
    lines = together["other.lines"]
    assert [(fk.target_schema, fk.target_table) for fk in lines.foreign_keys] == [
        ("public", "bookings"), ("other", "bookings"),
    ]  # fmt: skip
    assert [fk.table for fk in together["other.bookings"].referenced_by] == ["lines"]
    assert "lines" in [fk.table for fk in together["bookings"].referenced_by]
    tech = together["technicians"]
    assert "technicians_supervisor_id_fkey" in [fk.name for fk in tech.foreign_keys]
    assert "technicians_supervisor_id_fkey" in [fk.name for fk in tech.referenced_by]
