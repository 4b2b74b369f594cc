"""Writes under the admin forms: typed parsing, audited writes, concurrency, constraint errors.

EDIT-1 (widgets, validation, constraint violations as form errors), EDIT-3 (read-only fields),
EDIT-4 (optimistic concurrency), EDIT-5 (delete consequences), EDIT-6 (one audit event in the
same transaction), EDIT-8 (set-based bulk writes), SEC-3 (allow-listed, typed input)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from app import audit
from app.admin import deletion, forms, writes
from app.admin.registry import site_registry
from app.admin.resources import BoundResource, bind
from app.db.catalog import Column, load_catalog
from app.errors import Conflict, Invalid


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


async def bound(conn: psycopg.AsyncConnection[Any], slug: str) -> BoundResource:
    registry = site_registry()
    catalog = await load_catalog(conn, registry.tables())
    return bind(registry, catalog)[slug]


def ctx(secret_key: str = "k" * 43) -> audit.Context:
    return audit.Context(audit_key=audit.derive_key(secret_key), actor_email="ed@example.com")


def fields_of(b: BoundResource) -> tuple[forms.FieldSpec, ...]:
    r = b.resource
    return forms.build_fields(b.table.columns, readonly_fields=r.readonly_fields)


async def audit_rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT event_type, target_resource, target_id, metadata FROM keel_audit ORDER BY id"
    )
    return await cur.fetchall()


async def add_technician(conn: psycopg.AsyncConnection[Any], email: str = "t@x.test") -> int:
    cur = await conn.execute(
        "INSERT INTO technicians (name, email) VALUES ('Tess', %s) RETURNING id", (email,)
    )
    return int((await cur.fetchone())[0])


async def test_widgets_follow_the_column_types(conn: psycopg.AsyncConnection[Any]) -> None:
    """EDIT-1: one widget per type, required from NOT NULL without default, maxlength, step."""
    b = await bound(conn, "technicians")
    f = {s.name: s for s in fields_of(b)}
    assert f["name"].widget == "text" and f["name"].maxlength == 120 and f["name"].required
    assert f["email"].widget == "email" and f["email"].required
    assert f["phone"].widget == "tel" and not f["phone"].required
    assert f["skill_level"].widget == "select"
    assert f["skill_level"].choices == ("trainee", "junior", "senior", "lead")
    assert not f["skill_level"].required  # it has a default
    assert f["hourly_rate"].widget == "number" and f["hourly_rate"].step == "0.01"
    assert f["hourly_rate"].max == "999999.99"
    assert f["is_active"].widget == "checkbox"
    assert f["hired_on"].widget == "date" and f["shift_start"].widget == "time"
    assert f["created_at"].widget == "datetime-local" and f["created_at"].readonly
    assert f["supervisor_id"].widget == "autocomplete"
    assert f["supervisor_id"].fk_table == "technicians"
    assert f["profile"].widget == "json" and f["bio"].widget == "textarea"
    assert f["id"].readonly  # identity: the database fills it (EDIT-3)
    p = {s.name: s for s in fields_of(await bound(conn, "properties"))}
    # A generated tsvector cannot be edited: shown read-only as its text, never dropped.
    assert p["search"].readonly and "cannot be edited" in p["search"].help
    assert p["units"].step == "1" and p["floor_area_m2"].step == "0.1"


async def test_create_forms_start_from_constant_defaults_and_insert_only_changes(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """Constant defaults are the form's starting values; expressions stay empty and optional;
    a value left as the form showed it is not written, so the database's default applies."""
    b = await bound(conn, "technicians")
    specs = {f.name: f for f in fields_of(b)}
    assert forms.defaults(fields_of(b)) == {
        "skill_level": "junior",
        "hourly_rate": "0",
        "is_active": "on",
        "profile": "{}",
        "bio": "",
    }
    hired = specs["hired_on"]
    assert hired.default is None and not hired.required
    assert hired.default_help == "Leave empty for the day of saving."
    shown = {**forms.defaults(fields_of(b)), "name": "Nina", "email": "n@x.test", "hired_on": ""}
    parsed = forms.parse_form(fields_of(b), shown, creating=True)
    assert parsed.ok and parsed.values == {"name": "Nina", "email": "n@x.test"}
    # Changed from the default: written, the unticked box too (it posts nothing).
    changed = {**shown, "skill_level": "lead", "hourly_rate": "0.50"}
    del changed["is_active"]
    parsed = forms.parse_form(fields_of(b), changed, creating=True)
    assert parsed.values == {
        "name": "Nina",
        "email": "n@x.test",
        "skill_level": "lead",
        "hourly_rate": Decimal("0.50"),
        "is_active": False,
    }
    row = await writes.insert_row(conn, ctx(), b, parsed.values)
    assert row["is_active"] is False and row["hired_on"] is not None

    # properties: `units DEFAULT 1`, `has_parking DEFAULT false`, a nullable json without one.
    p = await bound(conn, "properties")
    assert forms.defaults(fields_of(p)) == {
        "units": "1",
        "has_parking": "",
        "access_notes": "",
    }
    # bookings.created_at has no default: Keel fills it (writes.insert_row), so it is optional.
    bk = await bound(conn, "bookings")
    created = forms.build_fields(bk.table.columns, keel_filled=writes.keel_filled(bk.table))
    spec = next(f for f in created if f.name == "created_at")
    assert not spec.required and spec.default_help == "Leave empty for the time of saving."


@pytest.mark.parametrize(
    ("expr", "type_name", "shown"),
    [
        ("'junior'::text", "text", "junior"),
        ("'it''s'::character varying", "varchar", "it's"),
        ("0", "numeric", "0"),
        ("'-1'::integer", "integer", "-1"),
        ("(-2.5)", "numeric", "-2.5"),
        ("true", "boolean", "on"),
        ("false", "boolean", ""),
        ("'{\"a\": 1}'::jsonb", "jsonb", '{\n  "a": 1\n}'),
        (
            "'2024-05-01 10:00:00+00'::timestamp with time zone",
            "timestamptz",
            "2024-05-01T10:00:00",
        ),
        ("now()", "timestamptz", None),
        ("CURRENT_DATE", "date", None),
        ("NULL::text", "text", None),
        ("nextval('t_id_seq'::regclass)", "integer", None),
        ("'abc'::text", "integer", None),  # not a number: left to the database
    ],
)
def test_constant_defaults_are_read_from_the_catalog_expression(
    expr: str, type_name: str, shown: str | None
) -> None:
    column = Column("c", type_name, has_default=True, default=expr)
    assert forms.field_for(column).default == shown


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "x" * 121, "at most 120"),
        ("name", "a\x00b", "control characters"),
        ("name", "line\nbreak", "control characters"),
        ("email", "not-an-email", "email address"),
        ("hourly_rate", "abc", "number"),
        ("hourly_rate", "1e999", "between"),
        ("hourly_rate", "NaN", "finite"),
        ("hourly_rate", "12.345", "decimal places"),
        ("hourly_rate", "9" * 80, "shorter"),
        ("skill_level", "wizard", "one of"),
        ("hired_on", "2024-02-30", "date"),
        ("shift_start", "25:00", "time"),
        ("profile", "{not json", "JSON"),
        ("supervisor_id", "1; DROP TABLE technicians", "whole number"),
        ("supervisor_id", "99999999999", "between"),
        ("name", "", "required"),
    ],
)
async def test_bad_values_become_field_errors(
    conn: psycopg.AsyncConnection[Any], field: str, value: str, message: str
) -> None:
    b = await bound(conn, "technicians")
    data = {"name": "Ok", "email": "ok@x.test", field: value}
    parsed = forms.parse_form(fields_of(b), data, creating=True)
    assert message in parsed.errors.get(field, ""), parsed.errors


async def test_crafted_post_cannot_write_readonly_or_unknown_fields(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-3 + SEC-3: id, created_at (readonly) and names outside the catalog are never taken."""
    b = await bound(conn, "technicians")
    data = {
        "name": "Mallory",
        "email": "m@x.test",
        "id": "777",
        "created_at": "2001-01-01T00:00",
        "is_superuser": "on",
        "name; DROP TABLE technicians": "x",
    }
    parsed = forms.parse_form(fields_of(b), data, creating=True)
    assert parsed.ok and set(parsed.values) <= {c.name for c in b.table.columns}
    assert "id" not in parsed.values and "created_at" not in parsed.values
    row = await writes.insert_row(conn, ctx(), b, parsed.values)
    assert row["id"] != 777 and row["created_at"].year != 2001
    assert row["is_active"] is False  # an absent checkbox means unchecked


async def test_html_and_sql_text_is_stored_verbatim(conn: psycopg.AsyncConnection[Any]) -> None:
    b = await bound(conn, "technicians")
    hostile = "<script>alert(1)</script>'); DROP TABLE technicians; --"
    parsed = forms.parse_form(
        fields_of(b), {"name": hostile[:120], "email": "h@x.test", "bio": hostile}, creating=True
    )
    row = await writes.insert_row(conn, ctx(), b, parsed.values)
    assert row["bio"] == hostile
    assert (await (await conn.execute("SELECT count(*) FROM technicians")).fetchone())[0] == 1


async def test_create_records_one_audit_event_with_values(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-6: the create and its event in one transaction; JSON and numbers typed right."""
    b = await bound(conn, "technicians")
    parsed = forms.parse_form(
        fields_of(b),
        {"name": "Ada", "email": "ada@x.test", "hourly_rate": "42.50", "profile": '{"van": 1}'},
        creating=True,
    )
    row = await writes.insert_row(conn, ctx(), b, parsed.values)
    assert row["hourly_rate"] == Decimal("42.50") and row["profile"] == {"van": 1}
    events = await audit_rows(conn)
    assert [(e[0], e[1], e[2]) for e in events] == [("create", "technicians", str(row["id"]))]
    assert events[0][3]["values"]["email"] == "ada@x.test"


async def test_customers_created_at_is_filled_when_the_schema_has_no_default(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    b = await bound(conn, "customers")
    parsed = forms.parse_form(
        fields_of(b), {"name": "C", "email": "c@x.test", "city": "Oslo"}, creating=True
    )
    assert parsed.ok, parsed.errors
    row = await writes.insert_row(conn, ctx(), b, parsed.values)
    assert row["created_at"] is not None


async def test_unique_fk_and_check_violations_name_the_field(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-1: constraint violations are form errors on the constrained field, never a 500."""
    b = await bound(conn, "technicians")
    await add_technician(conn, "dup@x.test")
    cases = [
        ({"email": "dup@x.test"}, "email", "already has"),
        ({"email": "a@x.test", "supervisor_id": 424242}, "supervisor_id", "No such related"),
        ({"email": "b@x.test", "hourly_rate": -5}, "hourly_rate", "not allowed"),
    ]
    for extra, field, text in cases:
        with pytest.raises(Invalid) as info:
            await writes.insert_row(conn, ctx(), b, {"name": "N", **extra})
        assert text in info.value.fields[field]
    assert [e[0] for e in await audit_rows(conn)] == []  # nothing half-written


async def test_a_time_sent_back_to_the_second_keeps_its_microseconds(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """Forms show times to the second: the same second sent back is no change; another is."""
    b = await bound(conn, "technicians")
    pk = await add_technician(conn)
    await conn.execute("UPDATE technicians SET shift_start = '07:30:15.25' WHERE id = %s", (pk,))
    row = await writes.fetch_row(conn, b, pk)
    assert row is not None
    spec = next(f for f in fields_of(b) if f.name == "shift_start")
    assert forms.format_value(spec, row["shift_start"]) == "07:30:15" and spec.step == "1"
    created = forms.format_value(spec, row["created_at"])
    assert len(created) == 19 and "." not in created  # 2026-12-04T05:26:22
    sent = forms.parse_form(
        fields_of(b), {"shift_start": "07:30:15", "name": "Tess", "is_active": "on"}, creating=False
    )
    version = writes.row_version(b.table, row)
    after = await writes.update_row(conn, ctx(), b, pk, sent.values, version=version)
    assert after["shift_start"] == row["shift_start"] and after["updated_at"] == row["updated_at"]
    sent = forms.parse_form(
        fields_of(b), {"shift_start": "07:30:16", "is_active": "on"}, creating=False
    )
    after = await writes.update_row(conn, ctx(), b, pk, sent.values, version=version)
    assert str(after["shift_start"]) == "07:30:16"


async def test_update_writes_only_changes_and_audits_from_to(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    b = await bound(conn, "technicians")
    pk = await add_technician(conn)
    before = await writes.fetch_row(conn, b, pk)
    assert before is not None
    version = writes.row_version(b.table, before)
    after = await writes.update_row(
        conn, ctx(), b, pk, {"name": "Tess", "hourly_rate": Decimal("30.00")}, version=version
    )
    assert after["hourly_rate"] == Decimal("30.00")
    assert after["updated_at"] > before["updated_at"]  # the version moves on
    (event,) = await audit_rows(conn)  # exactly one: add_technician writes no event
    assert event[0] == "update" and event[2] == str(pk)
    assert event[3]["changes"] == {"hourly_rate": {"from": "0.00", "to": "30.00"}}


async def test_second_editor_is_refused_with_what_changed(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-4: two editors load the same row; the second save is refused and shows the change."""
    b = await bound(conn, "technicians")
    pk = await add_technician(conn)
    loaded = await writes.fetch_row(conn, b, pk)
    assert loaded is not None
    version = writes.row_version(b.table, loaded)
    original = {k: audit.jsonable(v) for k, v in loaded.items()}
    await writes.update_row(conn, ctx(), b, pk, {"skill_level": "senior"}, version=version)
    with pytest.raises(writes.StaleRow) as info:
        await writes.update_row(
            conn, ctx(), b, pk, {"name": "Other"}, version=version, original=original
        )
    stale = info.value
    assert stale.changes["skill_level"] == {"from": "junior", "to": "senior"}
    assert stale.changed_by == "ed@example.com"
    row = await writes.fetch_row(conn, b, pk)
    assert row is not None and row["name"] == "Tess"  # the second save did not land


async def test_hash_version_detects_changes_without_updated_at(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-4 on a table without updated_at: the version is a hash of the loaded values."""
    b = await bound(conn, "customers")
    await conn.execute(
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (1, 'A', 'a@x.test', 'Oslo', now())"
    )
    row = await writes.fetch_row(conn, b, 1)
    assert row is not None
    version = writes.row_version(b.table, row)
    assert version.startswith("h:")
    await conn.execute("UPDATE customers SET city = 'Rome' WHERE id = 1")
    with pytest.raises(writes.StaleRow):
        await writes.update_row(conn, ctx(), b, 1, {"name": "B"}, version=version)


async def test_delete_plan_lists_blockers_and_unlinks(conn: psycopg.AsyncConnection[Any]) -> None:
    """EDIT-5: per-table counts of what blocks (RESTRICT) or is unlinked (SET NULL)."""
    b = await bound(conn, "technicians")
    boss = await add_technician(conn, "boss@x.test")
    for i in range(3):
        await conn.execute(
            "INSERT INTO technicians (name, email, supervisor_id) VALUES ('T', %s, %s)",
            (f"t{i}@x.test", boss),
        )
    await conn.execute(
        "INSERT INTO properties (name, address, kind, technician_id) VALUES ('P', 'A', 'shop', %s)",
        (boss,),
    )
    plan = await deletion.plan_delete(conn, b.table, [boss])
    effects = {(c.table, c.effect): c.count for c in plan.consequences}
    assert effects == {("properties", "blocks"): 1, ("technicians", "unlinked"): 3}
    assert plan.blocked
    with pytest.raises(Conflict, match="cannot be deleted"):
        await writes.delete_row(conn, ctx(), b, boss)
    assert await writes.fetch_row(conn, b, boss) is not None


async def test_delete_counts_are_capped(conn: psycopg.AsyncConnection[Any]) -> None:
    b = await bound(conn, "customers")
    await conn.execute(
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (1, 'A', 'a@x.test', 'Oslo', now())"
    )
    await conn.execute(
        "INSERT INTO bookings (customer_id, status, amount, scheduled_at, created_at)"
        " SELECT 1, 'pending', 10, now(), now() FROM generate_series(1, 1500)"
    )
    plan = await deletion.plan_delete(conn, b.table, [1])
    (only,) = plan.consequences
    assert only.capped and only.shown == "1,000+" and only.effect == "blocks"
    assert "1,000+ bookings records" in only.sentence()


async def test_delete_audits_the_removed_values(conn: psycopg.AsyncConnection[Any]) -> None:
    b = await bound(conn, "technicians")
    pk = await add_technician(conn)
    await writes.delete_row(conn, ctx(), b, pk)
    assert await writes.fetch_row(conn, b, pk) is None
    (event,) = await audit_rows(conn)
    assert event[0] == "delete" and event[3]["values"]["email"] == "t@x.test"


async def test_bulk_action_is_one_statement_and_one_event(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """EDIT-8: declared action 'confirm' sets status on all selected rows, one event with ids."""
    await conn.execute(
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (1, 'A', 'a@x.test', 'Oslo', now())"
    )
    await conn.execute(
        "INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, created_at)"
        " SELECT i, 1, 'pending', 10, now(), now() FROM generate_series(1, 5) i"
    )
    b = await bound(conn, "bookings")
    action = next(a for a in b.resource.actions if a.name == "confirm")
    done = await writes.bulk_set(conn, ctx(), b, action, [1, 3, 5])
    assert done == [1, 3, 5]
    cur = await conn.execute("SELECT id FROM bookings WHERE status = 'confirmed' ORDER BY id")
    assert [r[0] for r in await cur.fetchall()] == [1, 3, 5]
    (event,) = await audit_rows(conn)
    assert event[0] == "bulk_action" and event[3]["ids"] == ["1", "3", "5"]
    assert event[3]["action"] == "confirm"


async def test_bulk_delete_partial_failure_rolls_back_and_says_why(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.execute(
        "INSERT INTO customers (id, name, email, city, created_at) VALUES"
        " (1, 'A', 'a@x.test', 'Oslo', now()), (2, 'B', 'b@x.test', 'Oslo', now())"
    )
    await conn.execute(
        "INSERT INTO bookings (customer_id, status, amount, scheduled_at, created_at)"
        " VALUES (2, 'pending', 10, now(), now())"
    )
    b = await bound(conn, "customers")
    with pytest.raises(Conflict, match="Nothing was changed") as info:
        await writes.bulk_delete(conn, ctx(), b, [1, 2])
    assert "bookings" in info.value.problem
    cur = await conn.execute("SELECT count(*) FROM customers")
    assert (await cur.fetchone())[0] == 2
    assert await audit_rows(conn) == []


async def test_bulk_refuses_empty_and_oversized_selections(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    b = await bound(conn, "customers")
    with pytest.raises(Invalid, match="at least one"):
        await writes.bulk_delete(conn, ctx(), b, [])
    with pytest.raises(Invalid, match="too many"):
        await writes.bulk_delete(conn, ctx(), b, list(range(writes.MAX_BULK + 1)))


# ---- EDIT-6 / EDIT-8 / AUDIT-5: one event per write, in the write's transaction ----------

WRITES = ("create", "update", "delete", "bulk_set", "bulk_delete")
EVENT_OF = {
    "create": "create",
    "update": "update",
    "delete": "delete",
    "bulk_set": "bulk_action",
    "bulk_delete": "bulk_action",
}


async def do_write(conn: psycopg.AsyncConnection[Any], op: str, ids: list[int]) -> str:
    """One admin write on technicians through the writes service; returns what the event must
    name: the row's id, or for a bulk action the action (the ids are in the metadata)."""
    b = await bound(conn, "technicians")
    if op == "create":
        row = await writes.insert_row(conn, ctx(), b, {"name": "New", "email": "new@x.test"})
        return str(row["id"])
    if op == "update":
        before = await writes.fetch_row(conn, b, ids[0])
        assert before is not None
        version = writes.row_version(b.table, before)
        await writes.update_row(conn, ctx(), b, ids[0], {"name": "Renamed"}, version=version)
        return str(ids[0])
    if op == "delete":
        await writes.delete_row(conn, ctx(), b, ids[0])
        return str(ids[0])
    if op == "bulk_set":
        (action,) = b.resource.actions  # deactivate: is_active = false
        await writes.bulk_set(conn, ctx(), b, action, ids)
        return "deactivate"
    await writes.bulk_delete(conn, ctx(), b, ids)
    return "delete"


async def technicians(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute("SELECT id, name, email, is_active FROM technicians ORDER BY id")
    return await cur.fetchall()


async def count_events(conn: psycopg.AsyncConnection[Any]) -> int:
    return (await (await conn.execute("SELECT count(*) FROM keel_audit")).fetchone())[0]


@pytest.mark.parametrize("op", WRITES)
async def test_each_write_leaves_exactly_one_event_in_its_own_transaction(
    conn: psycopg.AsyncConnection[Any], op: str
) -> None:
    """EDIT-6, EDIT-8, AUDIT-5: create, update, delete and each bulk action record exactly one
    event (a bulk action one in all, listing its ids), written by the transaction that made the
    change: statement triggers log the transaction id of the data write and of the audit insert."""
    ids = [await add_technician(conn, "a@x.test"), await add_technician(conn, "b@x.test")]
    await conn.execute(
        "CREATE TABLE tx_log (what text, tx xid8);"
        " CREATE FUNCTION log_tx() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO tx_log VALUES (TG_TABLE_NAME, pg_current_xact_id()); RETURN NULL;"
        " END$$;"
        " CREATE TRIGGER log_tx AFTER INSERT OR UPDATE OR DELETE ON technicians"
        " FOR EACH STATEMENT EXECUTE FUNCTION log_tx();"
        " CREATE TRIGGER log_tx AFTER INSERT ON keel_audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION log_tx()"
    )
    target = await do_write(conn, op, ids)
    events = await audit_rows(conn)
    assert len(events) == 1, events  # add_technician wrote none, the write exactly one
    ((event_type, resource, target_id, metadata),) = events
    if op.startswith("bulk"):  # one event for the whole action, naming it and every id
        assert (event_type, resource, target_id) == ("bulk_action", "technicians", None)
        assert metadata["action"] == target and metadata["ids"] == [str(i) for i in ids]
    else:
        assert (event_type, resource, target_id) == (EVENT_OF[op], "technicians", target)
    cur = await conn.execute("SELECT what, tx::text FROM tx_log")
    logged = await cur.fetchall()  # delete also logs the ON DELETE SET NULL of supervisor_id
    assert {w for w, _ in logged} == {"keel_audit", "technicians"}, logged
    assert len({tx for _, tx in logged}) == 1, f"change and event in two transactions: {logged}"


@pytest.mark.parametrize("failure", ["trigger", "check"])
@pytest.mark.parametrize("op", WRITES)
async def test_a_failing_audit_insert_leaves_neither_change_nor_event(
    conn: psycopg.AsyncConnection[Any], op: str, failure: str
) -> None:
    """AUDIT-5: when the event cannot be written (a trigger raising, or a CHECK constraint
    refusing the row), the data change is rolled back with it and no event remains."""
    ids = [await add_technician(conn, "a@x.test"), await add_technician(conn, "b@x.test")]
    before, events_before = await technicians(conn), await count_events(conn)
    if failure == "trigger":
        await conn.execute(
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'audit store unavailable'; END$$;"
            " CREATE TRIGGER fail_audit BEFORE INSERT ON keel_audit"
            " FOR EACH ROW EXECUTE FUNCTION fail_audit()"
        )
        expected: tuple[type[Exception], ...] = (psycopg.errors.RaiseException,)
    else:  # existing rows are not checked (NOT VALID); every new technicians event is refused
        await conn.execute(
            "ALTER TABLE keel_audit ADD CONSTRAINT refuse_technicians"
            " CHECK (target_resource IS DISTINCT FROM 'technicians') NOT VALID"
        )
        expected = (Invalid, Conflict)  # the service's translation of the IntegrityError
    with pytest.raises(expected):
        await do_write(conn, op, ids)
    assert await technicians(conn) == before, "the change outlived its failed audit event"
    assert await count_events(conn) == events_before
