"""Finding and checking in real Chromium: global search says why a row matched, and a bulk
action asks once and leaves a message linking the records it changed."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Dialog, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESKTOP = {"width": 1440, "height": 900}


async def test_search_shows_the_matching_field_with_the_match_marked(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("UPDATE customers SET name = '<b>Quill</b> Ltd' WHERE id = 7")
    user, password = await make_user("administrator")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)
    await page.goto("/admin/search?q=quill")
    section = page.locator("section", has=page.get_by_role("heading", name="Customers"))
    why = section.locator("td.k-search-why").first
    await expect(why).to_have_text("Name: <b>Quill</b> Ltd")  # the tags shown as text
    await expect(why.locator("mark")).to_have_text("Quill")
    assert await section.locator("td.k-search-why b").count() == 0


async def test_a_bulk_action_asks_once_and_the_message_links_the_changed_records(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page(viewport=DESKTOP)
    dialogs: list[str] = []

    async def refuse(dialog: Dialog) -> None:  # a second question would stop the action here
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", refuse)
    await sign_in(page, user.email, password)
    await page.goto("/admin/bookings/?status=pending")
    boxes = page.locator("tbody .k-row-select")
    ids = [str(await boxes.nth(i).get_attribute("value")) for i in range(2)]
    for pk in ids:
        await page.get_by_label(f"Select row {pk}", exact=True).check()
    await page.get_by_role("button", name="Cancel", exact=True).click()
    confirm = page.get_by_role("button", name="Cancel 2 bookings", exact=True)
    await expect(confirm).to_be_visible()
    await confirm.click()
    await page.wait_for_url(re.compile(r"/admin/bookings/\?status=pending$"))
    assert dialogs == [], "the confirmation page is the only question"
    flashes = page.locator(".k-flashes")
    await expect(flashes).to_contain_text("Cancel: 2 bookings:")
    await flashes.get_by_role("link", name=f"Booking {ids[1]}", exact=True).click()
    await page.wait_for_url(re.compile(rf"/admin/bookings/{ids[1]}/$"))
    await expect(page.locator("main")).to_contain_text("Cancelled")
