"""Two-step sign-in at a real browser: set it up from the account page (reading the key off the
page and computing the code as an authenticator app would), sign out, sign in with password and
code, a backup code once, and the account lock after wrong codes."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.browser.conftest import IN_CI, OpenPage, Problems, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

import pyotp
from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _password_step(page: Page, email: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/mfa")


async def _code(page: Page, code: str) -> None:
    await page.get_by_role("textbox", name="Code").fill(code)
    await page.get_by_role("button", name="Continue").click()


async def _reauth(page: Page, password: str) -> None:
    await page.wait_for_url("**/reauth?return_to=/account/two-step")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url("**/account/two-step")


async def _set_up(page: Page, password: str) -> tuple[str, list[str]]:
    """From the set-up page, through the re-auth wall; the key read off the page."""
    await page.get_by_role("button", name="Set up two-step sign-in").click()
    await _reauth(page, password)
    await page.get_by_role("button", name="Set up two-step sign-in").click()
    await expect(page.locator(".k-qr svg")).to_be_visible()
    secret = (await page.locator("#k-mfa-secret").inner_text()).strip()
    await page.get_by_label("Code the app shows now").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on").click()
    codes = [c.strip() for c in await page.locator("#k-backup-codes code").all_inner_texts()]
    assert len(codes) == 10
    return secret, codes


async def test_set_up_sign_in_with_a_code_backup_code_once_and_lock(
    open_page: OpenPage, make_user: MakeUser, database_url: str, browser_problems: Problems
) -> None:
    user, password = await make_user("administrator")
    page = await open_page()
    await sign_in(page, user.email, password)
    await page.goto("/account")
    await page.get_by_role("link", name="Manage two-step sign-in").click()
    secret, codes = await _set_up(page, password)

    # Sign out, then sign in with password and the next code (this one was used to set up).
    await page.goto("/account")
    await page.locator(".k-user-menu summary").click()
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login**")
    await _password_step(page, user.email, password)
    await page.goto("/admin/")
    await page.wait_for_url("**/mfa")  # nothing else before the code
    await _code(page, pyotp.TOTP(secret).at(time.time() + 30))
    await page.wait_for_url("**/admin/")

    # A backup code works once.
    other = await open_page()
    await _password_step(other, user.email, password)
    await _code(other, codes[0])
    await other.wait_for_url("**/admin/")
    third = await open_page()
    await _password_step(third, user.email, password)
    await _code(third, codes[0])
    await expect(third.get_by_text("That code is not right")).to_be_visible()

    # Wrong codes count toward the account lock (5 by default: the reused code was one).
    for _ in range(4):
        await _code(third, "000000")
        await expect(third.get_by_text("That code is not right")).to_be_visible()
    await _code(third, codes[1])  # right, but the account is locked now
    await expect(third.get_by_text("That code is not right")).to_be_visible()
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT locked_until IS NOT NULL FROM keel_users WHERE id = %s", (user.id,)
        ).fetchone()
    assert row == (True,)
    await third.wait_for_load_state("load")
    await third.wait_for_timeout(300)  # console messages arrive after the page
    # The refused codes answered 401, which Chromium logs as a failed load; nothing else may.
    expected = [p for p in browser_problems.seen if "/mfa: console error" in p and "401" in p]
    assert expected
    browser_problems.seen[:] = [p for p in browser_problems.seen if p not in expected]


async def test_the_page_asked_for_survives_the_password_and_the_code(
    open_page: OpenPage, make_user: MakeUser, browser_problems: Problems
) -> None:
    """Opening a bookmarked admin address signed out: password, code, and the browser lands on
    that very address (query string included)."""
    user, password = await make_user("administrator")
    page = await open_page()
    await sign_in(page, user.email, password)
    await page.goto("/account/two-step")
    secret, _codes = await _set_up(page, password)
    await page.goto("/account")
    await page.locator(".k-user-menu summary").click()
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login**")

    wanted = "/admin/bookings/?status=cancelled&o=amount"
    await page.goto(wanted)
    await page.wait_for_url("**/login?return_to=**")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/mfa?return_to=**")
    await _code(page, pyotp.TOTP(secret).at(time.time() + 30))
    await page.wait_for_url("**" + wanted)
    assert page.url.endswith(wanted)
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
