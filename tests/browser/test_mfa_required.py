"""The policy `required` at a real browser: a user who has not set up two-step sign-in is held
on the set-up page, goes through the re-auth wall to set it up (and back, no loop), and only
then reaches the admin."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from app.config import Config
from tests.browser.conftest import IN_CI, OpenPage
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

import pyotp
from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def config(config: Config) -> Config:
    """The harness's configuration with the second factor required for everyone."""
    return replace(config, mfa_policy="required")


async def test_a_held_user_sets_up_through_the_reauth_wall_and_then_gets_in(
    open_page: OpenPage, make_user: MakeUser
) -> None:
    """…and, the set-up done, goes on to the page first asked for, not the set-up page."""
    user, password = await make_user("administrator")
    page = await open_page()
    await page.goto("/admin/bookings/?status=pending")
    await page.wait_for_url(re.compile(r"/login\?return_to="))
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/account/two-step\?return_to="))
    await expect(page.get_by_text("requires two-step sign-in for your account")).to_be_visible()
    await page.goto("/admin/users/")
    await page.wait_for_url(re.compile(r"/account/two-step\?return_to=/admin/users/$"))
    await page.go_back()  # the set-up page that remembers the bookings list
    await page.wait_for_url(re.compile(r"/account/two-step\?return_to=/admin/bookings/"))

    await page.get_by_role("button", name="Set up two-step sign-in").click()
    await page.wait_for_url(re.compile(r"/reauth\?return_to=/account/two-step"))
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Confirm").click()
    await page.wait_for_url(re.compile(r"/account/two-step\?return_to="))
    await page.get_by_role("button", name="Set up two-step sign-in").click()
    await expect(page.locator(".k-qr svg")).to_be_visible()
    secret = (await page.locator("#k-mfa-secret").inner_text()).strip()
    await page.get_by_label("Code the app shows now").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator("#k-backup-codes code")).to_have_count(10)
    await page.get_by_role("link", name="I have saved them — continue").click()
    await page.wait_for_url(re.compile(r"/admin/bookings/\?status=pending$"))
    await expect(page.get_by_text("Status: pending", exact=True)).to_be_visible()
    await page.goto("/account/two-step")
    await expect(page.get_by_text("Two-step sign-in is on")).to_be_visible()
    await page.goto("/admin/users/")
    await page.wait_for_url("**/admin/users/")
