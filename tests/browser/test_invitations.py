"""Invitations at a real browser, with the mail delivered by the outbox worker to a real SMTP
server (aiosmtpd): an administrator invites from the users list, the link in the mail opens the
invitee's page, they choose a password (the rules are on the page) and are signed in; the link
then refuses a second use; expiry, "send again" (the old link dies) and "withdraw" are honoured;
an unknown link gets the same page as a used one; the invited account cannot sign in meanwhile;
a role the MFA policy covers goes on to set up two-step sign-in."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Iterator

import psycopg
import pytest

from app.config import Config, load_config
from app.web.account import LOGIN_FAILED
from tests.browser.conftest import IN_CI, OpenPage, Problems, sign_in
from tests.helpers import Recorder, smtp_server
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")
PASSWORD = "harbour lantern copper fig"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Recorder]]:
    with smtp_server() as server:
        yield server.port, server.handler


@pytest.fixture
def config(
    database_url: str,
    secret_key: str,
    listening_socket: socket.socket,
    smtp: tuple[int, Recorder],
) -> Config:
    """The browser harness's config, plus real SMTP and two-step sign-in required of supervisors."""
    port = listening_socket.getsockname()[1]
    return load_config(
        env={},
        flags={
            "database_url": database_url,
            "secret_key": secret_key,
            "public_url": f"http://127.0.0.1:{port}",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp[0],
            "smtp_tls": "none",
            "mail_from": "Keel <keel@example.com>",
            "mfa_policy": "required:supervisor",
        },
    )


async def _mail_to(recorder: Recorder, address: str, count: int = 1) -> str:
    """The link in the `count`-th mail delivered to `address` (waits for the worker)."""
    for _ in range(200):
        mails = [m for m in recorder.messages if m["To"] == address]
        if len(mails) >= count:
            text = mails[count - 1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
            found = re.search(r"http://127\.0\.0\.1:\d+(/invite/[A-Za-z0-9_-]{43})", text)
            assert found, text
            return found.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail number {count} to {address} arrived")


async def _invite(page: Page, email: str, role: str, groups: tuple[str, ...] = ()) -> None:
    await page.goto("/admin/users/")
    await page.get_by_role("link", name="Invite", exact=True).click()
    await page.wait_for_url("**/admin/invitations/new")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Role").select_option(role)
    for name in groups:
        await page.get_by_label(name, exact=True).check()
    await page.get_by_role("button", name="Send invitation").click()
    await page.wait_for_url("**/admin/invitations/")
    await expect(page.get_by_text(f"Invitation sent to {email}.")).to_be_visible()


async def _accept(page: Page, link: str, password: str = PASSWORD) -> None:
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Accept your invitation")).to_be_visible()
    await page.locator("#f-password").fill(password)
    await page.locator("#f-confirm").fill(password)
    await page.get_by_role("button", name="Set the password and sign in").click()


async def _refused(page: Page, link: str) -> str:
    response = await page.goto(link)
    assert response is not None and response.status == 410
    await expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    return str(await page.locator("main").inner_text())


async def _login_error(page: Page, email: str, password: str) -> str:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    errors = page.locator(".k-form-errors")
    await expect(errors).to_be_visible()
    return str(await errors.inner_text())


async def test_invite_accept_sign_in_and_the_link_works_once(
    open_page: OpenPage,
    make_user: MakeUser,
    smtp: tuple[int, Recorder],
    database_url: str,
    browser_problems: Problems,
) -> None:
    _port, recorder = smtp
    admin, admin_password = await make_user("administrator")
    page = await open_page()
    await sign_in(page, admin.email, admin_password)
    await _invite(page, "casey@example.com", "staff", ("editor",))
    row = page.get_by_role("row").filter(has_text="casey@example.com")
    await expect(row).to_contain_text("Staff")
    await expect(row).to_contain_text("editor")

    link = await _mail_to(recorder, "casey@example.com")
    invitee = await open_page()
    # Until accepted, the account cannot sign in: the answer a wrong password gets.
    assert await _login_error(invitee, "casey@example.com", PASSWORD) == LOGIN_FAILED
    assert await _login_error(invitee, admin.email, "not the password at all") == LOGIN_FAILED

    await invitee.goto(link)
    await expect(invitee.locator("#password-rules")).to_contain_text("At least 12 characters")
    await _accept(invitee, link, "short")  # the policy refuses; the link stays good
    await expect(invitee.get_by_text("at least 12 characters", exact=False).first).to_be_visible()
    await _accept(invitee, link)
    await invitee.wait_for_url("**/admin/")
    await expect(invitee.get_by_text("your password is set and you are signed in")).to_be_visible()

    # The link works once; a made-up one gets the very same page.
    used = await _refused(await open_page(), link)
    unknown = await _refused(await open_page(), "/invite/" + secrets.token_urlsafe(32))
    assert used == unknown
    # The new password signs in like any other; the invitation is no longer listed.
    again = await open_page()
    await sign_in(again, "casey@example.com", PASSWORD)
    await page.goto("/admin/invitations/")
    await expect(page.get_by_text("No open invitations")).to_be_visible()
    with psycopg.connect(database_url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT event_type FROM keel_audit WHERE event_type LIKE 'invitation_%' ORDER BY id"
            )
        ]
    assert kinds == ["invitation_sent", "invitation_accepted"]
    browser_problems.forget_refusals(400, 401, 410)


async def test_resend_withdraw_and_expiry(
    open_page: OpenPage,
    make_user: MakeUser,
    smtp: tuple[int, Recorder],
    database_url: str,
    browser_problems: Problems,
) -> None:
    _port, recorder = smtp
    admin, admin_password = await make_user("administrator")
    page = await open_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await sign_in(page, admin.email, admin_password)

    # Send again: a new link; the old one stops working.
    await _invite(page, "dana@example.com", "user")
    first = await _mail_to(recorder, "dana@example.com")
    await page.get_by_role("button", name="Send the invitation to dana@example.com again").click()
    await expect(page.get_by_text("the previous one no longer works")).to_be_visible()
    second = await _mail_to(recorder, "dana@example.com", count=2)
    assert second != first
    await _refused(await open_page(), first)

    # Withdraw: the link dies and the address cannot sign in.
    await page.get_by_role("button", name="Withdraw the invitation to dana@example.com").click()
    await expect(
        page.get_by_text("The invitation to dana@example.com was withdrawn.")
    ).to_be_visible()
    await _refused(await open_page(), second)

    # Expiry: a link past its time gets the same page.
    await _invite(page, "eli@example.com", "user")
    link = await _mail_to(recorder, "eli@example.com")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE keel_invitations SET expires_at = now() - interval '1 second'"
            " WHERE email = 'eli@example.com'"
        )
    await _refused(await open_page(), link)
    await page.goto("/admin/invitations/")
    row = page.get_by_role("row").filter(has_text="eli@example.com")
    await expect(row).to_contain_text("Expired")
    browser_problems.forget_refusals(400, 401, 410)


async def test_a_role_that_must_use_two_step_sign_in_sets_it_up_next(
    open_page: OpenPage, make_user: MakeUser, smtp: tuple[int, Recorder]
) -> None:
    _port, recorder = smtp
    admin, admin_password = await make_user("administrator")
    page = await open_page()
    await sign_in(page, admin.email, admin_password)
    await _invite(page, "fern@example.com", "supervisor")
    invitee = await open_page()
    await _accept(invitee, await _mail_to(recorder, "fern@example.com"))
    await invitee.wait_for_url("**/account/two-step")
    await expect(invitee.get_by_role("button", name="Set up two-step sign-in")).to_be_visible()
