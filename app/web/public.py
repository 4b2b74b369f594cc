"""The public status page at `/` (UI-6)."""

from __future__ import annotations

from aiohttp import web

from app.ops.health import database_state
from app.web.render import render


async def status_page(request: web.Request) -> web.Response:
    state = await database_state(request.app)
    return render(
        request,
        "status.html",
        {
            "db_ok": state["database"] == "ok" and state["pending"] == 0,
            "schema_version": state["schema"],
        },
    )
