"""`brand_color`: the theme engine's stylesheet, generated at start and linked on every page."""

from __future__ import annotations

import re

from app import theme
from app.config import Config

_LINKS = re.compile(r'<link rel="stylesheet" href="([^"]+)">')


async def _stylesheets(client) -> list[str]:
    resp = await client.get("/login")
    assert resp.status == 200
    return _LINKS.findall(await resp.text())


async def test_without_brand_color_only_keel_css(client) -> None:
    links = await _stylesheets(client)
    assert [link.split("?")[0] for link in links] == ["/static/keel.css"]
    assert (await client.get("/static/brand.css")).status == 404


async def test_brand_color_changes_the_served_stylesheet(
    config: Config, aiohttp_client: object
) -> None:
    from tests.helpers import cheap_app

    teal = await aiohttp_client(cheap_app(config.with_values(brand_color="#0f766e")))  # type: ignore[operator]
    red = await aiohttp_client(cheap_app(config.with_values(brand_color="#c4302b")))  # type: ignore[operator]
    hrefs = []
    for client, brand in ((teal, "#0f766e"), (red, "#c4302b")):
        links = await _stylesheets(client)
        # After keel.css, so its custom properties win; content-hashed like every asset.
        assert links[0].startswith("/static/keel.css?v=")
        assert re.fullmatch(r"/static/brand\.css\?v=[0-9a-f]{12}", links[1])
        resp = await client.get(links[1])
        assert resp.status == 200
        assert resp.content_type == "text/css"
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        body = await resp.text()
        assert body == theme.stylesheet(brand)
        assert f"--keel-brand: {theme.generate([brand]).light['brand']};" in body
        # A stylesheet from 'self' is what the CSP allows; nothing inline.
        assert "style-src 'self'" in resp.headers["Content-Security-Policy"]
        hrefs.append(links[1])
    assert hrefs[0] != hrefs[1]


def test_a_sites_theme_css_is_linked_before_brand_color(tmp_path) -> None:
    """A site ships `static/theme.css` (from `keel theme generate --output`); `brand_color`,
    when also set, comes after it: the host's configuration has the last word."""
    from app.web.static import StaticFiles

    static = tmp_path / "static"
    static.mkdir()
    (static / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert StaticFiles(static).theme_stylesheets() == []
    (static / "theme.css").write_text(theme.stylesheet("#0f766e"))
    assert [u.split("?")[0] for u in StaticFiles(static).theme_stylesheets()] == [
        "/static/site/theme.css"
    ]
    both = StaticFiles(static, "#c4302b").theme_stylesheets()
    assert [u.split("?")[0] for u in both] == ["/static/site/theme.css", "/static/brand.css"]
