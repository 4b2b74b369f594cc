"""One pool connection per request: the session lookup's connection serves the page too.

With a pool of ONE connection, every page must still work: a request that held a connection
and asked the pool for a second one would wait for itself until the pool timed out (503). The
pool's own counter of check-outs proves a signed-in GET makes exactly one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.web import keys
from tests.admin.test_edit_support import Browser, hidden, one, sign_in
from tests.helpers import cheap_app, make_config

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def tiny(aiohttp_client: Any, database_url: str, secret_key: str, seeded: Any) -> Any:
    # Short pool_timeout: a request waiting for a second connection shows as a 503, not a hang.
    config = make_config(database_url, secret_key, pool_min=1, pool_max=1, pool_timeout=2)
    return await aiohttp_client(cheap_app(config))


def _checkouts(client: Any) -> int:
    pool = client.server.app[keys.POOL]
    return int(pool.get_stats().get("requests_num", 0))


async def test_a_pool_of_one_serves_lists_edit_pages_saves_and_the_dashboard(
    tiny: Any, database_url: str, secret_key: str
) -> None:
    admin: Browser = await sign_in(tiny, database_url, secret_key, role="administrator")
    for path in (
        "/admin/",
        "/admin/bookings/",
        "/admin/bookings/?status=cancelled",
        "/admin/bookings/7/",
        "/admin/customers/3/",
        "/admin/bookings/7/history",
        "/account",
    ):
        resp = await admin.get(path)
        assert resp.status == 200, (path, resp.status, (await resp.text())[:300])
    page = await (await admin.get("/admin/technicians/1/")).text()
    resp = await admin.post(
        "/admin/technicians/1/",
        {"_version": hidden(page, "_version"), "name": "Ada Saved", "email": "ada@example.org"},
    )
    assert resp.status == 303, (await resp.text())[:500]
    assert await one(database_url, "SELECT name FROM technicians WHERE id = 1") == "Ada Saved"
    # Eight at once on the one connection: they take turns, none waits for itself.
    pages = await asyncio.gather(
        *(admin.get(p) for p in ["/admin/bookings/", "/admin/bookings/9/"] * 4)
    )
    assert [r.status for r in pages] == [200] * 8


async def test_a_signed_in_page_checks_out_one_connection(
    tiny: Any, database_url: str, secret_key: str
) -> None:
    admin: Browser = await sign_in(tiny, database_url, secret_key, role="administrator")
    for path in ("/admin/bookings/7/", "/admin/bookings/"):
        assert (await admin.get(path)).status == 200  # warm: the catalog, the nav
        counts = []
        for _ in range(3):  # the smallest of three: the sweeper may take one meanwhile
            before = _checkouts(tiny)
            assert (await admin.get(path)).status == 200
            counts.append(_checkouts(tiny) - before)
        assert min(counts) == 1, (path, counts)
