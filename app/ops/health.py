"""Liveness and readiness for load balancers (OPS-2): JSON, no authentication, no secrets."""

from __future__ import annotations

import asyncio

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from app.db import migrate
from app.web import keys

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def database_state(app: web.Application) -> dict[str, object]:
    """Reachability and migration state, as facts safe to show anyone."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with app[keys.POOL].connection(timeout=READY_TIMEOUT) as conn:
                states = await migrate.status(conn, app[MIGRATIONS])
                version = await migrate.schema_version(conn)
    except (psycopg.Error, PoolTimeout, TimeoutError):
        return {"database": "unreachable", "pending": None, "newer": None, "schema": None}
    # Migrations from a newer build ("unknown") do not make this build unready: during a
    # rolling upgrade or a rollback the older code still serves the newer schema, which every
    # release's migrations keep working (docs/operations.md, "Rollback"). They are counted.
    waiting = sum(1 for s in states if s.state in ("pending", "modified"))
    newer = sum(1 for s in states if s.state == "unknown")
    return {"database": "ok", "pending": waiting, "newer": newer, "schema": version}


async def readyz(request: web.Request) -> web.Response:
    state = await database_state(request.app)
    ready = state["database"] == "ok" and state["pending"] == 0
    return web.json_response(
        {"status": "ready" if ready else "unavailable", **state}, status=200 if ready else 503
    )


MIGRATIONS = web.AppKey("migrations", list[migrate.Migration])
