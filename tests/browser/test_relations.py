"""Related records in a real browser: the many-to-many type-ahead, adding and deleting child rows
on the parent's page, and the bulk edit flow (headless Chromium via Playwright, real app)."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.browser.conftest import IN_CI, OpenPage, Problems, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


def query(database_url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


async def signed_in(open_page: OpenPage, make_user: MakeUser, **options: object) -> Page:
    user, password = await make_user("administrator")
    # Tall enough that no control sits under the sticky save bar when Playwright scrolls to it.
    options.setdefault("viewport", {"width": 1280, "height": 1600})
    page = await open_page(**options)
    await sign_in(page, user.email, password)
    return page


async def test_the_many_to_many_type_ahead_filters_and_saves_a_diff(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    page = await signed_in(open_page, make_user)
    await page.goto("/admin/technicians/1/")
    box = page.locator("fieldset[data-m2m]")
    search = box.get_by_placeholder("Type to filter…")
    await expect(search).to_be_visible()  # shown only when the script runs
    await search.fill("plu")
    await expect(box.get_by_label("Plumbing", exact=True)).to_be_visible()
    await expect(box.get_by_label("Roofing", exact=True)).to_be_hidden()
    await box.get_by_label("Plumbing", exact=True).check()
    await search.fill("")
    await box.get_by_label("Boilers", exact=True).check()
    await page.get_by_role("button", name="Save and continue editing").click()
    await page.wait_for_url("**/admin/technicians/1/?saved=1")
    await expect(
        page.locator("fieldset[data-m2m]").get_by_label("Plumbing", exact=True)
    ).to_be_checked()
    rows = query(
        seeded,
        "SELECT s.name FROM technician_skills ts JOIN skills s ON s.id = ts.skill_id"
        " WHERE technician_id = 1 ORDER BY 1",
    )
    assert [r[0] for r in rows] == ["Boilers", "Plumbing"]


async def test_without_javascript_the_set_is_a_plain_checkbox_list(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    page = await signed_in(open_page, make_user, java_script_enabled=False)
    await page.goto("/admin/technicians/2/")
    box = page.locator("fieldset[data-m2m]")
    await expect(box.get_by_placeholder("Type to filter…")).to_be_hidden()
    await box.get_by_label("Fire safety", exact=True).check()
    await page.get_by_role("button", name="Save and continue editing").click()
    await page.wait_for_url("**/admin/technicians/2/?saved=1")
    rows = query(
        seeded,
        "SELECT s.name FROM technician_skills ts JOIN skills s ON s.id = ts.skill_id"
        " WHERE technician_id = 2",
    )
    assert [r[0] for r in rows] == ["Fire safety"]


async def test_child_rows_are_added_and_deleted_on_the_parents_page(
    open_page: OpenPage, make_user: MakeUser, seeded: str, browser_problems: Problems
) -> None:
    page = await signed_in(open_page, make_user)
    await page.goto("/admin/technicians/1/")
    section = page.locator("section[data-inline]")
    await section.get_by_label("Delete Harbour House").check()
    await section.locator('[name="_in.properties.new0.name"]').fill("Canal Flats")
    await section.locator('[name="_in.properties.new0.address"]').fill("4 Canal Walk")
    await section.locator('[name="_in.properties.new0.kind"]').select_option("apartment")
    await section.get_by_role("button", name="Add a row").click()
    await section.locator('[name="_in.properties.new1.name"]').fill("Lock Shop")
    await section.locator('[name="_in.properties.new1.address"]').fill("5 Lock Road")
    await section.locator('[name="_in.properties.new1.kind"]').select_option("shop")
    await page.get_by_role("button", name="Save and continue editing").click()
    await page.wait_for_url("**/admin/technicians/1/?saved=1")
    rows = query(seeded, "SELECT name, kind FROM properties WHERE technician_id = 1 ORDER BY name")
    assert rows == [("Canal Flats", "apartment"), ("Lock Shop", "shop")]
    await expect(
        page.locator('section[data-inline] input[name$=".name"][value="Canal Flats"]')
    ).to_have_count(1)
    # A row with an error is shown again with its message, and nothing is saved.
    section = page.locator("section[data-inline]")
    await section.locator('[name="_in.properties.new0.name"]').fill("No address")
    await section.locator('[name="_in.properties.new0.kind"]').select_option("house")
    await page.get_by_role("button", name="Save and continue editing").click()
    await expect(page.locator("section[data-inline]")).to_contain_text("This field is required.")
    assert len(query(seeded, "SELECT 1 FROM properties WHERE technician_id = 1")) == 2
    browser_problems.forget_refusals(400)  # the refused save answers 400 on purpose


async def test_bulk_edit_selects_previews_and_applies(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    page = await signed_in(open_page, make_user)
    await page.goto("/admin/bookings/")
    boxes = page.locator("tbody .k-row-select")
    ids = [await boxes.nth(i).get_attribute("value") for i in (0, 1)]
    for pk in ids:
        await page.get_by_label(f"Select row {pk}", exact=True).check()
    await page.get_by_role("button", name="Edit fields…").click()
    await page.get_by_label("Change status").check()
    await page.locator('[name="v.status"]').select_option("no_show")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("heading", name="Change 2 bookings?")).to_be_visible()
    await page.get_by_role("button", name="Change 2 bookings").click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    await expect(page.get_by_text("Changed 2 bookings.")).to_be_visible()
    rows = query(seeded, f"SELECT status FROM bookings WHERE id IN ({ids[0]}, {ids[1]})")
    assert {r[0] for r in rows} == {"no_show"}
    events = query(
        seeded, "SELECT metadata->>'count' FROM keel_audit WHERE event_type = 'bulk_action'"
    )
    assert events == [("2",)]
