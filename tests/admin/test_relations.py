"""Many-to-many sets and editable inlines on the edit page, over real HTTP and PostgreSQL.

Each save writes the row, its sets and its child rows with their audit events in one
transaction (a refused audit insert leaves none of them), and a concurrent change to the
row, a child row or a set is detected and refused."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.admin.test_edit_support import Browser, execute, one, sign_in

TECH = "/admin/technicians"


@pytest.fixture
async def admin(client: Any, database_url: str, secret_key: str) -> Browser:
    return await sign_in(client, database_url, secret_key, role="administrator")


async def add_tech(database_url: str, email: str = "tess@x.test") -> int:
    return int(
        await one(
            database_url,
            "INSERT INTO technicians (name, email) VALUES ('Tess', %s) RETURNING id",
            (email,),
        )
    )


async def skill(database_url: str, name: str) -> int:
    return int(await one(database_url, "SELECT id FROM skills WHERE name = %s", (name,)))


async def skills_of(database_url: str, tech: int) -> set[str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT s.name FROM technician_skills ts JOIN skills s ON s.id = ts.skill_id"
            " WHERE ts.technician_id = %s",
            (tech,),
        )
        return {r[0] for r in await cur.fetchall()}


def form_of(page: str) -> list[tuple[str, str]]:
    """The edit form as a browser would post it: hidden fields, text inputs, checked boxes,
    selected options (enough for the pages under test)."""
    form = page[
        page.index('<form class="k-form') : page.index("</form>", page.index('<form class="k-form'))
    ]
    out: list[tuple[str, str]] = []
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]*)"', tag)
        if not name or "disabled" in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        text = value.group(1) if value else ""
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                out.append((name.group(1), text or "on"))
            continue
        out.append(
            (name.group(1), text.replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&"))
        )
    for name, body in re.findall(r'<select[^>]*name="([^"]*)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        out.append((name, chosen.group(1) if chosen else ""))
    for name, body in re.findall(r'<textarea[^>]*name="([^"]*)"[^>]*>(.*?)</textarea>', form, re.S):
        out.append((name, body.strip().replace("&#34;", '"').replace("&quot;", '"')))
    return out


def replace(form: list[tuple[str, str]], name: str, *values: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in form if k != name] + [(name, v) for v in values]


# ---- many-to-many -------------------------------------------------------------------------


async def test_the_join_table_is_found_and_edited_from_both_sides(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    boilers, plumbing = await skill(database_url, "Boilers"), await skill(database_url, "Plumbing")
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    assert "<legend>Skills</legend>" in page
    assert f'name="_m2m.technician_skills" value="{boilers}"' in page
    assert "<script>" not in page and "style=" not in page  # CSP: nothing inline
    form = replace(form_of(page), "_m2m.technician_skills", str(boilers), str(plumbing))
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 303, await resp.text()
    assert await skills_of(database_url, tech) == {"Boilers", "Plumbing"}
    events = await one(
        database_url,
        "SELECT json_agg(json_build_object('type', event_type, 'meta', metadata))"
        " FROM keel_audit WHERE target_resource = 'technicians'",
    )
    assert len(events) == 1, events  # one event for the set, none for the unchanged row
    meta = events[0]["meta"]
    assert {a["label"] for a in meta["added"]} == {"Boilers", "Plumbing"}
    assert meta["removed"] == []
    # The other side: the skill's page lists technicians; removing Tess there is a diff too.
    page = await (await admin.get(f"/admin/skills/{plumbing}/")).text()
    assert "<legend>Technicians</legend>" in page
    assert re.search(rf'name="_m2m.technician_skills" value="{tech}" checked', page)
    form = [
        (k, v) for k, v in form_of(page) if not (k == "_m2m.technician_skills" and v == str(tech))
    ]
    resp = await admin.post(f"/admin/skills/{plumbing}/", [*form, ("_save", "continue")])
    assert resp.status == 303, await resp.text()
    assert await skills_of(database_url, tech) == {"Boilers"}


async def test_a_set_changed_meanwhile_is_a_conflict_and_nothing_is_saved(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    boilers, roofing = await skill(database_url, "Boilers"), await skill(database_url, "Roofing")
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    # Someone else gives Tess "Roofing" after this page was drawn.
    await execute(database_url, "INSERT INTO technician_skills VALUES (%s, %s)", (tech, roofing))
    form = replace(form_of(page), "_m2m.technician_skills", str(boilers))
    form = replace(form, "name", "Tess Renamed")
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 409
    text = await resp.text()
    assert "changed by someone else" in text
    assert await skills_of(database_url, tech) == {"Roofing"}
    assert await one(database_url, "SELECT name FROM technicians WHERE id = %s", (tech,)) == "Tess"
    # Saving again (the page now carries the current set as its starting point) replaces it.
    resp = await admin.post(f"{TECH}/{tech}/", [*form_of(text), ("_save", "continue")])
    assert resp.status == 303, await resp.text()
    assert await skills_of(database_url, tech) == {"Boilers"}


async def test_a_set_posted_with_an_unknown_or_bad_key_is_refused(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    resp = await admin.post(
        f"{TECH}/{tech}/", [*replace(form_of(page), "_m2m.technician_skills", "x1")]
    )
    assert resp.status == 400 and "not valid" in await resp.text()
    resp = await admin.post(
        f"{TECH}/{tech}/", [*replace(form_of(page), "_m2m.technician_skills", "999999")]
    )
    assert resp.status == 400 and "no longer exists" in await resp.text()
    assert await skills_of(database_url, tech) == set()


# ---- editable inlines ---------------------------------------------------------------------


async def add_property(database_url: str, tech: int, name: str) -> int:
    return int(
        await one(
            database_url,
            "INSERT INTO properties (name, address, kind, technician_id)"
            " VALUES (%s, '1 Road', 'house', %s) RETURNING id",
            (name, tech),
        )
    )


async def properties_of(database_url: str, tech: int) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT name, kind FROM properties WHERE technician_id = %s", (tech,)
        )
        return dict(await cur.fetchall())


def row_index(page: str, pk: int) -> str:
    m = re.search(r'name="_in\.properties\.(\d+)\.pk" value="' + str(pk) + '"', page)
    assert m, f"no inline row for property {pk}"
    return m.group(1)


async def test_child_rows_are_changed_added_and_deleted_with_the_parent(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    keep, drop = (
        await add_property(database_url, tech, "Keep"),
        await add_property(database_url, tech, "Drop"),
    )
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    assert 'name="_in.properties.new0.name"' in page  # a blank row to add one
    k, d = row_index(page, keep), row_index(page, drop)
    form = replace(form_of(page), f"_in.properties.{k}.kind", "office")
    form = replace(form, f"_in.properties.{d}.delete", "1")
    form = replace(form, "_in.properties.new0.name", "Fresh")
    form = replace(form, "_in.properties.new0.address", "2 Lane")
    form = replace(form, "_in.properties.new0.kind", "shop")
    form = replace(form, "name", "Tess Two")
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 303, await resp.text()
    assert await properties_of(database_url, tech) == {"Keep": "office", "Fresh": "shop"}
    assert await one(database_url, "SELECT name FROM technicians WHERE id = %s", (tech,)) == (
        "Tess Two"
    )
    events = await one(
        database_url,
        "SELECT json_agg(event_type || ':' || target_resource ORDER BY id) FROM keel_audit"
        " WHERE target_resource IN ('technicians', 'properties')",
    )
    assert sorted(events) == sorted(
        ["update:technicians", "update:properties", "delete:properties", "create:properties"]
    )


async def test_errors_are_shown_per_row_and_nothing_is_saved(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    keep = await add_property(database_url, tech, "Keep")
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    k = row_index(page, keep)
    form = replace(form_of(page), f"_in.properties.{k}.last_inspected", "not a date")
    form = replace(form, "_in.properties.new0.name", "Half typed")  # no address, no kind
    form = replace(form, "name", "Renamed")
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 400
    text = await resp.text()
    assert "Enter a date like" in text and "This field is required." in text
    assert 'value="Half typed"' in text, "the typed row is shown again"
    assert await one(database_url, "SELECT name FROM technicians WHERE id = %s", (tech,)) == "Tess"
    assert await properties_of(database_url, tech) == {"Keep": "house"}


async def test_a_child_row_changed_meanwhile_is_a_conflict_and_nothing_is_saved(
    admin: Browser, database_url: str
) -> None:
    tech = await add_tech(database_url)
    keep = await add_property(database_url, tech, "Keep")
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    await execute(
        database_url,
        "UPDATE properties SET kind = 'shop', updated_at = clock_timestamp() WHERE id = %s",
        (keep,),
    )
    form = replace(form_of(page), f"_in.properties.{row_index(page, keep)}.kind", "office")
    form = replace(form, "name", "Renamed")
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 409
    assert "changed by someone else" in await resp.text()
    assert await properties_of(database_url, tech) == {"Keep": "shop"}
    assert await one(database_url, "SELECT name FROM technicians WHERE id = %s", (tech,)) == "Tess"
    # Deleting a row someone else changed is refused the same way.
    form = replace(form_of(page), f"_in.properties.{row_index(page, keep)}.delete", "1")
    resp = await admin.post(f"{TECH}/{tech}/", [*form, ("_save", "continue")])
    assert resp.status == 409
    assert await properties_of(database_url, tech) == {"Keep": "shop"}


async def test_a_child_row_of_another_parent_cannot_be_reached(
    admin: Browser, database_url: str
) -> None:
    tech, other = await add_tech(database_url), await add_tech(database_url, "o@x.test")
    theirs = await add_property(database_url, other, "Theirs")
    page = await (await admin.get(f"{TECH}/{tech}/")).text()
    version = "t:2020-01-01T00:00:00+00:00"
    form = [
        *form_of(page),
        ("_in.properties.0.pk", str(theirs)),
        ("_in.properties.0.version", version),
        ("_in.properties.0.delete", "1"),
    ]
    resp = await admin.post(f"{TECH}/{tech}/", form)
    assert resp.status == 409
    assert await properties_of(database_url, other) == {"Theirs": "house"}


# ---- one transaction: the service under the page ------------------------------------------


async def _one_save(conn: psycopg.AsyncConnection[Any], tech: int, prop: int) -> None:
    """Rename the technician, give them a skill, change one property and add another."""
    from app import audit
    from app.admin import inlines, m2m, relations, writes
    from app.admin.setup import check_declarations

    bound, _ = await check_declarations(conn)
    b, child = bound["technicians"], bound["properties"]
    (link,) = b.links
    row = await writes.fetch_row(conn, b, tech)
    prop_row = await writes.fetch_row(conn, child, prop)
    assert row is not None and prop_row is not None
    boilers = (
        await (await conn.execute("SELECT id FROM skills WHERE name = 'Boilers'")).fetchone()
    )[0]  # type: ignore[index]
    inline = b.resource.inlines[0]
    form = inlines.InlineForm(inline, child)
    form.edits.append(
        inlines.Edit(
            "update", "0", pk=prop, version=writes.row_version(child.table, prop_row),
            values={"kind": "office"},
        )
    )  # fmt: skip
    form.edits.append(
        inlines.Edit("insert", "new0", values={"name": "New", "address": "x", "kind": "shop"})
    )
    ctx = audit.Context(audit_key=audit.derive_key("k" * 43), actor_email="ed@example.com")
    await relations.save_edit(
        conn, ctx, b, tech, {"name": "Renamed"},
        version=writes.row_version(b.table, row),
        related=relations.Related(
            sets=[m2m.Change(link, frozenset(), frozenset({boilers}))],
            children=[(form, frozenset({"add", "change", "delete"}))],
        ),
    )  # fmt: skip


async def _state(conn: psycopg.AsyncConnection[Any], tech: int) -> tuple[Any, ...]:
    cur = await conn.execute(
        "SELECT (SELECT name FROM technicians WHERE id = %(t)s),"
        " (SELECT count(*) FROM technician_skills WHERE technician_id = %(t)s),"
        " (SELECT json_agg(kind ORDER BY id) FROM properties WHERE technician_id = %(t)s),"
        " (SELECT count(*) FROM keel_audit)",
        {"t": tech},
    )
    return tuple(await cur.fetchone() or ())


async def test_row_sets_children_and_events_commit_in_one_transaction(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        tech = await add_tech(database_url)
        prop = await add_property(database_url, tech, "Keep")
        await conn.execute(
            "CREATE TABLE tx_log (what text, tx xid8);"
            " CREATE FUNCTION log_tx() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN INSERT INTO tx_log VALUES (TG_TABLE_NAME, pg_current_xact_id()); RETURN NULL;"
            " END$$;"
            " CREATE TRIGGER log_tx AFTER INSERT OR UPDATE OR DELETE ON technicians"
            " FOR EACH STATEMENT EXECUTE FUNCTION log_tx();"
            " CREATE TRIGGER log_tx AFTER INSERT OR UPDATE OR DELETE ON properties"
            " FOR EACH STATEMENT EXECUTE FUNCTION log_tx();"
            " CREATE TRIGGER log_tx AFTER INSERT OR DELETE ON technician_skills"
            " FOR EACH STATEMENT EXECUTE FUNCTION log_tx();"
            " CREATE TRIGGER log_tx AFTER INSERT ON keel_audit"
            " FOR EACH STATEMENT EXECUTE FUNCTION log_tx()"
        )
        await _one_save(conn, tech, prop)
        name, skills, kinds, _events = await _state(conn, tech)
        assert (name, skills, kinds) == ("Renamed", 1, ["office", "shop"])
        cur = await conn.execute("SELECT what, tx::text FROM tx_log")
        logged = await cur.fetchall()
        assert {w for w, _ in logged} == {
            "technicians", "properties", "technician_skills", "keel_audit"
        }  # fmt: skip
        assert len({tx for _, tx in logged}) == 1, f"one save in several transactions: {logged}"


@pytest.mark.parametrize("failing", ["technicians", "properties", "any"])
async def test_a_failing_audit_insert_leaves_nothing_of_the_save(
    database_url: str, failing: str
) -> None:
    """Killed mid-request: whichever event cannot be written (the row's, the set's, a child
    row's), the whole save is rolled back and no event remains."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        tech = await add_tech(database_url)
        prop = await add_property(database_url, tech, "Keep")
        before = await _state(conn, tech)
        if failing == "any":
            await conn.execute(
                "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN RAISE EXCEPTION 'audit store unavailable'; END$$;"
                " CREATE TRIGGER fail_audit BEFORE INSERT ON keel_audit"
                " FOR EACH ROW EXECUTE FUNCTION fail_audit()"
            )
        else:
            await conn.execute(
                "ALTER TABLE keel_audit ADD CONSTRAINT refuse CHECK"
                f" (target_resource IS DISTINCT FROM '{failing}') NOT VALID"
            )
        with pytest.raises(Exception):  # noqa: B017 - the audit store's refusal, however shaped
            await _one_save(conn, tech, prop)
        assert await _state(conn, tech) == before
