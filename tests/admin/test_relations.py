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
