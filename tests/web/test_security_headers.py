"""SEC-2: every header on every kind of response, including streamed exports and redirects."""

from __future__ import annotations

from app.web.middleware import CSP, SECURITY_HEADERS

# (who, method, path, expected status): one of each kind of response the app gives.
PAGES = [
    ("anonymous", "GET", "/", 200),  # public HTML
    ("anonymous", "GET", "/login", 200),  # public form
    ("anonymous", "GET", "/healthz", 200),  # JSON probe
    ("anonymous", "GET", "/admin/", 303),  # redirect to login
    ("anonymous", "GET", "/no/such/page", 404),
    ("anonymous", "PUT", "/login", 405),
    ("anonymous", "GET", "/static/keel.css", 200),
    ("staff", "GET", "/admin/users/", 403),  # refused, inside the chrome
    ("administrator", "GET", "/admin/", 200),  # signed-in HTML
    ("administrator", "GET", "/admin/bookings/?format=json", 200),  # JSON list
    ("administrator", "GET", "/admin/bookings/?sort=nonsense", 400),  # bad query
    ("administrator", "GET", "/admin/bookings/export.csv", 200),  # streamed by the handler
    ("administrator", "GET", "/admin/bookings/export.jsonl", 200),  # streamed by the handler
    ("administrator", "POST", "/admin/bookings/new", 400),  # form re-shown with errors
]


async def test_every_kind_of_response_carries_the_security_headers(client, signed_in) -> None:
    browsers = {"anonymous": client}
    for who in ("staff", "administrator"):
        browsers[who] = (await signed_in(who)).client
    for who, method, path, status in PAGES:
        browser = browsers[who]
        kwargs: dict = {"allow_redirects": False}
        if method == "POST":
            from tests.web.conftest import page_token

            form = await (await browser.get("/admin/bookings/new")).text()
            kwargs["data"] = {"csrf_token": page_token(form), "status": "nonsense"}
        resp = await browser.request(method, path, **kwargs)
        await resp.read()
        where = f"{who} {method} {path}"
        assert resp.status == status, (where, resp.status)
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, (where, name)
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers.get("X-Request-ID"), where
        assert resp.headers.get("Server") == "keel", (where, resp.headers.get("Server"))
        if not path.startswith("/static/"):
            assert resp.headers.get("Cache-Control") == "no-store", (where, resp.headers)


async def test_answers_of_the_http_parser_itself_name_no_versions(client) -> None:
    """A request the parser refuses never reaches the app; its 400 still says only `keel`."""
    import asyncio

    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.split(b" ")[1] == b"400", head
    assert b"\r\nServer: keel" in head and b"aiohttp" not in answer and b"Python" not in answer
