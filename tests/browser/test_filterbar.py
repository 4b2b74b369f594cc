"""One filter bar everywhere: the users list and the audit log show the same parts as a resource
list (the Filters disclosure, toggle pills, one date control with presets, saved views above the
table); a preset and Apply filter the rows; a saved view appears above the table. axe-clean."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import IN_CI, OpenPage, assert_axe_clean, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")
DESKTOP = {"width": 1440, "height": 900}

# The filter bar's parts, read from the page: what a resource list shows, the others must too.
PARTS = """() => {
  const bar = document.querySelector("form.k-filterbar");
  const date = bar && bar.querySelector("fieldset.k-filter--wide");
  return {
    bar: !!bar,
    disclosure: !!(bar && bar.querySelector("details.k-filters > summary")),
    pills: !!(bar && bar.querySelector(".k-pills .k-pill input")),
    datePresets: !!(date && date.querySelector(".k-pills input[type=radio]")),
    dateRange: date ? date.querySelectorAll(".k-range input[type=date]").length : 0,
    apply: !!(bar && [...bar.querySelectorAll("button")].some(b => b.textContent.trim() === "Apply")),
    views: !!document.querySelector("nav.k-views"),
  };
}"""


async def parts(page: Page, path: str) -> dict[str, Any]:
    await page.goto(path)
    found: dict[str, Any] = await page.evaluate(PARTS)
    return found


async def test_users_and_audit_wear_the_resource_lists_filter_bar(
    open_page: OpenPage, make_user: MakeUser, seeded: str, database_url: str
) -> None:
    ada, password = await make_user("administrator", full_name="Ada Admin")
    await make_user("user", email="quiet@example.com")
    recent, _ = await make_user("user", email="recent@example.com")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE keel_users SET last_login_at = %s WHERE id = %s",
            (datetime.now(UTC) - timedelta(days=1), recent.id),
        )
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, ada.email, password)

    reference = await parts(page, "/admin/bookings/")
    assert all(reference.values()) and reference["dateRange"] == 2, reference
    for path in ("/admin/users/", "/admin/audit/"):
        assert await parts(page, path) == reference, path
        await page.locator(".k-filters > summary").click()
        await assert_axe_clean(page, path)

    # Users: the "Never" preset of the last sign-in, then Apply: the address names only it.
    await page.goto("/admin/users/")
    await page.locator(".k-filters > summary").click()
    await page.locator(".k-filters").get_by_label("Never").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"/admin/users/\?last_sign_in=never$"))
    await expect(page.get_by_role("link", name="quiet@example.com")).to_be_visible()
    await expect(page.get_by_role("link", name="recent@example.com")).to_have_count(0)
    await expect(page.locator("details.k-filters")).to_have_attribute("open", "")
    await expect(page.locator(".k-chips")).to_contain_text("Last sign-in: never")

    # Saved as a view: it appears above the table, as the current one.
    await page.get_by_placeholder("Name this view").fill("Never signed in")
    await page.get_by_role("button", name="Save view").click()
    view = page.locator(".k-views").get_by_role("link", name="Never signed in")
    await expect(view).to_have_attribute("aria-current", "page")
    await assert_axe_clean(page, "users with a saved view")
    await page.locator(".k-views").get_by_role("link", name="All users").click()
    await expect(page.get_by_role("link", name="recent@example.com")).to_be_visible()
    await view.click()
    await page.wait_for_url(re.compile(r"\?last_sign_in=never$"))

    # The audit log: a preset plus Apply narrows the history; the view is saved the same way.
    await page.goto("/admin/audit/")
    await page.locator(".k-filters > summary").click()
    # Past 7 days, not Today: the events above stay in it when the test runs across midnight UTC.
    await page.locator(".k-filters").get_by_label("Past 7 days").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"/admin/audit/\?when=past_7_days$"))
    await expect(page.locator("[data-sentence]").first).to_be_visible()
    await page.get_by_placeholder("Name this view").fill("This week")
    await page.get_by_role("button", name="Save view").click()
    await expect(
        page.locator(".k-views").get_by_role("link", name="This week", exact=True)
    ).to_have_attribute("aria-current", "page")
    await assert_axe_clean(page, "audit log with a saved view")
