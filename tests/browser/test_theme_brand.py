"""`brand_color` in a real browser: the primary button wears the theme engine's colour, in light
and dark, and its text, links and focus ring keep their contrast.

The contrast is computed from Chromium's computed styles with the WCAG formula (as test_ui.py
does): the `axe-playwright-python` package is not available to this project's package index."""

from __future__ import annotations

import pytest

from app import theme
from app.config import Config
from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.browser.test_ui import colours, contrast
from tests.web.conftest import MakeUser

if not IN_CI:
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

pytestmark = pytest.mark.asyncio(loop_scope="session")

BRAND = "#ff00ff"  # vivid on purpose: the engine must tame it and pick readable text


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_values(brand_color=BRAND)


def rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return f"rgb({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)})"


async def test_primary_button_wears_the_generated_brand_and_keeps_contrast(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    generated = theme.generate([BRAND])
    user, password = await make_user("administrator", full_name="Ada Admin")
    for scheme in ("light", "dark"):
        tokens = generated.tokens(scheme)
        page = await open_page(color_scheme=scheme)
        await page.goto("/login")
        button = page.locator(".k-btn--primary").first
        assert await button.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(
            tokens["brand"]
        ), scheme
        assert await button.evaluate("e => getComputedStyle(e).color") == rgb(tokens["on-brand"])
        pairs = await colours(page, primary_button=".k-btn--primary", link="a[href='/forgot']")
        await sign_in(page, user.email, password)
        await page.goto("/admin/bookings/")
        pairs |= await colours(
            page,
            new_button=".k-page-actions .k-btn--primary",
            row_link="tbody a.k-row-link",
            current_nav_item="nav[aria-label=Main] a[aria-current=page]",
        )
        ratios = {name: round(contrast(p["fg"], p["bg"]), 2) for name, p in pairs.items()}
        assert all(r >= 4.5 for r in ratios.values()), (scheme, ratios)
        # The focus ring, a non-text indicator, stands out from the page at 3:1.
        await page.keyboard.press("Tab")
        # Polled: the ring's colour may settle a frame after focus moves.
        await page.wait_for_function(
            "(want) => { const cs = getComputedStyle(document.activeElement);"
            " return cs.outlineStyle === 'solid' && cs.outlineColor === want; }",
            arg=rgb(tokens["focus"]),
            timeout=3_000,
        )
        surface = theme.NEUTRALS[scheme]["surface"]
        assert theme.contrast(tokens["focus"], surface) >= 3.0
