"""The audit log and the users list as an operator uses them: each event one sentence with links,
toggle pills and date presets in the filter bar, and no empty fields in the address."""

from __future__ import annotations

import re

import psycopg
import pytest

from app import audit
from app import audit_events as ev
from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_operator_reads_sentences_and_filters_with_pills_and_presets(
    open_page: OpenPage, make_user: MakeUser, database_url: str, secret_key: str
) -> None:
    ada, password = await make_user("administrator", full_name="Ada Admin")
    bob, _ = await make_user("user", full_name="Bob Builder")
    by_ada = audit.Context(
        audit_key=audit.derive_key(secret_key), actor_id=ada.id, actor_email=ada.email
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        change = {"job_title": {"from": "", "to": "Plumber"}}
        await audit.record(conn, by_ada, ev.user_updated(bob.id, bob.email, change))
    page = await open_page(viewport={"width": 1440, "height": 900})
    await sign_in(page, ada.email, password)

    await page.goto("/admin/audit/")
    line = page.locator("[data-sentence]").filter(has_text="changed user Bob Builder")
    await expect(line).to_have_text("Ada Admin changed user Bob Builder (job title)")
    box = await line.bounding_box()
    assert box is not None and box["height"] < 40  # one line on a desktop

    # A date preset is one pill in the date control; the address stays clean.
    await page.locator(".k-filters > summary").click()
    await page.locator(".k-filters").get_by_label("Past 7 days").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"/admin/audit/\?when=past_7_days$"))
    await expect(page.locator(".k-filters").get_by_label("Past 7 days")).to_be_checked()
    # The event type and Apply: the empty actor and resource fields stay out of the address.
    await page.get_by_label("Event").select_option("user_updated")
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"\?(?!.*(actor|resource)=)(?=.*event=user_updated)"))
    await expect(line).to_be_visible()
    await expect(page.locator("[data-sentence]").filter(has_text="signed in")).to_have_count(0)

    # The target's name is a link to its page while it exists.
    await line.get_by_role("link", name="user Bob Builder").click()
    await page.wait_for_url(f"**/admin/users/{bob.id}/")

    # The users list: the role as toggle pills; the address names only what was chosen.
    await page.goto("/admin/users/")
    await page.locator(".k-filters > summary").click()
    await page.locator("input[name=role][value=administrator]").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url("**/admin/users/?role=administrator")
    await expect(page.get_by_role("link", name=ada.email).first).to_be_visible()
    await expect(page.get_by_text(bob.email)).to_have_count(0)
    await expect(page.locator("input[name=role][value=administrator]")).to_be_checked()
