"""Compressed text responses (gzip), `Vary: Accept-Encoding`, and the CSRF token masked per page
so that compression cannot leak it (BREACH)."""

from __future__ import annotations

import gzip
import re

from app.web import compression, csrf
from tests.web.conftest import page_token

GZIP = {"Accept-Encoding": "gzip, deflate"}
IDENTITY = {"Accept-Encoding": "identity"}


async def test_pages_are_gzipped_when_accepted(signed_in) -> None:
    s = await signed_in("administrator")
    for path in ("/admin/", "/admin/bookings/", "/admin/users/"):
        resp = await s.get(path, headers=GZIP)
        body = await resp.read()  # the client decompresses
        assert resp.status == 200, path
        assert resp.headers["Content-Encoding"] == "gzip", path
        assert "Accept-Encoding" in resp.headers["Vary"], path
        assert len(body) > compression.MIN_SIZE
        plain = await s.get(path, headers=IDENTITY)
        assert "Content-Encoding" not in plain.headers, path
        assert "Accept-Encoding" in plain.headers["Vary"], path  # a cache must keep both
        assert abs(len(await plain.read()) - len(body)) < 200, path  # same page, masks aside


async def test_refused_encodings_and_tiny_bodies_are_sent_plain(client) -> None:
    for header in ("identity", "gzip;q=0", "br", "deflate;q=1, gzip;q=0"):
        resp = await client.get("/login", headers={"Accept-Encoding": header})
        assert "Content-Encoding" not in resp.headers, header
    tiny = await client.get("/healthz", headers=GZIP)
    assert tiny.status == 200 and "Content-Encoding" not in tiny.headers
    star = await client.get("/login", headers={"Accept-Encoding": "*"})
    assert star.headers["Content-Encoding"] == "gzip"
    for ctype in ("text/html", "text/csv", "application/json", "application/x-ndjson"):
        assert compression.compressible(ctype)
    for ctype in ("image/png", "application/zip", "application/octet-stream"):
        assert not compression.compressible(ctype)


async def test_static_assets_are_compressed_once_with_their_own_validator(client) -> None:
    css = await client.get("/static/keel.css", headers=GZIP)
    assert css.headers["Content-Encoding"] == "gzip"
    assert css.headers["Vary"] == "Accept-Encoding"
    etag = css.headers["ETag"]
    assert etag.endswith('-gzip"')
    text = await css.text()
    assert ":root {" in text
    plain = await client.get("/static/keel.css", headers=IDENTITY)
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["ETag"] != etag and await plain.text() == text
    again = await client.get("/static/keel.css", headers={**GZIP, "If-None-Match": etag})
    assert again.status == 304


async def test_the_wire_is_smaller(client) -> None:
    """The raw bytes on the socket, without the client's decompression."""
    import aiohttp

    url = str(client.make_url("/static/keel.css"))
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        async with raw.get(url, headers=GZIP) as resp:
            packed = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(packed)
    full = gzip.decompress(packed)
    assert len(packed) < len(full) / 3


async def test_streamed_exports_are_gzipped(signed_in) -> None:
    s = await signed_in("administrator")
    resp = await s.get("/admin/bookings/export.csv", headers=GZIP)
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in resp.headers["Vary"]
    assert (await resp.text()).startswith("id,")


async def test_csrf_token_differs_on_every_page_and_each_one_works(signed_in) -> None:
    s = await signed_in("administrator")
    tokens = set()
    for _ in range(3):
        page = await (await s.get("/admin/bookings/new", headers=GZIP)).text()
        tokens.add(page_token(page))
    assert len(tokens) == 3  # masked afresh: nothing stable for BREACH to guess at
    assert s.csrf not in tokens  # the bare token never appears in a page
    for token in tokens:
        resp = await s.client.post(
            "/admin/bookings/new",
            data={"csrf_token": token, "status": "nonsense"},
            allow_redirects=False,
        )
        assert resp.status == 400, await resp.text()  # past the CSRF guard: the form's own error
    # A token from another session, masked or not, is refused.
    other = await signed_in("administrator")
    resp = await other.client.post(
        "/admin/bookings/new",
        data={"csrf_token": tokens.pop(), "status": "nonsense"},
        allow_redirects=False,
    )
    assert resp.status == 403 and csrf.REFUSED in await resp.text()
    flipped = re.sub(r"^.", lambda m: "0" if m.group(0) != "0" else "1", s.csrf)
    resp = await s.client.post(
        "/admin/bookings/new", data={"csrf_token": flipped}, allow_redirects=False
    )
    assert resp.status == 403
