"""axe-core on the page states test_axe.py and the journeys do not reach: the second-factor
prompt at sign-in, the forced password change, the re-authentication wall, an invitation's page,
the password reset page (good link and dead link), the "mail sent" page, an import preview, the
empty invitations list, the 403 and 404 pages and the public status page. Each in both themes,
refusing moderate findings too (a skipped heading level is one), not only serious ones."""

from __future__ import annotations

import secrets

import psycopg
import pyotp
import pytest

from app import audit
from app.authority import invitations, mfa, recovery
from app.config import Config
from tests.browser.conftest import IN_CI, OpenPage, Problems, axe_in_both_themes, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESKTOP = {"width": 1440, "height": 900}
STRICT = ("moderate", "serious", "critical")


def _ctx(config: Config) -> audit.Context:
    return audit.Context(audit_key=audit.derive_key(config.secret_key), os_actor="tests@localhost")


async def test_sign_in_steps_and_links_pass_axe(
    open_page: OpenPage,
    make_user: MakeUser,
    config: Config,
    database_url: str,
    browser_problems: Problems,
) -> None:
    # The status page and the "mail sent" page, signed out.
    page = await open_page(viewport=DESKTOP)
    await page.goto("/")
    await axe_in_both_themes(page, "status page", STRICT)
    await page.goto("/forgot")
    await page.get_by_label("Email").fill("nobody@example.com")
    await page.get_by_role("button", name="Send the link").click()
    await page.wait_for_url("**/forgot/sent")
    await axe_in_both_themes(page, "reset link sent", STRICT)

    # A reset link: good, then dead.
    user, password = await make_user("staff")
    token = secrets.token_urlsafe(32)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await recovery.issue_token(
            conn, user_id=user.id, ttl_seconds=600, kind="reset", token=token
        )
    await page.goto(f"/reset/{token}")
    await expect(page.get_by_role("textbox", name="New password", exact=True)).to_be_visible()
    await axe_in_both_themes(page, "reset page", STRICT)
    await page.goto(f"/reset/{secrets.token_urlsafe(32)}")
    browser_problems.forget_refusals(410)
    await axe_in_both_themes(page, "dead reset link", STRICT)

    # An invitation's page (the token set to one the test knows: the real one is in the mail).
    invite_token = secrets.token_urlsafe(32)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        inv = await invitations.invite(
            conn, _ctx(config), None, email="ivy@example.com", role="staff",
            public_url=str(config.public_url), ttl=3600,
        )  # fmt: skip
        await conn.execute(
            "UPDATE keel_invitations SET token_hash = %s WHERE id = %s",
            (recovery.token_hash(invite_token), inv.id),
        )
    await page.goto(f"/invite/{invite_token}")
    await expect(page.locator("#password-rules")).to_be_visible()
    await axe_in_both_themes(page, "invitation page", STRICT)

    # The forced password change.
    forced, forced_password = await make_user("staff", must_change=True)
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, forced.email, forced_password, lands_on="**/must-change-password**")
    await axe_in_both_themes(page, "forced password change", STRICT)

    # The second-factor prompt at sign-in.
    two, two_password = await make_user("staff")
    ring = mfa.KeyRing.from_secret_keys(config.secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        secret = await mfa.start_enrolment(conn, ring, two.id)
        await mfa.confirm_enrolment(conn, _ctx(config), ring, two.id, pyotp.TOTP(secret).now())
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, two.email, two_password, lands_on="**/mfa")
    await axe_in_both_themes(page, "second-factor prompt", STRICT)

    # The re-authentication wall.
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)
    await page.goto("/reauth?return_to=/account")
    await expect(page.get_by_label("Password")).to_be_visible()
    await axe_in_both_themes(page, "re-authentication", STRICT)

    # 403 and 404, signed in as staff.
    resp = await page.goto("/admin/users/")
    assert resp is not None and resp.status == 403
    await axe_in_both_themes(page, "403 page", STRICT)
    resp = await page.goto("/admin/no-such-thing/")
    assert resp is not None and resp.status == 404
    browser_problems.forget_refusals(403, 404)
    await axe_in_both_themes(page, "404 page", STRICT)


async def test_admin_states_pass_axe(open_page: OpenPage, make_user: MakeUser, seeded: str) -> None:
    admin, password = await make_user("administrator")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, admin.email, password)

    # No invitation yet: the empty state, whose heading must not skip a level.
    await page.goto("/admin/invitations/")
    await expect(page.locator(".k-empty")).to_be_visible()
    await axe_in_both_themes(page, "no invitations", STRICT)

    # An import preview.
    await page.goto("/admin/customers/import")
    await page.get_by_label("CSV file").set_input_files(
        {
            "name": "people.csv",
            "mimeType": "text/csv",
            "buffer": b"Name,E-mail,Town\nIda Import,ida@example.org,Oslo\nIb,bad,Turku\n",
        }
    )
    await page.get_by_role("button", name="Upload and preview").click()
    await expect(page.locator("[data-import-counts]")).to_be_visible()
    await axe_in_both_themes(page, "import preview", STRICT)
