"""The dashboard, global search and the admin sidebar; every widget fails soft (LIST-11, LIST-12)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import psycopg
from aiohttp import web
from markupsafe import Markup
from psycopg import sql

from app import audit
from app.admin import lookup, search_reason
from app.admin.charts import bar_chart
from app.admin.events import event_items, target_names
from app.admin.list_params import Condition, parse_query
from app.admin.list_render import RowRenderer
from app.admin.list_views import displays, slugs_by_table
from app.admin.listing import COUNT_CAP, Page, Total, count_rows, fetch_page
from app.admin.resources import BoundResource
from app.admin.setup import ADMIN, CURSOR_KEY
from app.authority.principal import Principal
from app.errors import KeelError
from app.web import keys
from app.web.auth import can, require
from app.web.render import crumbs, render

log = logging.getLogger("keel.admin")
T = TypeVar("T")
SEARCH_PER_RESOURCE = 5
ACTIVITY_DAYS = 14


async def viewable(request: web.Request, who: Principal) -> list[BoundResource]:
    """Resources the principal may view, in menu order (AUTHZ-2: administrators see all).

    The permission names were read with this request's session (AUTHZ-5), so the sidebar,
    the dashboard and the route guards of one request share one query."""
    bound = list(request.app[ADMIN].values())
    if who.bypasses_permissions:
        return bound
    return [b for b in bound if await can(request, b.permission("view"))]


async def nav_items(request: web.Request, who: Principal) -> list[dict[str, Any]]:
    """Sidebar entries for the admin: the dashboard, then every resource the user may view."""
    if not who.enters_admin:
        return []
    path = request.path
    items: list[dict[str, Any]] = [
        {
            "label": "Dashboard",
            "url": "/admin/",
            "active": path == "/admin/",
            "section": "Overview",
            "icon": "home",
        }
    ]
    for b in await viewable(request, who):
        url = f"/admin/{b.slug}/"
        items.append(
            {
                "label": b.title,
                "url": url,
                "active": path.startswith(url),
                "section": "Data",
                "icon": "list",
            }
        )
    return items


async def soft(name: str, work: Callable[[], Awaitable[T]], default: T) -> tuple[T, bool]:
    """Run one widget's query; on any failure log it and show the widget as unavailable."""
    try:
        return await work(), True
    except (psycopg.Error, KeelError, OSError, ValueError):
        log.exception("dashboard widget %s failed", name)
        return default, False


async def _new_this_week(
    conn: psycopg.AsyncConnection[Any], b: BoundResource, now: datetime
) -> Total:
    """Rows created in the last 7 days, exact up to the cap (an index on created_at keeps it cheap)."""
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} >= %s LIMIT {}) AS recent"
    ).format(
        sql.Identifier(b.table.schema, b.table.name),
        sql.Identifier("created_at"),
        sql.Literal(COUNT_CAP + 1),
    )
    row = await (await conn.execute(query, (now - timedelta(days=7),))).fetchone()
    n = int(row[0]) if row else 0
    return Total(min(n, COUNT_CAP), capped=n > COUNT_CAP)


async def _resource_card(request: web.Request, b: BoundResource, now: datetime) -> dict[str, Any]:
    card: dict[str, Any] = {
        "label": b.title,
        "url": f"/admin/{b.slug}/",
        "value": "—",
        "hint": None,
    }
    pool = request.app[keys.POOL]

    async def total() -> Total:
        async with pool.connection() as conn:
            return await count_rows(conn, b, parse_query(b, {}))

    t, ok = await soft(f"{b.slug}.total", total, Total(None))
    card["value"] = t.text() if ok else "unavailable"
    if b.created_column is not None:

        async def recent() -> Total:
            async with pool.connection() as conn:
                return await _new_this_week(conn, b, now)

        n, ok = await soft(f"{b.slug}.new", recent, Total(None))
        card["hint"] = f"{n.text()} new this week" if ok else "new this week: unavailable"
    return card


async def dashboard_view(request: web.Request) -> web.StreamResponse:
    who = await require(request)
    now = datetime.now(UTC)
    resources = await viewable(request, who)
    cards = [await _resource_card(request, b, now) for b in resources]
    pool = request.app[keys.POOL]

    async def events() -> list[audit.AuditRow]:
        async with pool.connection() as conn:
            if who.bypasses_permissions:
                return await audit.recent(conn, 10)
            return await audit.user_activity(conn, who.user_id, limit=10)

    async def activity() -> list[tuple[Any, int]]:
        async with pool.connection() as conn:
            return await audit.daily_counts(conn, ACTIVITY_DAYS, now=now)

    no_rows: list[audit.AuditRow] = []
    no_days: list[tuple[Any, int]] = []
    recent_rows, events_ok = await soft("recent_events", events, no_rows)
    days, activity_ok = await soft("activity", activity, no_days)

    async def named() -> dict[tuple[str, str], str]:
        return await target_names(request, recent_rows)

    no_names: dict[tuple[str, str], str] = {}
    names, _ok = await soft("event_targets", named, no_names)
    ctx = {
        "title": "Dashboard",
        "breadcrumbs": [],
        "cards": cards,
        # No site, or a site that declares nothing: say how to add tables, not "no access".
        "no_resources": not request.app[ADMIN],
        "events": event_items(request, recent_rows, names),
        "events_ok": events_ok,
        "events_scope": "everyone" if who.bypasses_permissions else "you",
        "activity": [n for _d, n in days],
        "activity_total": sum(n for _d, n in days),
        "activity_ok": activity_ok,
        "activity_days": ACTIVITY_DAYS,
        "activity_chart": bar_chart(days, what="audit events"),
    }
    return render(request, "admin/dashboard.html", ctx)


async def search_view(request: web.Request) -> web.StreamResponse:
    """Search every resource the user may view (LIST-12); each section fails soft.

    Text that names a key ("123", "ID 123") also offers the record with that key in each
    resource, searched fields or not, first in its section, and those sections come first: the
    same record the palette puts first."""
    who = await require(request)
    q = request.query.get("q", "")
    key = lookup.typed_key(q)
    sections = []
    if q.strip():
        for b in await viewable(request, who):
            value = lookup.key_value(b, key) if key is not None else None
            searchable = bool(b.resource.search_fields or b.resource.tsvector_field)
            if not searchable and value is None:
                continue
            # "ID 123" searches the fields for 123: "ID" is how the key was named, not a word.
            words = key if key is not None and key != q.strip().casefold() else q
            lq = parse_query(b, {"q": words, "per_page": str(SEARCH_PER_RESOURCE)})
            # The searched columns come with each row: the reason it matched needs no query.
            lq = replace(lq, also=search_reason.own_search_columns(b))
            section = await _search_section(request, b, lq, searchable, value)
            if searchable or section.get("exact") or not section["ok"]:
                sections.append(section)
    sections.sort(key=lambda s: not s.get("exact"))  # stable: menu order otherwise
    ctx = {
        "title": "Search",
        "breadcrumbs": crumbs(("Search", None)),
        "q": q,
        "search_q": q,
        "sections": sections,
        "searched": bool(q.strip()),
    }
    return render(request, "admin/search.html", ctx)


async def _search_section(
    request: web.Request, b: BoundResource, lq: Any, searchable: bool, key: Any
) -> dict[str, Any]:
    pool = request.app[keys.POOL]
    cursor_key = request.app[CURSOR_KEY]

    async def run() -> tuple[Any, Total, Page | None]:
        async with pool.connection() as conn:
            exact = None
            if key is not None:
                # The list query's own columns and order, so its row fits the same table.
                only = (Condition(b.pk, "eq", key, "", ""),)
                by_key = replace(lq, conditions=only, q="", words=(), per_page=1, cursor=None)
                exact = await fetch_page(conn, b, by_key, cursor_key, displays(request.app))
            if not searchable:
                return Page(exact.columns if exact else [], []), Total(0), exact
            page = await fetch_page(conn, b, lq, cursor_key, displays(request.app))
            return page, await count_rows(conn, b, lq, page), exact

    result, ok = await soft(f"search.{b.slug}", run, None)
    section: dict[str, Any] = {
        "title": b.title,
        "ok": ok,
        "url": f"/admin/{b.slug}/?{urlencode({'q': lq.q})}" if searchable else None,
    }
    if result is not None:
        page, total, exact = result
        why = search_reason.reasons(b, page, lq.words)
        if exact is not None and exact.rows:
            # The record the key names, first, saying so; not again among the word matches.
            at = exact.columns.index(b.pk)
            row = exact.rows[0]
            kept = [(r, w) for r, w in zip(page.rows, why, strict=True) if r[at] != row[at]]
            page = replace(
                page,
                rows=[row, *(r for r, _w in kept)],
                labels=_merged(exact.labels, page.labels),
            )
            why = [Markup("<mark>ID {}</mark>").format(row[at]), *(w for _r, w in kept)]
            section["exact"] = True
        renderer = RowRenderer(
            b,
            page,
            lq.words,
            back=urlencode({"q": lq.q}),
            slugs_by_table=slugs_by_table(request.app),
            selectable=False,
        )
        rows = [
            renderer.row(r, f'<td class="k-search-why">{reason}</td>')
            for r, reason in zip(page.rows, why, strict=True)
        ]
        # A key match the words did not find is one more than the search counted.
        shown = "1" if section.get("exact") and total.value == 0 else total.text()
        section.update(
            headers=[*(b.label(c.name) for c in b.list_columns), "Why it matched"],
            rows_html=Markup("\n".join(rows)),  # noqa: S704 - cells escaped by the renderer
            count=len(page.rows),
            total=shown,
        )
    return section


def _merged(
    a: dict[str, dict[Any, str]], b: dict[str, dict[Any, str]]
) -> dict[str, dict[Any, str]]:
    """Two pages' foreign-key names in one map (the key's row and the word matches)."""
    out = {col: dict(names) for col, names in b.items()}
    for col, names in a.items():
        out.setdefault(col, {}).update(names)
    return out
