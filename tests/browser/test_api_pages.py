"""API tokens and the API's description at a real browser: make a token on the account page
(after the password), see it once, use it from a script, revoke it; the description page loads
nothing from anywhere else."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _api_status(base: str, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}/admin/api/bookings/", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            return resp.status


async def test_make_a_token_see_it_once_use_it_and_revoke_it(
    open_page: OpenPage, make_user: MakeUser, live_server: str, seeded: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page()
    await sign_in(page, user.email, password)
    await page.goto("/account")
    await page.get_by_role("link", name="API tokens").click()
    await expect(page.get_by_text("No tokens yet")).to_be_visible()
    await page.get_by_label("Name").fill("nightly-sync")
    await page.get_by_role("button", name="Make token").click()
    # The password again first, then back to the page to make it.
    await page.wait_for_url("**/reauth**")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url("**/account/tokens")
    await page.get_by_label("Name").fill("nightly-sync")
    await page.get_by_role("button", name="Make token").click()
    token = (await page.locator("[data-new-token]").inner_text()).strip()
    assert token.startswith("keel_")
    assert await _api_status(live_server, token) == 200
    # Shown once: the list names it by its first characters only.
    await page.goto("/account/tokens")
    body = await page.content()
    assert token not in body and token[:12] in body and "read-only" in body
    page.on("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Revoke").click()
    await expect(page.get_by_text("revoked")).to_be_visible()
    assert await _api_status(live_server, token) == 401


async def test_the_description_page_loads_nothing_from_elsewhere(
    open_page: OpenPage, make_user: MakeUser, live_server: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page()
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    await sign_in(page, user.email, password)
    await page.goto("/admin/api/")
    await expect(page.get_by_role("heading", name="Bookings")).to_be_visible()
    await expect(page.get_by_text("/admin/api/bookings/{key}").first).to_be_visible()
    assert hosts == {urlsplit(live_server).netloc}
