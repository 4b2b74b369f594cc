"""Pages that showed or saved the wrong thing, seen as an operator sees them in real Chromium:
timestamps with microseconds, create forms and column defaults, the user profile layout, the
footer's version, `/new/` with a trailing slash, bulk actions with nothing selected."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from app import __version__
from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESKTOP = {"width": 1440, "height": 900}


async def admin(make_user: MakeUser) -> tuple[str, str]:
    user, password = await make_user("administrator", full_name="Ada Admin")
    return user.email, password


def one(database_url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def execute(database_url: str, query: str, params: Any = None) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(query, params)


# ---- timestamps with microseconds -----------------------------------------------------------

PRECISE = datetime(2026, 12, 4, 5, 26, 22, 143310, tzinfo=UTC)


async def test_timestamps_with_microseconds_are_shown_and_kept_when_untouched(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    execute(
        seeded,
        "UPDATE bookings SET created_at = %s, scheduled_at = %s WHERE id = 10",
        (PRECISE, PRECISE.replace(hour=9)),
    )
    execute(seeded, "UPDATE technicians SET created_at = %s WHERE id = 1", (PRECISE,))
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, email, password)

    # Read-only Created of a technician: the value is on screen, not an empty box.
    await page.goto("/admin/technicians/1/")
    await expect(page.get_by_label("Created at")).to_have_value("2026-12-04T05:26:22")

    # A booking's required, editable timestamps show their value; saving another field works
    # without retyping them and leaves their microseconds alone.
    await page.goto("/admin/bookings/10/")
    await expect(page.get_by_label("Created at")).to_have_value("2026-12-04T05:26:22")
    await expect(page.get_by_label("Scheduled")).to_have_value("2026-12-04T09:26:22")
    await page.get_by_label("Amount").fill("77.25")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    amount, created, scheduled = one(
        seeded, "SELECT amount, created_at, scheduled_at FROM bookings WHERE id = 10"
    )
    assert str(amount) == "77.25"
    assert created == PRECISE, "an untouched timestamp keeps its stored precision"
    assert scheduled == PRECISE.replace(hour=9)

    # Changing the timestamp itself does change it.
    await page.goto("/admin/bookings/10/")
    await page.get_by_label("Scheduled").fill("2026-12-05T08:00")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    scheduled = one(seeded, "SELECT scheduled_at FROM bookings WHERE id = 10")
    assert scheduled == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


# ---- create forms and column defaults -------------------------------------------------------


async def test_create_forms_start_from_the_column_defaults(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, email, password)

    await page.goto("/admin/technicians/new")
    await expect(page.get_by_label("Is active")).to_be_checked()
    await expect(page.get_by_label("Skill level")).to_have_value("junior")
    await expect(page.get_by_label("Hourly rate")).to_have_value("0")
    hired = page.get_by_label("Hired on")
    await expect(hired).to_have_value("")  # current_date: the database's to fill
    await expect(hired).not_to_have_attribute("required", re.compile(".*"))
    await page.get_by_label("Name").fill("Nina New")
    await page.get_by_label("Email").fill("nina@example.org")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/technicians/(\?.*)?$"))
    active, level, rate, hired_on, created = one(
        seeded,
        "SELECT is_active, skill_level, hourly_rate, hired_on = current_date,"
        " created_at > now() - interval '1 hour' FROM technicians WHERE email = 'nina@example.org'",
    )
    assert (active, level, str(rate), hired_on, created) == (True, "junior", "0.00", True, True)

    # A booking's Created at is Keel's to fill: nothing to type, the form saves without it.
    await page.goto("/admin/bookings/new?customer_id=3")
    created_at = page.get_by_label("Created at")
    await expect(created_at).to_have_value("")
    await expect(created_at).not_to_have_attribute("required", re.compile(".*"))
    await page.get_by_label("Status").select_option("pending")
    await page.get_by_label("Amount").fill("12.50")
    await page.get_by_label("Scheduled").fill("2026-12-24T10:00")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    fresh = one(
        seeded,
        "SELECT created_at > now() - interval '1 hour' FROM bookings WHERE id = 301",
    )
    assert fresh is True


# ---- the user profile page ------------------------------------------------------------------

INSIDE_MAIN_JS = """() => {
  const main = document.querySelector("main"), footer = document.querySelector("footer");
  const m = main.getBoundingClientRect(), f = footer.getBoundingClientRect();
  const out = [];
  for (const p of document.querySelectorAll(".k-panel")) {
    const r = p.getBoundingClientRect();
    const inside = main.contains(p) && r.left >= m.left - 0.5 && r.right <= m.right + 0.5
                   && r.top >= m.top - 0.5 && r.bottom <= m.bottom + 0.5 && r.bottom <= f.top + 0.5;
    if (!inside) out.push((p.getAttribute("aria-labelledby") || p.className) +
                          ` ${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}w`);
  }
  return {panels: document.querySelectorAll(".k-panel").length, outside: out};
}"""


async def test_user_profile_panels_sit_inside_main_above_the_footer(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    other, _ = await make_user("staff", full_name="Sam Staff")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, email, password)
    await page.goto(f"/admin/users/{other.id}/")
    found = await page.evaluate(INSIDE_MAIN_JS)
    assert found["panels"] >= 3, found
    assert found["outside"] == [], f"panels outside <main> or below the footer: {found}"
    width = await page.locator(".k-panel").first.evaluate("e => e.getBoundingClientRect().width")
    assert width > 400, f"the first panel is squeezed into {width}px"


# ---- the footer's version -------------------------------------------------------------------


async def test_footer_shows_the_app_version_on_edit_pages(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, email, password)
    for path in ("/admin/customers/3/", "/admin/technicians/1/", "/admin/technicians/new"):
        await page.goto(path)
        await expect(page.locator("footer")).to_contain_text(f"Keel {__version__}")
        await expect(page.locator("footer")).not_to_contain_text(re.compile(r"[th]:\w"))


# ---- trailing slashes -----------------------------------------------------------------------


async def test_new_with_a_trailing_slash_opens_the_create_form(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, email, password)
    resp = await page.goto("/admin/technicians/new/?back=q%3Dada")
    assert resp is not None and resp.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("New technician")
    await expect(page.get_by_label("Name")).to_be_visible()
    assert page.url.endswith("/admin/technicians/new?back=q%3Dada"), page.url


# ---- bulk actions ---------------------------------------------------------------------------


async def test_bulk_action_with_nothing_selected_returns_to_the_list_with_a_message(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=DESKTOP, java_script_enabled=False)
    await sign_in(page, email, password)
    await page.goto("/admin/bookings/?status=pending")
    await page.get_by_role("button", name="Set status to confirmed").click()
    await page.wait_for_url(re.compile(r"/admin/bookings/\?status=pending$"))
    await expect(page.locator(".k-flashes")).to_contain_text("Select at least one booking")
    await expect(page.locator("tbody tr").first).to_be_visible()  # the list is still there
    statuses = await page.locator("tbody tr td:nth-child(4)").all_inner_texts()
    assert statuses and {s.strip() for s in statuses} == {"Pending"}, statuses


async def test_bulk_confirm_buttons_name_the_verb_and_the_count(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=DESKTOP, java_script_enabled=False)
    await sign_in(page, email, password)
    await page.goto("/admin/bookings/?status=pending")
    boxes = page.locator("tbody .k-row-select")
    ids = [str(await boxes.nth(i).get_attribute("value")) for i in range(3)]
    cancelled = "SELECT count(*) FROM bookings WHERE status = 'cancelled' AND id = ANY(%s)"

    async def select_and_cancel() -> None:
        await page.goto("/admin/bookings/?status=pending")
        for pk in ids:
            await page.get_by_label(f"Select row {pk}", exact=True).check()
        await page.get_by_role("button", name="Cancel", exact=True).click()

    await select_and_cancel()
    await expect(page.get_by_role("button", name="Cancel 3 bookings", exact=True)).to_be_visible()
    keep = page.get_by_role("link", name="Keep them", exact=True)
    await expect(keep).to_be_visible()
    labels = await page.locator("main form").get_by_role("button").all_inner_texts()
    labels += await page.locator("main form").get_by_role("link").all_inner_texts()
    assert "Cancel" not in [x.strip() for x in labels], labels

    await keep.click()
    await page.wait_for_url(re.compile(r"/admin/bookings/\?status=pending$"))
    assert one(seeded, cancelled, ([int(i) for i in ids],)) == 0

    await select_and_cancel()
    await page.get_by_role("button", name="Cancel 3 bookings", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/bookings/\?status=pending$"))
    await expect(page.locator(".k-flashes")).to_contain_text("3 bookings")
    assert one(seeded, cancelled, ([int(i) for i in ids],)) == 3
