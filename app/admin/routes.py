"""The admin's route table: every URL of the admin, in one list: Keel's own entities (users,
groups, the audit log; app/admin/builtin) and the company's tables.

The entities come first, then the list pages: aiohttp tries routes in the order they were added.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.admin import (
    api,
    bulk_edit_views,
    dashboard,
    delete_views,
    edit_views,
    entity_views,
    export,
    import_views,
    list_views,
    palette,
)
from app.admin.builtin import ENTITIES
from app.authority.principal import Principal
from app.web import prefetch
from app.web.auth import add_nav_provider

_LIST = f"/admin/{list_views.SLUG}"
_EDIT = f"/admin/{edit_views.SLUG}"
_ROW = f"{_EDIT}/{edit_views.PK}"
_API = f"/admin/api/{list_views.SLUG}"


def routes() -> list[web.RouteDef]:
    return [
        # users, groups, the audit log: /admin/<slug>/, new, <id>/, <id>/edit|delete|<action>
        *entity_views.routes(ENTITIES),
        # dashboard and search
        web.get("/admin/", dashboard.dashboard_view),
        web.get("/admin/search", dashboard.search_view),
        web.get("/admin/palette", palette.palette_json),
        # the JSON API (app/admin/api.py): its description, then each resource's operations
        web.get("/admin/api/", api.docs_page),
        web.get("/admin/api/openapi.json", api.openapi_json),
        web.get(f"{_API}/", api.list_api),
        web.post(f"{_API}/", api.create_api),
        web.post(f"{_API}/actions/{{action}}", api.action_api),
        web.get(f"{_API}/{edit_views.PK}", api.detail_api),
        web.patch(f"{_API}/{edit_views.PK}", api.update_api),
        web.delete(f"{_API}/{edit_views.PK}", api.delete_api),
        # the read side: lists, exports, saved filters
        web.get(f"{_LIST}/", list_views.list_view),
        # A record's page next: aiohttp tries the routes under /admin one by one, a coroutine
        # and a pattern each, and this is the page opened most. No route above it or moved
        # past it matches a path of the form /admin/<resource>/<key>/ (they end without a
        # slash, or have more segments), so which route answers a path is unchanged.
        # Every other admin address ends in "/": the same with a slash is a redirect, not an
        # edit page of the record "new" (registered before the row's own, which would take it).
        web.get(f"{_EDIT}/{{pk:{edit_views.RESERVED}}}/", edit_views.reserved_or_edit_page),
        web.post(f"{_EDIT}/{{pk:{edit_views.RESERVED}}}/", edit_views.reserved_or_edit_submit),
        web.get(f"{_ROW}/", edit_views.edit_page),
        web.post(f"{_ROW}/", edit_views.edit_submit),
        web.get(f"{_LIST}/export.csv", export.export_csv),
        web.get(f"{_LIST}/export.jsonl", export.export_jsonl),
        web.post(f"{_LIST}/saved-filters", list_views.save_filter),
        web.post(f"{_LIST}/saved-filters/{{filter_id}}/delete", list_views.delete_filter),
        # the write side: create, lookup, bulk actions, edit, delete, history
        web.get(f"{_EDIT}/new", edit_views.create_page),
        web.post(f"{_EDIT}/new", edit_views.create_submit),
        web.get(f"{_EDIT}/lookup", edit_views.lookup_json),
        web.get(f"{_EDIT}/bulk-edit", bulk_edit_views.bulk_edit_page),
        web.post(f"{_EDIT}/bulk-edit", bulk_edit_views.bulk_edit_submit),
        web.get(f"{_EDIT}/bulk/{{action}}", delete_views.bulk_page),
        web.post(f"{_EDIT}/bulk/{{action}}", delete_views.bulk_submit),
        # CSV import: upload, then preview (the mapping is its query) and apply
        web.get(f"{_EDIT}/import", import_views.import_page),
        web.post(f"{_EDIT}/import", import_views.upload_submit),
        web.get(f"{_EDIT}/import/{import_views.TOKEN}", import_views.preview_page),
        web.post(f"{_EDIT}/import/{import_views.TOKEN}", import_views.apply_submit),
        web.get(f"{_EDIT}/bulk/{{action}}/", edit_views.without_slash),
        web.get(f"{_ROW}/delete/", edit_views.without_slash),
        web.get(f"{_ROW}/history/", edit_views.without_slash),
        web.get(f"{_ROW}/delete", delete_views.delete_page),
        web.post(f"{_ROW}/delete", delete_views.delete_submit),
        web.get(f"{_ROW}/history", edit_views.history_page),
    ]


async def entity_nav(request: web.Request, who: Principal) -> list[dict[str, Any]]:
    """Sidebar entries of the entities this user's role reaches (the role floor)."""
    return [
        {
            "label": e.title,
            "url": f"/admin/{e.slug}/",
            "icon": e.icon,
            "section": "Administration",
            "active": request.path.startswith(f"/admin/{e.slug}/"),
        }
        for e in ENTITIES
        if who.at_least(e.min_role)
    ]


def setup(app: web.Application) -> None:
    """Listed in FEATURES after app.admin.setup: the sidebar entries and the routes."""
    add_nav_provider(app, dashboard.nav_items)
    add_nav_provider(app, entity_nav)
    app.router.add_routes(routes())
    # A record's page: its row is read with the session, one round trip (app/web/prefetch.py).
    prefetch.declare(app, edit_views.edit_page, edit_views.plan_row)
    # A list: its page and total go in the session lookup's pipeline, its saved views in the
    # lookup's own row (app/web/prefetch.py).
    prefetch.declare(app, list_views.list_view, list_views.plan_list)
