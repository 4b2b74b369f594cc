"""Phone targets and focus after a refused edit, in real Chromium.

docs/design.md promises 40 px pointer targets under 640 px: at 390×844 every visible link, button
and field in the main content of the dashboard, resource lists and edit pages is at least 40 px
tall. A checkbox or radio counts with its label (the label is part of its target: a click on it
ticks the box). The one exception, documented there: a link inside running text (a sentence in a
paragraph), which is as tall as its line."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import IN_CI, OpenPage, Problems, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHONE = {"width": 390, "height": 844}
MIN_TARGET = 40

# Each small target: its height, what it is, where. A box counts its labels' boxes too.
SMALL_TARGETS_JS = """(min) => {
  const seen = (r) => r.width > 0 && r.height > 0;
  const out = [];
  const sel = 'main a[href], main button, main input:not([type=hidden]), main select,'
    + ' main textarea, main summary';
  for (const el of document.querySelectorAll(sel)) {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (!seen(box) || style.visibility === 'hidden') continue;
    if (el.matches('p a, p button')) continue;  // running text: the documented exception
    let h = box.height;
    for (const label of el.labels || []) h = Math.max(h, label.getBoundingClientRect().height);
    if (h + 0.5 < min) {
      const text = (el.getAttribute('aria-label') || el.textContent || el.name || '').trim();
      out.push(`${Math.round(h)} px: <${el.tagName.toLowerCase()} class="${el.className}">`
        + ` ${text.slice(0, 40)} in ${el.parentElement.tagName.toLowerCase()}`);
    }
  }
  return out;
}"""


async def test_every_target_in_the_main_content_is_40_px_on_a_phone(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page(viewport=PHONE)
    await sign_in(page, user.email, password)
    small: list[str] = []
    for path in (
        "/admin/",
        "/admin/bookings/",
        "/admin/bookings/?status=pending",
        "/admin/customers/",
        "/admin/bookings/1/",
        "/admin/customers/1/",  # its bookings inline, with a delete box per row
        "/admin/technicians/1/",  # a boolean field and a many-to-many set of boxes
        "/admin/technicians/new/",
    ):
        resp = await page.goto(path)
        assert resp is not None and resp.status == 200, path
        small += [f"{path}: {s}" for s in await page.evaluate(SMALL_TARGETS_JS, MIN_TARGET)]
    assert not small, "targets under 40 px:\n" + "\n".join(small[:30])


async def test_a_refused_edit_of_a_record_focuses_the_error_summary(
    open_page: OpenPage, make_user: MakeUser, seeded: str, browser_problems: Problems
) -> None:
    """The journeys test covers a create form; an existing record's edit does the same."""
    user, password = await make_user("administrator")
    page = await open_page(viewport=PHONE)
    await sign_in(page, user.email, password)
    await page.goto("/admin/customers/3/")
    await page.evaluate("document.querySelector('form.k-form').noValidate = true")
    await page.get_by_label("Email").fill("not-an-email")
    await page.get_by_role("button", name="Save", exact=True).click()
    summary = page.locator("#error-summary")
    await expect(summary).to_be_focused()
    await summary.get_by_role("link", name=re.compile("^Email")).click()
    await expect(page.get_by_label("Email")).to_be_focused()
    browser_problems.forget_refusals(400)
