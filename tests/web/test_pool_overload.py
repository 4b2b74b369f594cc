"""DB-6: a saturated connection pool answers 503 with Retry-After, never 500.

The pool is real and tiny (one connection); the test holds that connection and fills the
pool's queue of waiters (`max_waiting`) itself, so the next request finds it full
(psycopg_pool.TooManyRequests) rather than waiting."""

from __future__ import annotations

import asyncio

import pytest
from psycopg_pool import AsyncConnectionPool

from app.web import keys
from tests.helpers import cheap_app, make_config
from tests.web.conftest import sign_in

pytestmark = pytest.mark.asyncio


async def _wait_for_waiters(pool: AsyncConnectionPool, count: int) -> None:
    for _ in range(500):
        if pool.get_stats().get("requests_waiting", 0) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the pool never had {count} waiters: {pool.get_stats()}")


async def test_a_full_pool_queue_is_a_503_with_retry_after(
    aiohttp_client, database_url, secret_key, make_user
):
    config = make_config(database_url, secret_key, pool_min=1, pool_max=1, pool_timeout=5)
    client = await aiohttp_client(cheap_app(config))
    user, password = await make_user("staff")
    assert (await sign_in(client, user.email, password)).status == 303
    pool: AsyncConnectionPool = client.server.app[keys.POOL]
    limit = pool.max_waiting
    assert 0 < limit <= 100, limit  # small enough to fill from the test

    async def wait_in_line() -> None:
        async with pool.connection(timeout=30):
            pass

    async with pool.connection():  # the only connection is busy …
        line = [asyncio.create_task(wait_in_line()) for _ in range(limit)]
        await _wait_for_waiters(pool, limit)  # … and the queue behind it is full
        page = await client.get("/account", allow_redirects=False)
        api = await client.get(
            "/account", headers={"Accept": "application/json"}, allow_redirects=False
        )
    await asyncio.gather(*line)  # the queue drains once the connection is back

    assert page.status == 503, await page.text()
    assert page.headers["Retry-After"] == "2"
    assert "busy" in await page.text()
    assert page.headers.get("X-Request-ID")
    assert api.status == 503 and api.headers["Retry-After"] == "2"
    assert (await api.json())["error"] == "Temporarily unavailable"
    # And the server is fine afterwards.
    assert (await client.get("/account", allow_redirects=False)).status == 200
