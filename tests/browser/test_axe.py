"""axe-core on the page states the role journeys (test_journeys.py) do not visit: the sign-in
page and its error, the account pages, users, groups, the audit log, a bulk action's confirm
page, and the insecure-connection banner as a landmark. Each state is checked in both themes at
the desktop size (the phone layout is the same DOM; test_journeys.py says why)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import IN_CI, OpenPage, Problems, axe_in_both_themes, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Dialog, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESKTOP = {"width": 1440, "height": 900}


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_sign_in_pages_pass_axe_and_the_banner_is_a_landmark(
    open_page: OpenPage, make_user: MakeUser, browser_problems: Problems
) -> None:
    user, _ = await make_user("staff")
    page = await open_page(viewport=DESKTOP)
    await page.goto("/login")
    # Served over plain HTTP: the warning is shown, inside a named region landmark, so a
    # screen reader's landmark list reaches it and nothing sits outside the page structure.
    banner = page.get_by_role("region", name="Connection not secure")
    await expect(banner).to_contain_text("This connection is not secure")
    outside = await page.evaluate(
        "() => [...document.querySelectorAll('.k-banner')].filter((b) =>"
        " !b.closest('main, header, nav, footer, aside, [role=region][aria-label]')).length"
    )
    assert outside == 0
    await axe_in_both_themes(page, "sign-in")

    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(".k-form-errors, [role=alert]").first).to_be_visible()
    browser_problems.forget_refusals(400, 401, 403, 429)
    await axe_in_both_themes(page, "sign-in refused")

    await page.goto("/forgot")
    await axe_in_both_themes(page, "forgotten password")


async def test_admin_and_account_pages_pass_axe_in_both_themes(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("administrator", full_name="Ada Admin")
    other, _ = await make_user("staff", groups=("viewer",), full_name="Val Viewer")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)
    for path in (
        "/admin/users/",
        f"/admin/users/{other.id}/",
        "/admin/users/new",
        "/admin/invitations/",
        "/admin/groups/",
        "/admin/customers/import",
        "/admin/api/",
        "/admin/audit/",
        "/admin/audit/?event=login_succeeded",
        "/account",
        "/account/password",
        "/account/sessions",
        "/account/tokens",
        "/account/two-step",
    ):
        resp = await page.goto(path)
        assert resp is not None and resp.status == 200, path
        await axe_in_both_themes(page, path)

    # A group's page: the first one the list links to.
    await page.goto("/admin/groups/")
    await page.locator("tbody a").first.click()
    await page.wait_for_load_state()
    await axe_in_both_themes(page, "group page")

    # The confirm page of a bulk action (three rows selected, then "Cancel"; the script's
    # confirm() is accepted, the server's confirm page is the state checked).
    page.on("dialog", accept)
    await page.goto("/admin/bookings/?status=pending")
    for box in (await page.locator("tbody .k-row-select").all())[:3]:
        await box.check()
    await page.get_by_role("button", name="Cancel", exact=True).click()
    await expect(page.get_by_role("button", name="Cancel 3 bookings", exact=True)).to_be_visible()
    await axe_in_both_themes(page, "bulk confirm")
