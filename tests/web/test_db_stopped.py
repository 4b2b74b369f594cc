"""DB-6: when PostgreSQL stops under load, requests in flight get 503 + Retry-After, never 500.

The test owns a PostgreSQL cluster of its own (not the suite's shared one) and stops it while
requests hold connections: one sleeping query that is surely in flight, plus steady load on
real pages.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from app import audit
from app.authority import users
from app.db import migrate
from app.devdb import LocalPostgres
from app.web import keys
from tests.helpers import cheap_app, cheap_hasher, make_config
from tests.web.conftest import DEFAULT_PASSWORD, sign_in

pytestmark = pytest.mark.asyncio


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    base = Path(tempfile.mkdtemp(prefix="keel-db-stop-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as an unprivileged user
    pg = LocalPostgres(base / "cluster", fast=True)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _prepare(url: str, secret_key: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate.migrate(conn)
        hasher = cheap_hasher()  # the sign-in is not about hashing: cheap_app's cost
        try:
            password_hash = await hasher.hash(DEFAULT_PASSWORD)
        finally:
            hasher.close()
        ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="tests@localhost")
        user = await users.create(
            conn, ctx, None, email="staff@example.com", role="staff",
            password_hash=password_hash, via="cli",
        )  # fmt: skip
    return user.email


async def test_requests_in_flight_when_postgres_stops_get_503(
    own_postgres, aiohttp_client, secret_key, caplog
):
    url = own_postgres.url("postgres")
    email = await _prepare(url, secret_key)
    config = make_config(url, secret_key, pool_timeout=1)
    app = cheap_app(config)

    async def sleeping_query(request: web.Request) -> web.Response:
        async with request.app[keys.POOL].connection() as conn:
            await conn.execute("SELECT pg_sleep(4)")
        return web.Response(text="finished")

    app.router.add_get("/sleep", sleeping_query)
    client = await aiohttp_client(app)
    assert (await sign_in(client, email, DEFAULT_PASSWORD)).status == 303

    statuses: list[tuple[int, str | None]] = []
    stop_load = asyncio.Event()

    async def load() -> None:
        while not stop_load.is_set():
            resp = await client.get("/account", allow_redirects=False)
            await resp.read()
            statuses.append((resp.status, resp.headers.get("Retry-After")))

    sleeper = asyncio.create_task(client.get("/sleep", allow_redirects=False))
    loaders = [asyncio.create_task(load()) for _ in range(6)]
    await asyncio.sleep(0.8)
    with caplog.at_level(logging.INFO):
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.sleep(1.5)
        stop_load.set()
        await asyncio.gather(*loaders)
        slept = await sleeper
    assert slept.status == 503, await slept.text()
    assert slept.headers["Retry-After"]
    assert any(s == 200 for s, _ in statuses), "the load ran before the stop"
    failed = [(s, r) for s, r in statuses if s != 200]
    assert failed, "the load ran after the stop"
    assert all(s == 503 and r for s, r in failed), sorted(set(failed))
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("keel.error")]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    own_postgres.start()  # the fixture stops it again
