"""Browser fixtures: the real app on a real TCP port, Debian's Chromium headless through Playwright.

One Chromium per test process (session-scoped, launched once); every test gets a fresh database
(the harness's `database_url`), its own server and fresh browser contexts from `open_page`.
Everything async here runs on the session event loop, because Playwright's connection to the
browser is bound to the loop it was started on; test modules opt in with
`pytestmark = pytest.mark.asyncio(loop_scope="session")`.

Every page opened through `open_page` records console errors (Chromium reports Content-Security-
Policy violations there) and uncaught exceptions; a test that leaves any fails at teardown.

Chromium comes from the system: Debian's headless shell (`/usr/bin/chromium-headless-shell`,
apt package `chromium-headless-shell`, which `scripts/test` installs when it can), else the full
`/usr/bin/chromium`; `playwright install` is never needed. The shell is the same Blink, V8 and
layout without the desktop browser around them; it took two fifths less CPU for the same tests
(196 against 115 CPU seconds for this folder). Without a browser these tests fail under CI=true
and skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import psycopg
import pytest
import pytest_asyncio
from aiohttp import web

from app.authority.passwords import Hasher
from app.config import Config, load_config
from tests.admin.conftest import SEED_SQL
from tests.helpers import cheap_app, cheap_hasher
from tests.web.conftest import make_user  # noqa: F401 - shared fixture

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page

HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"
CHROMIUM = os.environ.get(
    "KEEL_CHROMIUM", HEADLESS_SHELL if os.path.isfile(HEADLESS_SHELL) else "/usr/bin/chromium"
)
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    """No browser: a failure in CI (the suite must not go green without these), else a skip."""
    if IN_CI:
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the `playwright` package is not installed (pip install -e '.[dev]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(
            f"no Chromium at {CHROMIUM} (apt-get install chromium-headless-shell, or set "
            "KEEL_CHROMIUM; "
            "scripts/test installs it when run as root or with sudo)"
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def hasher() -> AsyncIterator[Hasher]:
    """The web harness's cheap hasher, on the session loop (make_user awaits it from our tests);
    the live server verifies with the same cheap set, so sign-ins cost no real Argon2 work."""
    h = cheap_hasher()
    yield h
    h.close()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A bound, listening socket: the port is known before the app (and its public_url) is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


@pytest.fixture
def config(database_url: str, secret_key: str, listening_socket: socket.socket) -> Config:
    """The harness's config, with public_url matching the real port (the browser sends Origin)."""
    port = listening_socket.getsockname()[1]
    return load_config(
        env={},
        flags={
            "database_url": database_url,
            "secret_key": secret_key,
            "public_url": f"http://127.0.0.1:{port}",
        },
    )


@pytest.fixture
def seeded(database_url: str) -> str:
    """The admin tests' demo rows (40 customers, 300 bookings, technicians, properties)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SEED_SQL)
    return database_url


@pytest_asyncio.fixture(loop_scope="session")
async def live_server(config: Config, listening_socket: socket.socket) -> AsyncIterator[str]:
    """`build_app(config)` (cheap hashing) served on the listening socket; yields its base URL."""
    # Sign-ins here are not about hashing: the cheap Argon2 set, as the `hasher` above.
    runner = web.AppRunner(cheap_app(config), handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, listening_socket).start()
    try:
        yield str(config.public_url).rstrip("/")
    finally:
        await runner.cleanup()


@dataclass
class Problems:
    """Console errors, CSP violations and uncaught exceptions seen by the pages of one test."""

    seen: list[str] = field(default_factory=list)

    def console(self, page: Page) -> Callable[[ConsoleMessage], None]:
        def on_console(msg: ConsoleMessage) -> None:
            text = msg.text
            if msg.type in ("error", "assert") or "Content Security Policy" in text:
                self.seen.append(f"{page.url}: console {msg.type}: {text}")

        return on_console

    def forget_refusals(self, *statuses: int) -> None:
        """Chromium logs every 4xx document load as a console error; call this where the
        refusal (a save with errors, a used link) is what the test is about."""
        codes = "|".join(str(s) for s in statuses or (400,))
        expected = re.compile(rf"console error: Failed to load resource: .* status of ({codes})")
        self.seen[:] = [p for p in self.seen if not expected.search(p)]

    def pageerror(self, page: Page) -> Callable[[Exception], None]:
        def on_error(exc: Exception) -> None:
            self.seen.append(f"{page.url}: uncaught {exc}")

        return on_error


OpenPage = Callable[..., Awaitable["Page"]]


@pytest.fixture
def browser_problems() -> Problems:
    return Problems()


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(
    browser: Browser, live_server: str, browser_problems: Problems
) -> AsyncIterator[OpenPage]:
    """`await open_page(**context_options)` → a page in a new context on the live server
    (e.g. `viewport={"width": 360, "height": 740}`, `java_script_enabled=False`,
    `color_scheme="dark"`). Contexts close after the test, which then fails if any page
    logged a console error, a CSP violation or an uncaught exception."""
    contexts: list[BrowserContext] = []

    async def make(**options: Any) -> Page:
        options.setdefault("base_url", live_server)
        options.setdefault("reduced_motion", "reduce")  # no drawer animation to wait for
        ctx = await browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        page = await ctx.new_page()
        page.on("console", browser_problems.console(page))
        page.on("pageerror", browser_problems.pageerror(page))
        return page

    yield make
    for ctx in contexts:
        await ctx.close()
    if browser_problems.seen:
        pytest.fail("the browser reported problems:\n" + "\n".join(browser_problems.seen))


# axe-core's impacts we refuse; "moderate" and "minor" are advice (best practices, mostly).
AXE_REFUSED = ("serious", "critical")


# The axe-core rules whose outcome depends on colours. The themes change colour tokens only
# (the same DOM, names, roles, landmarks and layout), so a page's second theme needs only these:
# the other rules would repeat the first theme's answers. color-contrast is also the costliest
# rule (about 60 % of a full run on a list page).
AXE_COLOUR_RULES = ["color-contrast", "link-in-text-block"]
# The theme as the theme menu sets it, then a full restyle: switching in place left a few
# inherited colours stale in Chromium.
THEME_JS = """(scheme) => {
  document.documentElement.setAttribute("data-theme", scheme);
  const body = document.body;  // a full restyle: Chromium leaves a few inherited colours stale
  body.style.display = "none"; void getComputedStyle(body).display; body.style.display = "";
  void getComputedStyle(body).color;
}"""


# In the colour rules, a table's body rows that repeat a row already checked are left out.
# axe-core's colour rules cost per element (a 50-row list page is 900 elements, and its
# color-contrast run most of a CPU second), while rows drawn from one template have the same
# colours wherever they are: a row's colours follow from its markup (tags and attributes:
# classes, inline styles, aria-selected…), its state (checked, disabled, hovered, focused)
# and its place (first, odd or even, last), nothing else. So the colour rules see the first
# row of every such kind (each status badge's tone, a selected row, the last row…) and skip
# its repeats, when there are at least 10 (below that, one whole run costs less than two).
# Nothing else is skipped: every other rule still runs on the whole page, every row
# included, and test_journeys.py's own contrast check (CONTRAST_JS) still measures every
# piece of text in every row at every look. (Checked by hand: a repeated row given a
# low-contrast inline colour becomes a kind of its own and axe-core reports it.)
AXE_JS = """async ({options, colourRules, coloursOnly}) => {
  // A row's kind: its place, its state, and each element's tag, attributes (the values too,
  // but for those naming the record: links, ids, labels, data-*) and whether it holds text.
  const mine = /^(href|id|name|value|for|title|datetime|aria-(label|labelledby|describedby|controls)|data-.*)$/;
  const kindOf = (tr, i, last) => {
    const parts = [i === 0, i % 2, i === last, tr.matches(":hover"), tr.matches(":focus-within")];
    for (const el of [tr, ...tr.querySelectorAll("*")]) {
      parts.push(el.tagName, el.checked, el.matches(":disabled"),
        [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()));
      for (const a of el.attributes) parts.push(mine.test(a.name) ? a.name : a.name + "=" + a.value);
    }
    return JSON.stringify(parts);
  };
  const repeats = [];
  for (const tbody of document.querySelectorAll("tbody")) {
    const kinds = new Set(), rows = [...tbody.rows];
    rows.forEach((tr, i) => {
      const kind = kindOf(tr, i, rows.length - 1);
      if (kinds.has(kind)) repeats.push(tr); else kinds.add(kind);
    });
  }
  const colours = {...options, runOnly: {type: "rule", values: colourRules}};
  if (repeats.length < 10)
    return (await axe.run(document, coloursOnly ? colours : options)).violations;
  const rest = {...options, rules: Object.fromEntries(colourRules.map((r) => [r, {enabled: false}]))};
  const found = coloursOnly ? [] : (await axe.run(document, rest)).violations;
  return found.concat((await axe.run({include: [document], exclude: repeats}, colours)).violations);
}"""


async def assert_axe_clean(
    page: Page,
    where: str,
    refuse: tuple[str, ...] = AXE_REFUSED,
    *,
    colours_only: bool = False,
) -> None:
    """axe-core (bundled in `axe-playwright-python`) on the page as it is now: no violation of
    the impacts in `refuse` (serious and critical unless told). The report names each rule, its
    impact and the first offending nodes. `colours_only` runs AXE_COLOUR_RULES alone; those
    rules skip a table's repeated rows (AXE_JS says why)."""
    try:
        from axe_playwright_python.async_playwright import Axe
    except ImportError:
        _unavailable(
            "the `axe-playwright-python` package is not installed (pip install -e '.[dev]')"
        )
    # axe-core (half a megabyte of script) goes into a document once: the second theme's run
    # on the same page reuses it.
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(Axe().axe_script)
    violations = await page.evaluate(
        AXE_JS,
        {
            "options": {"resultTypes": ["violations"]},
            "colourRules": AXE_COLOUR_RULES,
            "coloursOnly": colours_only,
        },
    )
    bad = [v for v in violations if v["impact"] in refuse]
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:4])
        + (f" (+{len(v['nodes']) - 4} more)" if len(v["nodes"]) > 4 else "")
        for v in bad
    ]
    assert not bad, f"{where}: axe-core found\n" + "\n".join(lines)


async def axe_in_both_themes(page: Page, state: str, refuse: tuple[str, ...] = AXE_REFUSED) -> None:
    """axe-core in the light theme, then its colour rules in the dark one (AXE_COLOUR_RULES
    says why that is enough); the theme set as the theme menu sets it."""
    for scheme in ("light", "dark"):
        await page.evaluate(THEME_JS, scheme)
        await assert_axe_clean(page, f"{state}, {scheme}", refuse, colours_only=scheme == "dark")
    await page.evaluate("document.documentElement.removeAttribute('data-theme')")


async def sign_in(page: Page, email: str, password: str, lands_on: str = "**/admin/") -> None:
    """Sign in through the real login form; lands on the admin dashboard, or on `lands_on`
    where sign-in stops at a further step (a forced password change, the second factor)."""
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lands_on)
