"""The admin serves any real schema without a 500: one table per shape real databases hold.

Each shape (enums, domains, arrays, JSON, tsvector, bytea, uuid, network types, interval,
numerics, times with microseconds, money, citext, generated and identity columns, composite
keys, no key, partitions, views, materialized views, non-ASCII and mixed-case names, two
schemas with the same table name) gets a table with a few rows, NULLs and extreme values.
Every resource is then walked over real HTTP: list, search, every filter, sorting, paging,
both exports, and per row the edit page and a save (unchanged, then with one field edited).
The walk runs twice: over declarations written from the catalog here, and over the source
`generate_declarations` writes for the same database.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import types as pytypes
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import psycopg
import pytest
from psycopg import sql

from app.admin.introspect import generate_declarations
from app.admin.resources import Registry, Resource, filter_kind, register, search_kind
from app.admin.setup import REGISTRY
from app.admin.types import is_opaque
from app.db.catalog import Table, load_table
from app.errors import KeelError
from tests.admin.test_edit_support import Browser, sign_in
from tests.admin.test_readonly import make_config
from tests.helpers import cheap_app

SCHEMA_SQL = r"""
CREATE TYPE mood AS ENUM ('happy', 'sad', 'so-so');
CREATE TYPE "Priority" AS ENUM ('Low', 'High');
CREATE DOMAIN positive_amount AS numeric(12, 2) CHECK (VALUE > 0);
CREATE DOMAIN birthday AS date CHECK (VALUE > DATE '1800-01-01');
CREATE DOMAIN short_code AS varchar(8);
CREATE DOMAIN big_amount AS positive_amount;

CREATE TABLE feelings (
  id serial PRIMARY KEY, name text NOT NULL, feeling mood NOT NULL DEFAULT 'so-so',
  maybe mood, prio "Priority", status text CHECK (status IN ('open', 'closed')));
INSERT INTO feelings (name, feeling, maybe, prio, status) VALUES
  ('first', 'happy', NULL, 'High', 'open'), ('second', 'sad', 'happy', NULL, NULL),
  ('', 'so-so', 'sad', 'Low', 'closed');

CREATE TABLE domains (
  id serial PRIMARY KEY, code short_code, amount positive_amount, born birthday, big big_amount);
INSERT INTO domains (code, amount, born, big) VALUES
  ('ABC', 0.01, '1800-01-02', 9999999999.99), (NULL, NULL, NULL, NULL),
  ('Z', 9999999999.99, '9999-12-31', 1);

CREATE TABLE arrays (
  id serial PRIMARY KEY, label text, tags text[], scores int[], moods mood[], grid int[][]);
INSERT INTO arrays (label, tags, scores, moods, grid) VALUES
  ('one', '{a,"b c","d,e"}', '{1,2,NULL}', '{happy,sad}', '{{1,2},{3,4}}'),
  ('none', NULL, '{}', NULL, NULL);

CREATE TABLE documents (
  id serial PRIMARY KEY, title text NOT NULL, body jsonb, raw json, search tsvector, blob bytea,
  notes text);
INSERT INTO documents (title, body, raw, search, blob, notes) VALUES
  ('Doc one', '{"a": [1, 2, {"b": null}], "ü": "ß"}', '{"dup": 1, "dup": 2}',
   to_tsvector('simple', 'hello world'), '\xdeadbeef00', repeat('long text ', 500)),
  ('Doc two', 'null', '"just a string"', NULL, NULL, NULL),
  ('Doc three', '[]', '123.5e10', ''::tsvector, '\x', '');

CREATE TABLE network (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text, host inet, net cidr, mac macaddr);
INSERT INTO network (id, name, host, net, mac) VALUES
  ('00000000-0000-0000-0000-000000000001', 'v4', '192.0.2.1/24', '192.0.2.0/24', '08:00:2b:01:02:03'),
  ('ffffffff-ffff-ffff-ffff-ffffffffffff', 'v6', '2001:db8::1', '2001:db8::/32', NULL),
  ('12345678-1234-1234-1234-123456789abc', NULL, NULL, NULL, NULL);

CREATE TABLE measures (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, span interval,
  exact numeric, price numeric(10, 2), cost money, ratio double precision, small smallint,
  big bigint, flag boolean, whole numeric(6, 0));
INSERT INTO measures (name, span, exact, price, cost, ratio, small, big, flag, whole) VALUES
  ('max', '178000000 years', 123456789012345678901234567890.123456789, 99999999.99,
   '92233720368547758.07', 1e308, 32767, 9223372036854775807, true, 999999),
  ('min', '-178000000 years', -0.000000000000000000001, -99999999.99,
   '-92233720368547758.08', -1e-307, -32768, -9223372036854775808, false, -999999),
  ('nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('mixed', '1 mon 2 days 03:04:05.678901', 0, 0.5, 0, 0.1, 0, 0, NULL, 0);

CREATE TABLE times (
  id serial PRIMARY KEY, label text, at_local timestamp(6), at_utc timestamptz, on_day date,
  at_time time, at_time_tz timetz, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO times (label, at_local, at_utc, on_day, at_time, at_time_tz) VALUES
  ('early', '0001-01-01 00:00:00.000001', '0001-01-01 00:00:00.000001+00', '0001-01-01',
   '00:00:00', '00:00:00+14'),
  ('late', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', '9999-12-31',
   '23:59:59.999999', '23:59:59.999999-12'),
  ('now', '2024-05-31 14:30:15.123456', '2024-05-31 14:30:15.123456+02', '2024-05-31',
   '14:30:15.5', '14:30+02'),
  ('nulls', NULL, NULL, NULL, NULL, NULL),
  ('forever', 'infinity', '-infinity', 'infinity', NULL, NULL);

CREATE TABLE shapes (
  id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, width int NOT NULL, height int NOT NULL,
  area int GENERATED ALWAYS AS (width * height) STORED, label text);
INSERT INTO shapes (width, height, label) VALUES (2, 3, 'small'), (2147483647, 0, NULL);

CREATE TABLE order_lines (
  order_id int, line_no int, sku text NOT NULL, qty int NOT NULL DEFAULT 1,
  PRIMARY KEY (order_id, line_no));
INSERT INTO order_lines VALUES (1, 1, 'A-1', 2), (1, 2, 'B-2', 1), (2, 1, 'A-1', 5);

CREATE TABLE day_codes (day date, code text, note text, PRIMARY KEY (day, code));
INSERT INTO day_codes VALUES ('2024-01-01', 'a,b/c~d', 'odd code'), ('2024-01-01', 'plain', NULL),
  ('0001-01-01', '%2C', 'percent'), ('2024-01-02', 'ü ß', 'unicode');

CREATE TABLE event_log (happened_at timestamptz, message text, level text);
INSERT INTO event_log VALUES (now(), 'started', 'info'), (NULL, NULL, NULL),
  ('2024-01-01', 'same', 'info'), ('2024-01-01', 'same', 'info');

CREATE TABLE readings (
  id bigint NOT NULL, taken_on date NOT NULL, reading numeric, sensor text,
  PRIMARY KEY (id, taken_on)) PARTITION BY RANGE (taken_on);
CREATE TABLE readings_2023 PARTITION OF readings FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO readings VALUES (1, '2023-06-01', 1.5, 'north'), (2, '2024-06-01', NULL, 'south'),
  (3, '2024-12-31', -7, NULL);

CREATE TABLE "Kunden" (
  "KundenNr" serial PRIMARY KEY, "Name" text NOT NULL, "straße" text, "Ort" text,
  "Email" text);
INSERT INTO "Kunden" ("Name", "straße", "Ort", "Email") VALUES
  ('Müller GmbH', 'Hauptstraße 1', 'München', 'info@mueller.example'),
  ('Ærø & Co', NULL, 'Ærøskøbing', NULL), ('😀 Emoji', 'x', NULL, NULL);

CREATE TABLE straße (id serial PRIMARY KEY, name text NOT NULL, länge numeric(8, 1));
INSERT INTO straße (name, länge) VALUES ('Königsallee', 1.0), ('Lange Straße', NULL);

CREATE SCHEMA billing;
CREATE TABLE billing.invoices (
  id serial PRIMARY KEY, number text NOT NULL, total numeric(10, 2),
  kunde_id int REFERENCES "Kunden" ("KundenNr"), issued_on date);
INSERT INTO billing.invoices (number, total, kunde_id, issued_on) VALUES
  ('B-1', 10.5, 1, '2024-03-01'), ('B-2', NULL, NULL, NULL), ('B-3', 0, 2, '2024-03-02');
CREATE TABLE public.invoices (id serial PRIMARY KEY, number text NOT NULL, paid boolean);
INSERT INTO public.invoices (number, paid) VALUES ('P-1', true), ('P-2', NULL);

CREATE VIEW open_feelings AS SELECT id, name, feeling FROM feelings WHERE status = 'open';
CREATE MATERIALIZED VIEW order_totals AS
  SELECT order_id, sum(qty) AS qty, count(*) AS lines FROM order_lines GROUP BY order_id;
"""

CITEXT_SQL = """
CREATE TABLE people_ci (id serial PRIMARY KEY, email citext UNIQUE, name text);
INSERT INTO people_ci (email, name) VALUES ('Ada@Example.org', 'Ada'), (NULL, NULL);
"""

TABLES = [
    "feelings",
    "domains",
    "arrays",
    "documents",
    "network",
    "measures",
    "times",
    "shapes",
    "order_lines",
    "day_codes",
    "event_log",
    "readings",
    "Kunden",
    "straße",
    "billing.invoices",
    "public.invoices",
    "open_feelings",
    "order_totals",
]
READ_ONLY = {"event_log", "open_feelings", "order_totals"}
VIEWS = {"open_feelings"}  # a plain view holds no rows of its own: nothing to ANALYZE


def analyze(names: list[str]) -> sql.Composed:
    """ANALYZE of just these tables ("billing.invoices" is schema-qualified): the statistics
    the generator reads (pg_stats) for each, without the cost of analyzing the whole database
    (every Keel table too) each time."""
    idents = [sql.Identifier(*name.split(".")) for name in names]
    return sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(idents))


async def build_schema(database_url: str) -> list[str]:
    """Every shape above; citext only where the extension can be created here."""
    tables = list(TABLES)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SCHEMA_SQL)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        except psycopg.Error as exc:
            print(f"citext table skipped: {str(exc).splitlines()[0]}")
        else:
            await conn.execute(CITEXT_SQL)
            tables.append("people_ci")
        await conn.execute(analyze([t for t in tables if t not in VIEWS]))
    return tables


async def catalog_registry(database_url: str, names: list[str]) -> Registry:
    """One declaration per table, every column listed, filtered and searched where it can be."""
    resources = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for name in names:
            table = await load_table(conn, name)
            assert table is not None, name
            resources.append(
                Resource(
                    name,
                    list_display=table.column_names,
                    list_filter=tuple(c.name for c in table.columns if filter_kind(c)),
                    search_fields=tuple(c.name for c in table.columns if search_kind(c)),
                )
            )
    return register(*resources)


# ---- a small form reader: what a browser would send back ----------------------------------


class FormReader(HTMLParser):
    """The fields of the edit form: inputs, textareas and selected options, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.readonly: set[str] = set()
        self._textarea: str | None = None
        self._select: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("method") == "post" and "k-form" in (a.get("class") or ""):
            self._in_form = True
        if not self._in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind == "checkbox":
                if "checked" in a:
                    self.values[name] = a.get("value") or "on"
            elif "disabled" not in a:
                self.values[name] = a.get("value") or ""
            if "readonly" in a:
                self.readonly.add(name)
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""
            if "readonly" in a:
                self.readonly.add(name)
        elif tag == "select" and name:
            self._select = name if "disabled" not in a else None
            if self._select:
                self.values.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


FORM_START = re.compile(r"<form\b[^>]*\bk-form\b")


def read_form(html: str) -> FormReader:
    reader = FormReader()
    # The reader takes nothing before the edit form: skipping the page's chrome to its start
    # changes no value read, and parsing (in Python) is most of what reading a page costs.
    start = FORM_START.search(html)
    reader.feed(html[start.start() :] if start else html)
    # A textarea's first newline is not part of its value (HTML parsing rules).
    for name, value in reader.values.items():
        if value.startswith("\n"):
            reader.values[name] = value[1:]
    return reader


ROW_LINK = re.compile(r'class="k-row-link" href="(/admin/[^"]+?/)(?:\?[^"]*)?"')


def edited_value(table: Table, form: FormReader) -> tuple[str, str] | None:
    """One writable field and a new value for it that its column accepts."""
    for col in table.columns:
        name = col.name
        if name not in form.values or name in form.readonly or col.fk is not None:
            continue
        if name in table.primary_key:  # the row's address: editing it is not this test's point
            continue
        if col.choices or col.is_generated or col.is_identity or is_opaque(col):
            continue
        t = col.type_name
        if t in ("text", "varchar", "citext") and (col.max_length or 99) > 8 and "mail" not in name:
            return name, (form.values[name] + " ✓ edited").strip()[: col.max_length or 200]
        if t in ("integer", "bigint", "smallint", "numeric"):
            return name, "7"
        if t == "date":
            return name, "2024-02-29"
        if t == "inet":
            return name, "198.51.100.7"
    return None


def problems(html: str) -> str:
    """The error lines of a page, for assertion messages."""
    found = re.findall(r'<p class="k-error" id="([^"]+)">([^<]*)<', html)
    found += re.findall(r'class="k-(?:alert|flash)[^"]*"[^>]*>(.*?)</', html, re.S)
    return repr(found)[:2000] if found else html[-3000:]


async def expect_ok(b: Browser, path: str, *statuses: int) -> str:
    resp = await b.get(path)
    text = await resp.text()
    assert resp.status in (statuses or (200,)), f"{path}: {resp.status}\n{problems(text)}"
    return text


def filter_values(table: Table, name: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Query strings exercising one filter with real values from the table."""
    col = table.column(name)
    assert col is not None
    kind = filter_kind(col)
    present = [r[name] for r in rows if r.get(name) not in (None, "")]
    sample = str(present[0]) if present else None
    if kind == "choice":
        return [{name: c} for c in (col.choices or ())[:2]] + [
            {name: (col.choices or ("",))[0], "q": "x"}
        ]
    if kind == "bool":
        return [{name: "yes"}, {name: "no"}, {name: "any"}]
    if kind == "date":
        day = sample[:10] if sample else "2024-05-31"
        out = [{name: p} for p in ("today", "past_7_days", "this_month")]
        out += [{name: day}, {f"{name}__gte": day}, {f"{name}__lte": day}]
        out += [{f"{name}__gte": "0001-01-01", f"{name}__lte": "9999-12-31"}]
        return out
    if kind == "number":
        value = sample or "0"
        return [{name: value}, {f"{name}__gte": value}, {f"{name}__lte": value}]
    if kind == "fk":
        return [{name: sample or "1"}]
    raise AssertionError(f"{table.name}.{name}: unexpected filter kind {kind}")


async def walk(
    b: Browser, database_url: str, registry: Registry, only: set[str] | None = None
) -> dict[str, int]:
    """Every page of every resource (of the tables in `only`, when given); returns how many
    rows were saved per resource."""
    saved: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        tables = {r.key: await load_table(conn, r.table) for r in registry}
    for r in registry:
        table = tables[r.key]
        if only is not None and table is not None and table.qualified not in only:
            continue
        assert table is not None
        base = f"/admin/{r.key}/"
        page = await expect_ok(b, base)
        await expect_ok(b, f"{base}new")
        data = await (await b.get(f"{base}?format=json&per_page=500")).json()
        rows = data["rows"]
        assert rows, f"{r.key}: no rows listed"
        if r.table in READ_ONLY:
            assert "read-only" in page, f"{r.key}: no read-only reason on the list"
            assert ROW_LINK.search(page) is None
            assert 'name="ids"' not in page
        if r.search_fields:
            for q in ("a", "ü", "%_\\", "1", "00000000-0000-0000-0000-000000000001"):
                await expect_ok(b, f"{base}?{urlencode({'q': q})}")
        for name in r.list_filter:
            for params in filter_values(table, name, rows):
                await expect_ok(b, f"{base}?{urlencode(params)}")
        # Sorting by every column it offers, both ways, and paging through one row at a time.
        for order in re.findall(r'href="\?(o=[^"&]+)', page):
            for sign in ("", "-"):
                key = unquote(order.removeprefix("o=")).removeprefix("-")
                await expect_ok(b, f"{base}?{urlencode({'o': sign + key})}")
        seen, url = 0, f"{base}?per_page=1&format=json"
        while url and seen < 20:
            got = await (await b.get(url)).json()
            seen += len(got["rows"])
            nxt = got["next_cursor"]
            url = (
                f"{base}?{urlencode({'per_page': 1, 'format': 'json', 'cursor': nxt})}"
                if nxt
                else ""
            )
        assert seen == min(len(rows), 20), f"{r.key}: paged {seen} of {len(rows)}"
        for fmt in ("csv", "jsonl"):
            resp = await b.get(f"{base}export.{fmt}")
            body = await resp.text()
            assert resp.status == 200, f"{r.key} export {fmt}: {body[:500]}"
        if r.table in READ_ONLY:
            await expect_ok(b, f"{base}1/", 404)
            resp = await b.post(f"{base}new", {"name": "x"})
            assert resp.status == 403 and "read-only" in await resp.text()
            continue
        links = list(dict.fromkeys(ROW_LINK.findall(page)))
        assert links, f"{r.key}: no row links"
        saved[r.key] = 0
        for link in links:
            html = await expect_ok(b, link)
            form = read_form(html)
            for col in table.columns:  # every column is on the page, never dropped
                assert f'name="{col.name}"' in html, f"{r.key}: {col.name} missing on {link}"
                if is_opaque(col):
                    assert col.name in form.readonly, f"{r.key}: {col.name} is not read-only"
                    assert "cannot be edited" in html
            resp = await b.post(link, {**form.values, "_save": "continue"})
            assert resp.status == 303, (
                f"{link} unchanged: {resp.status}\n{problems(await resp.text())}"
            )
            fresh = read_form(await expect_ok(b, link))  # as saved: the new version to send
            edit = edited_value(table, fresh)
            assert edit is not None, f"{r.key}: nothing editable"
            resp = await b.post(link, {**fresh.values, edit[0]: edit[1], "_save": "continue"})
            assert resp.status == 303, (
                f"{link} edited: {resp.status}\n{problems(await resp.text())}"
            )
            after = read_form(await expect_ok(b, link))
            shown = after.values[edit[0]]
            assert shown == edit[1] or shown.startswith(f"{edit[1]}."), (
                f"{link}: {edit[0]} not saved"
            )
            await expect_ok(b, f"{link}history")
            await expect_ok(b, f"{link}delete")
            saved[r.key] += 1
    return saved


async def test_every_shape_of_schema_is_served_without_a_500(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    names = await build_schema(database_url)
    registry = await catalog_registry(database_url, names)
    assert registry.get("billing_invoices") and registry.get("invoices")
    assert registry.get("kunden") and registry.get("strasse")
    app = cheap_app(make_config(database_url, secret_key))
    app[REGISTRY] = registry
    client = await aiohttp_client(app)
    b = await sign_in(client, database_url, secret_key)
    saved = await walk(b, database_url, registry)
    for path in ("/admin/", "/admin/search?q=a", "/admin/search?q=1"):
        await expect_ok(b, path)
    # Saving other fields left the infinite dates as they were.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT at_local::text, at_utc::text, on_day::text FROM times WHERE label LIKE 'forever%'"
        )
        assert await cur.fetchall() == [("infinity", "-infinity", "infinity")]
    assert set(saved) == {r.key for r in registry if r.table not in READ_ONLY}
    assert all(n >= 1 for n in saved.values()), saved
    # The partitions are not resources of their own; the parent lists every partition's rows.
    listed = await (await b.get("/admin/readings/?format=json")).json()
    assert len(listed["rows"]) == 3


async def test_generated_declarations_serve_every_shape_without_a_500(
    aiohttp_client: Any, database_url: str, secret_key: str, tmp_path: Path
) -> None:
    names = await build_schema(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        source = await generate_declarations(conn, ["public", "billing"], None)
        again = await generate_declarations(conn, ["billing", "public"], None)
        ours = {t.qualified for n in names if (t := await load_table(conn, n)) is not None}
    assert source == again  # deterministic
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "-"],
        input=source, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert formatted == source
    assert source.startswith("# ") and "keel new --from-database" in source
    assert "readings_2023" not in source and "keel_" not in source  # partitions, Keel's own
    # The command a company runs writes exactly that into a project it can serve and build.
    from app import sites
    from tests.helpers import keel, keel_env

    made = keel(
        "new", str(tmp_path / "legacy"), "--from-database", database_url,
        "--schema", "public", "--schema", "billing", env=keel_env(site=False),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "legacy" / "resources.py").read_text() == source
    registry = sites.load_site(tmp_path / "legacy").registry()
    assert registry.get("billing_invoices") and registry.get("invoices")
    assert {r.table for r in registry} >= {"Kunden", "straße", "billing.invoices", "readings"}
    feelings = registry.get("feelings")
    assert feelings is not None and feelings.display_field == "name"
    assert feelings.list_display[0] == "name" and "status" in feelings.list_filter
    assert "feeling" in feelings.list_filter and feelings.search_fields == ("name",)
    documents = registry.get("documents")
    assert documents is not None
    assert not {"body", "raw", "search", "blob", "notes"} & set(documents.list_display)
    times = registry.get("times")
    assert times is not None and set(times.readonly_fields) == {"created_at", "updated_at"}
    shapes = registry.get("shapes")
    assert shapes is not None and set(shapes.readonly_fields) == {"id", "area"}
    assert "A view" in source or "This is a view" in source
    app = cheap_app(make_config(database_url, secret_key))
    app[REGISTRY] = registry
    client = await aiohttp_client(app)
    b = await sign_in(client, database_url, secret_key)
    saved = await walk(b, database_url, registry, only=ours)
    assert len(saved) == len(ours) - len(READ_ONLY), saved


async def test_generator_refuses_unknown_names_and_filters_tables(database_url: str) -> None:
    await build_schema(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with pytest.raises(KeelError) as err:
            await generate_declarations(conn, ["nowhere"], None)
        assert "nowhere" in err.value.problem
        with pytest.raises(KeelError):
            await generate_declarations(conn, None, ["kunden"])  # names are exact
        source = await generate_declarations(conn, None, ["Kunden", "billing.invoices"])
    registry = load_generated(source)
    assert [r.table for r in registry] == ["billing.invoices", "Kunden"]


def fifty_tables_sql(rows: int = 200) -> str:
    """50 related tables of the usual shapes, `rows` rows each."""
    parts = ["CREATE TYPE state AS ENUM ('new', 'active', 'closed');"]
    for i in range(50):
        fk = f", parent_id int REFERENCES t{i - 1:02d} (id)" if i else ""
        parts.append(
            f"CREATE TABLE t{i:02d} (id serial PRIMARY KEY, name text NOT NULL, email text,"
            f" state state NOT NULL DEFAULT 'new', amount numeric(10, 2), notes text,"
            f" active boolean NOT NULL DEFAULT true, level int,"
            f" created_at timestamptz NOT NULL DEFAULT now(){fk});"
            f" CREATE INDEX ON t{i:02d} (created_at);"
            f" INSERT INTO t{i:02d} (name, email, amount, level{', parent_id' if i else ''})"
            f" SELECT 'Row ' || g, 'r' || g || '@example.org', g * 1.5, g % 5"
            f"{', 1 + g % ' + str(rows) if i else ''} FROM generate_series(1, {rows}) g;"
        )
    parts.append("ANALYZE " + ", ".join(f"t{i:02d}" for i in range(50)) + ";")
    return "\n".join(parts)


async def test_from_a_fifty_table_schema_to_the_first_list_page(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    """Measured: generating the declarations of 50 tables, loading them, starting the app
    (catalog and validation) and serving the first list page."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(fifty_tables_sql())
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        source = await generate_declarations(conn, ["public"], [f"t{i:02d}" for i in range(50)])
    generated = time.perf_counter()
    registry = load_generated(source)
    app = cheap_app(make_config(database_url, secret_key))
    app[REGISTRY] = registry
    client = await aiohttp_client(app)  # starts the app: catalog of 50 tables, validation
    serving = time.perf_counter()
    b = await sign_in(client, database_url, secret_key)
    signed_in = time.perf_counter()
    resp = await b.get("/admin/t49/")
    assert resp.status == 200 and "Row 1" in await resp.text()
    done = time.perf_counter()
    assert (await b.get("/admin/t48/")).status == 200
    second = time.perf_counter() - done
    t49 = registry.get("t49")
    assert t49 is not None and "state" in t49.list_filter and "parent_id" in t49.list_filter
    assert t49.ordering == ("-created_at",) and "level" in t49.list_filter
    print(
        f"50 tables: generate {generated - started:.3f} s; load and start"
        f" {serving - generated:.3f} s; (sign in {signed_in - serving:.3f} s); first list page"
        f" {done - signed_in:.3f} s (next one {second:.3f} s);"
        f" total without sign-in {done - started - (signed_in - serving):.3f} s"
    )
    assert done - started < 30


def load_generated(source: str) -> Registry:
    module = pytypes.ModuleType("keel_generated_resources")
    exec(compile(source, "<generated resources.py>", "exec"), module.__dict__)
    registry = module.__dict__["REGISTRY"]
    assert isinstance(registry, Registry)
    return registry
