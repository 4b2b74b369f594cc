"""The public status page at `/` (UI-6)."""

from __future__ import annotations

from aiohttp import web

from app.buildinfo import build_info
from app.ops.health import database_state
from app.web.render import render


async def status_page(request: web.Request) -> web.Response:
    state = await database_state(request.app)
    info = build_info()
    site = (
        f"{info['site_name']} {info.get('site_version', '')}".rstrip()
        if "site_name" in info
        else None
    )
    return render(
        request,
        "status.html",
        {
            "db_ok": state["database"] == "ok" and state["pending"] == 0,
            "schema_version": state["schema"],
            # The site built into this executable (`keel build`) and the build's id: which
            # release answers is the first question when something changed.
            "build_site": site,
            "build_id": info["build_id"],
        },
    )
