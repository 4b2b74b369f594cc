"""What a person at a real browser notices (UI-1, UI-2): keyboard use and a visible focus ring,
the "/" search shortcut, a 360 px screen, pages without JavaScript, light and dark contrast, and
no CSP violations or console errors. Headless Chromium via Playwright, against the real app."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import IN_CI, OpenPage, Problems, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Locator, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHONE = {"width": 360, "height": 740}

# The focused element matches `sel`, is :focus-visible and draws an outline or a box-shadow ring.
FOCUS_RING_JS = """(sel) => {
  const el = document.activeElement, cs = getComputedStyle(el);
  const outline = cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) > 0;
  return el.matches(sel) && el.matches(":focus-visible") && (outline || cs.boxShadow !== "none");
}"""

# Elements sticking out past the right edge, outside any container that scrolls or clips them.
OVERFLOW_JS = """() => {
  const w = document.documentElement.clientWidth, out = [];
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o !== "visible") return true;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > w + 0.5 && getComputedStyle(el).visibility !== "hidden" && !clipped(el))
      out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
               (el.className && typeof el.className === "string" ? "." + el.className.trim().replace(/\\s+/g, ".") : "") +
               " right=" + Math.round(r.right));
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, culprits: out.slice(0, 8)};
}"""

# WCAG 2.4.11: the focused element is not entirely hidden by sticky bars: some point of it (or of
# its label, for a visually hidden control such as the drawer checkbox) is on top.
FOCUS_SHOWN_JS = """() => {
  const el = document.activeElement;
  if (el === document.body) return {atBody: true};
  const onTop = (box) => {
    const r = box.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) return false;
    const x = Math.min(Math.max(r.left + r.width / 2, 0), innerWidth - 1);
    return [r.top + 2, r.top + r.height / 2, r.bottom - 2].some((y) => {
      const hit = y >= 0 && y < innerHeight ? document.elementFromPoint(x, y) : null;
      return hit && (hit === box || box.contains(hit));
    });
  };
  return {atBody: false, skip: el.classList.contains("k-skip"),
          shown: onTop(el) || [...(el.labels || [])].some(onTop),
          what: el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " +
                (el.getAttribute("aria-label") || el.textContent || "").trim().slice(0, 30)};
}"""

# For each named selector: the first match's text colour and the effective background behind it
# (walking up to the first opaque background, compositing translucent ones on the way).
COLOURS_JS = """(selectors) => {
  const parse = (c) => {
    const m = c.match(/^rgba?\\(([\\d.]+),\\s*([\\d.]+),\\s*([\\d.]+)(?:,\\s*([\\d.]+))?\\)$/);
    if (!m) throw new Error("unparsed colour " + c);
    return [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]];
  };
  const pair = (el) => {
    const layers = [];
    for (let p = el; p; p = p.parentElement) {
      const bg = parse(getComputedStyle(p).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    let bg = [255, 255, 255];  // the canvas, if nothing is opaque
    if (layers.length && layers[layers.length - 1][3] >= 1) bg = layers.pop().slice(0, 3);
    for (const l of layers.reverse()) bg = bg.map((v, i) => l[i] * l[3] + v * (1 - l[3]));
    const fg = parse(getComputedStyle(el).color);
    return {fg: fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3])), bg};
  };
  const out = {};
  for (const [name, sel] of Object.entries(selectors)) {
    const el = [...document.querySelectorAll(sel)].find((e) => e.checkVisibility());
    out[name] = el ? pair(el) : null;
  }
  return out;
}"""


def luminance(rgb: list[float]) -> float:
    def channel(v: float) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: list[float], b: list[float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def colours(page: Page, **selectors: str) -> dict[str, Any]:
    """{name: {fg, bg}} for the first visible match of each selector."""
    found: dict[str, Any] = await page.evaluate(COLOURS_JS, selectors)
    missing = [selectors[name] for name, pair in found.items() if pair is None]
    assert not missing, f"nothing visible matches {missing} on {page.url}"
    return found


async def assert_focus_ring(page: Page, selector: str) -> None:
    """`selector` has keyboard focus and a visible ring (polled: style may settle a frame late)."""
    try:
        await page.wait_for_function(FOCUS_RING_JS, arg=selector, timeout=2_000)
    except PlaywrightTimeoutError:
        focused = await page.evaluate(
            "() => { const e = document.activeElement, cs = getComputedStyle(e);"
            " return [e.outerHTML.slice(0, 120), cs.outlineStyle, cs.outlineWidth, cs.boxShadow]; }"
        )
        pytest.fail(f"expected a visible focus ring on {selector}; focused: {focused}")


async def walk_focus(page: Page, key: str, limit: int) -> tuple[int, str, list[str]]:
    """Press `key` until focus leaves the page (Tab), reaches the skip link (Shift+Tab) or `limit`
    presses; → (stops, where it ended, focused elements that were hidden under a sticky bar)."""
    hidden: list[str] = []
    for stops in range(limit):
        await page.keyboard.press(key)
        info = await page.evaluate(FOCUS_SHOWN_JS)
        if info["atBody"]:
            return stops, "end", hidden
        if not info["shown"]:  # look again a moment later: style can settle a frame late
            await page.wait_for_timeout(150)
            info = await page.evaluate(FOCUS_SHOWN_JS)
        if not info["shown"]:
            hidden.append(f"{key}: {info['what']}")
        if key == "Shift+Tab" and info["skip"]:
            return stops + 1, "start", hidden
    return limit, "limit", hidden


def row_of(page: Page, pk: str | None) -> Locator:
    """The list row whose selection box is "Select row <pk>"."""
    return page.locator("tbody tr").filter(has=page.get_by_label(f"Select row {pk}", exact=True))


async def admin(make_user: MakeUser) -> tuple[str, str]:
    user, password = await make_user("administrator", full_name="Ada Admin")
    return user.email, password


# ---- keyboard -------------------------------------------------------------------------------


async def test_sign_in_with_the_keyboard_alone_shows_a_focus_ring_and_lands_on_the_dashboard(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page()
    await page.goto("/login")
    # The cursor starts in Email (autofocus); if it did not, Tab must reach it from the top.
    for _ in range(8):
        if await page.evaluate("document.activeElement.id") == "f-email":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "f-email"
    await assert_focus_ring(page, "#f-email")
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await assert_focus_ring(page, "#f-password")
    await page.keyboard.type(password)
    await page.keyboard.press("Tab")
    await assert_focus_ring(page, "button[type=submit]")  # "Sign in"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/admin/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # On the dashboard the first Tab shows the skip link, and it moves focus to the content.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await assert_focus_ring(page, ".k-skip")
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    # Shift+Tab up a scrolled table: rows never hide under its sticky header row (WCAG 2.4.11).
    # Set-up: the table scrolled so that row 20 is the first one below the header, focus on it.
    await page.goto("/admin/bookings/")
    await page.locator(".k-table-wrap").evaluate(
        """w => {
          w.scrollIntoView({block: "center"});
          const row = w.querySelectorAll("tbody tr")[20], head = w.querySelector("thead");
          w.scrollTop += row.getBoundingClientRect().top - head.getBoundingClientRect().bottom;
          row.querySelector("input").focus({preventScroll: true});
        }"""
    )
    _, _, hidden = await walk_focus(page, "Shift+Tab", 6)
    assert not hidden, f"focused but hidden under the table header: {hidden}"


async def test_slash_focuses_the_global_search_and_enter_shows_results(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page()
    await sign_in(page, email, password)
    await page.keyboard.press("/")
    box = page.get_by_role("searchbox", name="Search everything")
    await expect(box).to_be_focused()
    await page.keyboard.type("late arrival")
    await expect(box).to_have_value("late arrival")  # the "/" itself is not typed into it
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/admin/search\?q=late\+arrival$"))
    bookings = page.get_by_role("region", name="Bookings")
    await expect(bookings.get_by_role("row").nth(1)).to_be_visible()
    await expect(bookings.get_by_text(re.compile(r"\d+ found"))).to_be_visible()


# ---- small screens --------------------------------------------------------------------------


async def assert_fits(page: Page, path: str) -> None:
    await page.goto(path)
    m = await page.evaluate(OVERFLOW_JS)
    assert m["scrollWidth"] <= m["innerWidth"], f"{path} scrolls sideways at 360 px: {m}"


async def test_at_360px_pages_fit_the_drawer_opens_and_focus_stays_in_view(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(viewport=PHONE)
    await assert_fits(page, "/login")
    await sign_in(page, email, password)
    for path in ("/admin/", "/admin/bookings/", "/admin/bookings/10/"):
        await assert_fits(page, path)

    # The bookings table is wider than the screen: it scrolls inside its own container instead.
    await page.goto("/admin/bookings/")
    scrolls = await page.locator(".k-table-wrap").first.evaluate(
        "e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'"
    )
    assert scrolls, "the bookings table should scroll sideways inside .k-table-wrap"

    nav = page.get_by_role("navigation", name="Main")
    await expect(nav).to_be_hidden()
    await page.locator(".k-menu-btn").click()  # the menu button (a label for the drawer toggle)
    await expect(nav).to_be_visible()
    await nav.get_by_role("link", name=re.compile(r"^Customers")).click()
    await page.wait_for_url("**/admin/customers/")
    await expect(nav).to_be_hidden()

    # Keyboard: skip link, then the drawer toggle; Space opens it, Escape closes it.
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "k-drawer"
    await expect(page.locator(".k-menu-btn")).not_to_have_css("outline-style", "none")
    await page.keyboard.press("Space")
    await expect(nav).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(nav).to_be_hidden()

    # Tabbing through a long form and back: no focused field hides under the sticky top bar or
    # the sticky save bar (WCAG 2.2 2.4.11, Focus Not Obscured).
    # Tab must leave the page after its last control (no trap) and Shift+Tab walk back to the first.
    await page.goto("/admin/technicians/1/")
    forward, end, hidden = await walk_focus(page, "Tab", 80)
    assert end == "end" and forward > 20, (end, forward)
    back, start, hidden_back = await walk_focus(page, "Shift+Tab", 80)
    assert start == "start", (start, back)
    assert not hidden + hidden_back, (
        f"focused but hidden under a sticky bar: {hidden + hidden_back}"
    )


# ---- without JavaScript ---------------------------------------------------------------------


async def test_without_javascript_editing_filters_and_bulk_actions_work(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    page = await open_page(java_script_enabled=False)
    await sign_in(page, email, password)

    # Edit the first booking of the list, change the amount, Save: the list shows it.
    await page.goto("/admin/bookings/")
    first = page.locator("tbody tr").first.locator("a.k-row-link")
    booking_id = (await first.inner_text()).strip()
    await first.click()
    await page.wait_for_url(f"**/admin/bookings/{booking_id}/**")
    await page.get_by_label("Amount").fill("4321.50")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    await expect(row_of(page, booking_id)).to_contain_text("€4,321.50")

    # Filters are a plain GET form: only cancelled bookings remain.
    await page.get_by_text("Filters", exact=True).click()
    await page.locator(".k-filters").get_by_label("Cancelled").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"status=cancelled"))
    statuses = await page.locator("tbody tr td:nth-child(4)").all_inner_texts()
    assert statuses and {s.strip() for s in statuses} == {"Cancelled"}, statuses

    # Bulk action: tick two rows, "Set status to confirmed" runs without a script.
    await page.goto("/admin/bookings/")
    boxes = page.locator("tbody .k-row-select")
    ids = [await boxes.nth(i).get_attribute("value") for i in (1, 2)]
    for pk in ids:
        await expect(row_of(page, pk)).not_to_contain_text("Confirmed")
        await page.get_by_label(f"Select row {pk}", exact=True).check()
    await page.get_by_role("button", name="Set status to confirmed").click()
    await page.wait_for_url(re.compile(r"/admin/bookings/(\?.*)?$"))
    for pk in ids:
        await expect(row_of(page, pk)).to_contain_text("Confirmed")


# ---- themes and contrast --------------------------------------------------------------------


async def test_light_and_dark_themes_differ_and_text_meets_wcag_aa(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    email, password = await admin(make_user)
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = await open_page(color_scheme=scheme)
        await page.goto("/login")
        backgrounds[scheme] = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        pairs = await colours(
            page,
            heading="main h1",
            label="label[for=f-email]",
            link="a[href='/forgot']",
            primary_button=".k-btn--primary",
        )
        await sign_in(page, email, password)
        await page.goto("/admin/bookings/")
        pairs |= await colours(
            page,
            table_text="tbody td:nth-child(4)",
            row_link="tbody a.k-row-link",
            link_in_a_cell="tbody td:nth-child(3) a",
            muted_subtitle=".k-page-subtitle",
            table_header="thead th a",
            nav_item="nav[aria-label=Main] a:not([aria-current])",
            current_nav_item="nav[aria-label=Main] a[aria-current=page]",
            new_button=".k-page-actions .k-btn--primary",
            footer=".k-footer span",
        )
        ratios = {name: round(contrast(p["fg"], p["bg"]), 2) for name, p in pairs.items()}
        failing = {name: r for name, r in ratios.items() if r < 4.5}
        assert not failing, f"{scheme}: below 4.5:1 — {failing}"
        text = pairs["table_text"]
        dark_on_light = luminance(text["fg"]) < luminance(text["bg"])
        assert dark_on_light == (scheme == "light"), f"{scheme}: {text}"
    assert backgrounds["light"] != backgrounds["dark"], backgrounds

    # The theme menu switches a light-preferring browser to dark, without JavaScript too.
    page = await open_page(color_scheme="light", java_script_enabled=False)
    await page.goto("/login")
    await page.get_by_label("Colour theme").click()
    await page.get_by_label("Dark").check()
    await expect(page.locator("body")).to_have_css("background-color", backgrounds["dark"])


# ---- content security policy and console ----------------------------------------------------


async def test_pages_log_no_csp_violation_or_console_error(
    open_page: OpenPage, make_user: MakeUser, seeded: str, browser_problems: Problems
) -> None:
    email, password = await admin(make_user)
    page = await open_page()
    # Control: an inline script is refused by the CSP, and the listener hears about it.
    await page.goto("/")
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1';"
        " document.body.append(s); }"
    )
    for _ in range(20):
        if any("Content Security Policy" in p for p in browser_problems.seen):
            break
        await page.wait_for_timeout(100)
    assert any("Content Security Policy" in p for p in browser_problems.seen), browser_problems
    browser_problems.seen.clear()

    await sign_in(page, email, password)
    for path in (
        "/",
        "/admin/bookings/?q=late&status=cancelled",
        "/admin/bookings/new",
        "/admin/technicians/1/",
        "/admin/customers/8/",
        "/admin/search?q=harbour",
        "/admin/users/",
        "/admin/audit/",
        "/account/sessions",
    ):
        resp = await page.goto(path)
        assert resp is not None and resp.status == 200, path
    # An autocomplete field talks to the server (connect-src): type into it.
    await page.goto("/admin/bookings/10/")
    combo = page.get_by_role("combobox").first
    await combo.fill("Customer 1")
    await expect(page.get_by_role("option").first).to_be_visible()
    assert browser_problems.seen == []
