"""The record page's routes come early under /admin (the page opened most; app/admin/routes.py):
every path still reaches the same handler as with the record routes registered last."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from app.admin import edit_views
from app.admin.routes import routes

ROW_HANDLERS = (
    edit_views.reserved_or_edit_page,
    edit_views.reserved_or_edit_submit,
    edit_views.edit_page,
    edit_views.edit_submit,
)
SEGMENTS = [
    "1", "123456", "a,b", "new", "lookup", "bulk-edit", "bulk", "import", "export.csv",
    "export.jsonl", "saved-filters", "history", "delete", "x y",
]  # fmt: skip
PATHS = [
    "/admin/", "/admin/bookings/", "/admin/bookings", "/admin/users/", "/admin/users/1/",
    "/admin/api/bookings/", "/admin/api/bookings/1",
    *(f"/admin/bookings/{s}" for s in SEGMENTS),
    *(f"/admin/bookings/{s}/" for s in SEGMENTS),
    *(f"/admin/bookings/{s}/{t}" for s in SEGMENTS for t in ("delete", "history", "x")),
    *(f"/admin/bookings/{s}/{t}/" for s in SEGMENTS for t in ("delete", "history", "x")),
    "/admin/bookings/import/tok", "/admin/bookings/saved-filters/3/delete",
]  # fmt: skip


def _handlers(defs: list[web.RouteDef]) -> dict[tuple[str, str], object]:
    app = web.Application()
    app.router.add_routes(defs)
    app.router.freeze()
    found: dict[tuple[str, str], object] = {}
    for method in ("GET", "POST"):
        for path in PATHS:
            info = _resolve(app, method, path)
            found[method, path] = info
    return found


def _resolve(app: web.Application, method: str, path: str) -> object:
    request = make_mocked_request(method, path, app=app)
    info = asyncio.run(app.router.resolve(request))
    if info.http_exception is not None:
        return info.http_exception.status
    return (info.handler, dict(info))


def test_each_path_reaches_the_handler_it_reached_with_the_record_routes_last() -> None:
    defs = routes()
    row = [d for d in defs if d.handler in ROW_HANDLERS]
    assert len(row) == 4
    last = [d for d in defs if d.handler not in ROW_HANDLERS]
    # Where they were: just before the slash redirects of bulk actions and sub-pages.
    at = next(i for i, d in enumerate(last) if d.path.endswith("/bulk/{action}/"))
    reference = [*last[:at], *row, *last[at:]]
    assert _handlers(defs) == _handlers(reference)
    # And the record page is what a record's address opens.
    assert _handlers(defs)["GET", "/admin/bookings/123456/"][0] is edit_views.edit_page  # type: ignore[index]
