"""A day at the admin, per role, in real Chromium: every page kind at a desktop (1440×900) and a
phone (390×844) size, light and dark, checked for what a person would notice — every panel
inside <main>, the first record and the pager reachable by scrolling the page, no sideways
scrolling except a table's own, text contrast (WCAG AA, computed from the page's own colours),
no serious or critical axe-core violation in either theme, no console error and no CSP
violation (the `open_page` fixture fails the test on either). test_axe.py runs axe on the page
states this walk does not reach (sign-in, account pages, groups, a bulk confirm page).

axe-core is the walk's costliest check (about half a CPU second a run), so it runs once per
page state, where that state's markup is richest: on the administrator's walk, whose pages hold
every control the editor's and viewer's pages hold (theirs are the same templates with less in
them), and on the viewer's read-only record, the one page whose markup only a view-only role
gets. The pages test_axe.py checks already (AXE_ELSEWHERE) are not checked twice. The layout,
overflow and contrast checks, which are cheap, still run on every page of every role. (On a
long table axe-core's colour rules see each kind of row once: conftest.AXE_JS says why.)

One server and one database serve all three roles; each role signs in once and each page is
loaded once, then looked at in four ways (two sizes, two themes) in place, so the walk stays
quick."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import (
    IN_CI,
    THEME_JS,
    OpenPage,
    Problems,
    assert_axe_clean,
    sign_in,
)
from tests.browser.test_ui import OVERFLOW_JS
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

# Direct children of <body> that belong to the layout; anything else is outside the grid.
LAYOUT_JS = """() => {
  const allowed = ["k-skip", "k-drawer-state", "k-topbar", "k-banner", "k-shell", "k-palette"];
  const main = document.querySelector("main"), problems = [];
  if (!main) return ["no <main>"];
  for (const el of document.body.children) {
    if (el.tagName === "SCRIPT" || el.tagName === "TEMPLATE") continue;
    if (!allowed.some((c) => el.classList.contains(c)))
      problems.push("outside the layout: <" + el.tagName.toLowerCase() + " class='" + el.className + "'>");
  }
  const m = main.getBoundingClientRect();
  const panels = ".k-panel, .k-card, .k-fieldset, .k-table-wrap, .k-flash, .k-form-errors, .k-empty, .k-views, .k-chart";
  for (const p of document.querySelectorAll(panels)) {
    if (p.closest("dialog")) continue;
    if (!main.contains(p)) { problems.push("panel outside <main>: " + p.className); continue; }
    if (!p.checkVisibility()) continue;
    const r = p.getBoundingClientRect();
    if (r.left < m.left - 1 || r.right > m.right + 1)
      problems.push("panel sticks out of <main>: " + (p.className.baseVal ?? p.className));
  }
  // Everything a screen reader user lands on belongs to a landmark, the banners included.
  for (const b of document.querySelectorAll(".k-banner"))
    if (!b.closest("main, header, nav, footer, aside, [role=region][aria-label]"))
      problems.push("banner outside a landmark: " + b.className);
  const footer = document.querySelector(".k-footer");
  if (footer && footer.getBoundingClientRect().top < m.bottom - 1) problems.push("footer above the end of <main>");
  return problems;
}"""

# Scrolls the page (not a box) to `sel` and says whether a click there would land on it.
REACH_JS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el) return "missing";
  el.scrollIntoView({block: "center"});
  const r = el.getBoundingClientRect();
  if (r.bottom <= 0 || r.top >= innerHeight) return "off screen";
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (!(hit && (hit === el || el.contains(hit)))) return "covered by " + (hit ? hit.outerHTML.slice(0, 80) : "nothing");
  const wrap = el.closest(".k-table-wrap");
  if (wrap && wrap.scrollHeight > wrap.clientHeight + 1) return "the table scrolls in its own box";
  return "ok";
}"""

# Every visible piece of text (and every filled field) against the background behind it, and
# the borders of fields and toggles against theirs: WCAG 2.2 AA, 4.5:1 for text, 3:1 for large
# text (24 px, or 18.66 px bold) and for the boundaries of controls. Disabled controls are
# exempt (as WCAG says); behind an open dialog only the dialog counts.
CONTRAST_JS = """() => {
  const parse = (c) => {
    const m = c && c.match(/^rgba?\\(([\\d.]+),\\s*([\\d.]+),\\s*([\\d.]+)(?:,\\s*([\\d.]+))?\\)$/);
    return m ? [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]] : null;
  };
  const lum = (c) => {
    const ch = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2]);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const memo = new Map();
  const behind = (el) => {
    if (memo.has(el)) return memo.get(el);
    const own = parse(getComputedStyle(el).backgroundColor);
    let result;
    if (own && own[3] >= 1) result = own.slice(0, 3);
    else {
      const under = el.parentElement ? behind(el.parentElement) : [255, 255, 255];
      result = own && own[3] > 0 ? under.map((v, i) => own[i] * own[3] + v * (1 - own[3])) : under;
    }
    memo.set(el, result);
    return result;
  };
  const over = (fg, bg) => fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3]));
  const dialog = document.querySelector("dialog[open]");
  const shown = (el) => {
    if (dialog && !dialog.contains(el)) return false;
    if (el.closest(":disabled, [aria-disabled=true], [inert]")) return false;
    const r = el.getBoundingClientRect();
    return r.width > 1 && r.height > 1 && el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  };
  const what = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "") +
    " '" + (el.value || el.textContent || "").trim().slice(0, 30) + "'";
  const failures = [];
  let checked = 0;
  for (const el of document.body.querySelectorAll("*")) {
    const tag = el.tagName;
    if (tag === "SCRIPT" || tag === "STYLE" || tag === "OPTION") continue;
    const field = (tag === "INPUT" && !["checkbox", "radio", "hidden", "submit"].includes(el.type)) ||
                  tag === "TEXTAREA" || tag === "SELECT";
    const hasText = field ? el.value !== "" :
      [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!hasText || !shown(el)) continue;
    const cs = getComputedStyle(el);
    const svg = el instanceof SVGElement;
    const fg = parse(svg ? cs.fill : cs.color);
    if (!fg) continue;
    const bg = behind(svg ? el.closest("svg").parentElement : el);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    const r = ratio(over(fg, bg), bg);
    checked++;
    if (r < need) failures.push(what(el) + " " + r.toFixed(2) + " < " + need + " fg=" + cs.color + " bg=" + bg.map(Math.round));
  }
  for (const el of document.querySelectorAll(".k-input, .k-select, .k-textarea, .k-pill")) {
    if (!shown(el)) continue;
    const cs = getComputedStyle(el), border = parse(cs.borderTopColor);
    if (!border || parseFloat(cs.borderTopWidth) === 0) continue;
    const bg = behind(el.parentElement), r = ratio(over(border, bg), bg);
    checked++;
    if (r < 3) failures.push("border of " + what(el) + " " + r.toFixed(2) + " < 3");
  }
  return {checked, failures: failures.slice(0, 12)};
}"""


# One look's checks in one round trip to the page: LAYOUT_JS, OVERFLOW_JS and CONTRAST_JS only
# read the page, so they run as they would one by one; then, on a list page, REACH_JS for each
# selector given (it scrolls) and back to the top.
CHECKS_JS = (
    "(reach) => {\n"
    f"  const layout = ({LAYOUT_JS})();\n"
    f"  const overflow = ({OVERFLOW_JS})();\n"
    f"  const contrast = ({CONTRAST_JS})();\n"
    f"  const reached = reach.map((sel) => ({REACH_JS})(sel));\n"
    "  if (reach.length) window.scrollTo(0, 0);\n"
    "  return {layout, overflow, contrast, reached};\n"
    "}"
)
REACHABLE = ("tbody a.k-row-link", ".k-pagination a[rel=next]")  # the first record, the pager


async def check_page(page: Page, state: str, *, list_page: bool = False) -> None:
    """The layout, overflow and contrast facts of the page as it is now; on a list page, the
    first record and the pager reachable by scrolling the page."""

    where = f"{state} at {page.viewport_size}"
    found = await page.evaluate(CHECKS_JS, list(REACHABLE) if list_page else [])
    assert not found["layout"], f"{where}: {found['layout']}"
    overflow = found["overflow"]
    assert overflow["scrollWidth"] <= overflow["innerWidth"], f"{where}: {overflow}"
    assert not overflow["culprits"], f"{where}: {overflow}"
    result = found["contrast"]
    assert result["checked"] > 5, f"{where}: nothing to check?"
    assert not result["failures"], f"{where}: contrast {result['failures']}"
    for sel, reached in zip(REACHABLE, found["reached"], strict=False):
        assert reached == "ok", f"{where}: {sel}: {reached}"


async def each_look(page: Page, state: str, *, list_page: bool = False, axe: bool = True) -> None:
    """`check_page` at both sizes in both themes, on the page as loaded: the viewport and the
    colour scheme change in place (as a person turning a tablet or switching themes would),
    which costs no reload. With `axe`, axe-core too (see the module's docstring).

    Each resize and each theme switch costs Chromium a full relayout (50–150 ms of CPU), so
    the looks need one resize: at the size the page is at, light then dark; at the other size,
    dark then light. The page is left at that other size, in the light theme; the walk's next
    page loads at that size and starts from it, so the walk loads about half its pages at
    each size."""
    first = page.viewport_size
    other = PHONE if first == DESKTOP else DESKTOP
    for viewport, scheme in ((first, "light"), (first, "dark"), (other, "dark"), (other, "light")):
        if page.viewport_size != viewport:
            await page.set_viewport_size(viewport)
            if await page.locator(".k-table-wrap").count():
                await page.wait_for_timeout(150)  # keel.js measures tables 100 ms after a resize
        # The theme as the theme menu sets it (the same tokens as the system preference, which
        # tests/browser/test_ui.py covers), with a full restyle (see THEME_JS). Also after a
        # resize to the theme already shown: in this Chromium a resize leaves the styles of
        # the old size's media queries in place (a 40 px touch target still 32 px at the phone
        # size, 150 ms later) until that full restyle; the page then matches the same page
        # loaded fresh at that size, computed style for computed style.
        await page.evaluate(THEME_JS, scheme)
        await check_page(page, f"{state}, {scheme}", list_page=list_page)
        # axe-core at the desktop size only: the phone layout is the same DOM (same
        # names, roles, ids, landmarks) restyled by media queries, and its colours are the
        # same tokens, which CONTRAST_JS above checks at the phone size too. In the dark
        # theme only the colour rules: conftest.AXE_COLOUR_RULES says why.
        if viewport == DESKTOP and axe:
            await assert_axe_clean(page, f"{state}, {scheme}", colours_only=scheme == "dark")


# Pages tests/browser/test_axe.py runs axe-core on in both themes (as an administrator).
AXE_ELSEWHERE = {"/admin/users/", "/admin/audit/", "/account"}

ROLES = {
    # role, groups, what the role may do beyond viewing
    "administrator": ("administrator", (), {"edit", "delete", "users"}),
    "viewer": ("staff", ("viewer",), set()),
    "editor": ("staff", ("editor",), {"edit"}),
}


async def test_every_page_kind_for_every_role_at_two_sizes_in_both_themes(
    open_page: OpenPage, make_user: MakeUser, seeded: str, browser_problems: Problems
) -> None:
    for name, (role, groups, can) in ROLES.items():
        user, password = await make_user(role, groups=groups, full_name=f"{name.title()} Person")
        page = await open_page(viewport=DESKTOP)
        await sign_in(page, user.email, password)
        pages = [
            ("/admin/", "dashboard", False),
            ("/admin/bookings/", "list", True),
            ("/admin/bookings/?status=pending&status=confirmed", "filtered list", True),
            ("/admin/technicians/1/", "record", False),
            ("/admin/bookings/7/history", "history", False),
            ("/admin/search?q=Customer+1", "search", False),
            ("/account", "own account", False),
        ]
        if "edit" in can:
            pages.append(("/admin/technicians/new/", "create form", False))
        if "delete" in can:
            pages.append(("/admin/bookings/7/delete", "delete confirmation", False))
        if "users" in can:
            pages += [("/admin/users/", "users", False), ("/admin/audit/", "audit", False)]
        richest = name == "administrator"  # every control the other roles see, and more
        for path, kind, is_list in pages:
            resp = await page.goto(path)
            assert resp is not None and resp.status == 200, f"{name}: {path}"
            axe = (richest and path not in AXE_ELSEWHERE) or (name == "viewer" and kind == "record")
            await each_look(page, f"{name}, {kind}", list_page=is_list, axe=axe)

        # The filters open, the palette open, a refused save: states of a page.
        await page.goto("/admin/bookings/?status=pending")
        await expect(page.locator("details.k-filters")).to_have_attribute("open", "")
        await each_look(page, f"{name}, filters open", axe=richest)
        await page.keyboard.press("Control+k")
        await expect(page.locator("dialog.k-palette")).to_be_visible()
        await page.keyboard.type("Cust")
        await expect(page.locator(".k-palette-item").first).to_be_visible()
        await each_look(page, f"{name}, palette", axe=richest)
        await page.keyboard.press("Escape")
        if "edit" in can:
            await page.goto("/admin/technicians/new/")
            await page.evaluate("document.querySelector('form.k-form').noValidate = true")
            await page.get_by_role("button", name="Save", exact=True).click()
            await expect(page.locator("#error-summary")).to_be_focused()
            browser_problems.forget_refusals(400)
            await each_look(page, f"{name}, refused save", axe=richest)
        else:  # a view-only record: fields shown, no save bar
            await page.goto("/admin/technicians/1/")
            await expect(page.locator(".k-form-actions")).to_have_count(0)
        await page.context.close()


async def test_keyboard_reaches_the_first_record_and_the_error_summary(
    open_page: OpenPage, make_user: MakeUser, seeded: str, browser_problems: Problems
) -> None:
    user, password = await make_user("administrator")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)

    # From the top of the list (its search box), the first record is at most 5 Tabs away.
    await page.goto("/admin/bookings/")
    await page.locator("#list-q").focus()
    first = page.locator("tbody a.k-row-link").first
    presses = 0
    while not await first.evaluate("el => el === document.activeElement") and presses < 5:
        await page.keyboard.press("Tab")
        presses += 1
    await expect(first).to_be_focused()
    # Enter opens it: the record opens from its display field.
    href = await first.get_attribute("href")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(re.escape(href.split("?")[0])))

    # A refused save: focus on the summary, each line links its field.
    await page.goto("/admin/technicians/new/")
    await page.evaluate("document.querySelector('form.k-form').noValidate = true")
    await page.get_by_label("Email").fill("not-an-email")
    await page.get_by_role("button", name="Save", exact=True).click()
    summary = page.locator("#error-summary")
    await expect(summary).to_be_focused()
    await expect(summary.get_by_role("link")).to_have_count(2)
    await summary.get_by_role("link", name=re.compile("^Email")).click()
    await expect(page.get_by_label("Email")).to_be_focused()
    browser_problems.forget_refusals(400)

    # Read-only fields are shown below the save bar and skipped by Tab.
    await page.goto("/admin/technicians/1/")
    created = page.get_by_label("Created at")
    await expect(created).to_have_attribute("tabindex", "-1")
    bar = await page.locator(".k-form-actions").bounding_box()
    box = await created.bounding_box()
    assert bar and box and box["y"] > bar["y"], (bar, box)


async def test_list_rows_open_by_click_and_values_read_as_people_write_them(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)
    await page.goto("/admin/bookings/")
    # 50 rows: the page scrolls, not a box; the header row stays under the top bar.
    wrap = page.locator(".k-table-wrap")
    await expect(wrap).to_have_class(re.compile("k-table-wrap--page"))
    await page.evaluate("window.scrollTo(0, 1500)")
    header = await page.locator("thead th").first.bounding_box()
    assert header and 40 <= header["y"] <= 60, header  # stuck under the 48 px top bar
    await page.evaluate("window.scrollTo(0, 0)")

    row = page.locator("tbody tr").first
    await expect(row.locator(".k-badge")).to_have_text(
        re.compile(r"^(Pending|Confirmed|Completed|Cancelled|No show)$")
    )
    amount = row.locator("td:nth-child(5)")
    await expect(amount).to_have_text(re.compile(r"^€[\d,]+\.\d\d$"))
    # The customer is a secondary link; clicking elsewhere in the row opens the booking.
    pk = (await row.locator("a.k-row-link").inner_text()).strip()
    await amount.click()
    await page.wait_for_url(f"**/admin/bookings/{pk}/**")

    # Bulk buttons wait for a selection.
    await page.goto("/admin/bookings/")
    action = page.get_by_role("button", name="Set status to confirmed")
    await expect(action).to_be_disabled()
    await page.locator("tbody .k-row-select").first.check()
    await expect(action).to_be_enabled()

    # Filters: pills, no empty parameter in the URL, saved as a view above the table.
    await page.locator(".k-filters > summary").click()
    await page.locator(".k-filters").get_by_label("No show").check()
    await page.locator(".k-filters").get_by_label("Past 30 days").check()
    await page.locator(".k-filters").get_by_label("Any time").check()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r"\?status=no_show$"))
    await page.get_by_placeholder("Name this view").fill("No shows")
    await page.get_by_role("button", name="Save view").click()
    view = page.locator(".k-views").get_by_role("link", name="No shows")
    await expect(view).to_have_attribute("aria-current", "page")

    # Without the script the server sends an address with empty fields to the clean one.
    resp = await page.goto("/admin/bookings/?q=&status=no_show&amount__gte=")
    assert resp is not None and resp.status == 200
    assert page.url.endswith("/admin/bookings/?status=no_show"), page.url


async def test_palette_finds_pages_and_records_and_jumps_to_an_exact_key(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("staff", groups=("viewer",))
    page = await open_page(viewport=DESKTOP)
    await sign_in(page, user.email, password)
    await page.goto("/admin/")
    await page.keyboard.press("Control+k")
    palette = page.locator("dialog.k-palette")
    await expect(palette).to_be_visible()
    await page.keyboard.type("techn")
    await expect(palette.locator(".k-palette-item").first).to_contain_text("Technicians")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/admin/technicians/")

    await page.keyboard.press("Control+k")
    await page.keyboard.type("42")
    first = palette.locator(".k-palette-item").first
    await expect(first).to_contain_text("Exact")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/admin/(bookings|customers)/42/$"))

    # The endpoint answers only what this user may open: no users page for a viewer.
    data: dict[str, Any] = await page.evaluate(
        "fetch('/admin/palette?q=us', {headers: {Accept: 'application/json'}}).then(r => r.json())"
    )
    assert all(r["url"] != "/admin/users/" for r in data["results"]), data
