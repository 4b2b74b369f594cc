"""`/admin/audit/`: the global audit history for administrators, filtered and keyset-paged (AUDIT-8)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from app import audit
from app import audit_events as events
from app.authority.principal import Principal
from app.errors import Invalid
from app.web import keys
from app.web.auth import add_nav_provider, require
from app.web.render import render

PAGE_SIZE = 50
ROLE = "administrator"  # the global history is for administrators and developers (AUDIT-8)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
FILTERS = ("event", "actor", "resource", "since", "until")
TONES = {"failure": "danger", "denied": "warning"}


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/audit/", history_page, name="audit_history")
    add_nav_provider(app, nav_items)


async def nav_items(request: web.Request, who: Principal) -> list[dict[str, Any]]:
    if not who.at_least(ROLE):
        return []
    return [
        {
            "label": "Audit log",
            "url": "/admin/audit/",
            "active": request.path.startswith("/admin/audit/"),
            "section": "Administration",
            "icon": "activity",
        }
    ]


@dataclass
class Query:
    """The validated filters of one request, and what went wrong with the rest (SEC-3)."""

    values: dict[str, str] = field(default_factory=dict)  # as typed, for the form and links
    kwargs: dict[str, Any] = field(default_factory=dict)  # for audit.history
    errors: dict[str, str] = field(default_factory=dict)


def _day(raw: str, name: str, q: Query) -> date | None:
    if not _DATE.fullmatch(raw):
        q.errors[name] = "a date like 2024-05-31"
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        q.errors[name] = "not a calendar date"
        return None


def parse_query(params: Mapping[str, str]) -> Query:
    """Every parameter checked against an allow-list; nothing unchecked reaches SQL."""
    q = Query()
    for name in FILTERS:
        raw = params.get(name, "").strip()
        if not raw:
            continue
        if len(raw) > 320 or not raw.isprintable():
            q.errors[name] = "too long or contains control characters"
            continue
        q.values[name] = raw
    if "event" in q.values:
        if q.values["event"] in {t.value for t in audit.EventType}:
            q.kwargs["event"] = q.values["event"]
        else:
            q.errors["event"] = "not a known event type"
    for name in ("actor", "resource"):
        if name in q.values:
            q.kwargs[name] = q.values[name]
    since = _day(q.values["since"], "since", q) if "since" in q.values else None
    until = _day(q.values["until"], "until", q) if "until" in q.values else None
    if since:
        q.kwargs["since"] = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if until and until < date.max:  # inclusive: the whole last day
        end = until + timedelta(days=1)
        q.kwargs["until"] = datetime(end.year, end.month, end.day, tzinfo=UTC)
    # until=9999-12-31 has no next day in Python: up to its end is no upper bound at all.
    for name, key in (("after", "after_cursor"), ("before", "before_cursor")):
        raw = params.get(name, "")
        if raw:
            if _CURSOR.match(raw):
                q.kwargs[key] = raw
            else:
                q.errors["cursor"] = "the page link is damaged"
    return q


def _link(values: Mapping[str, str], **extra: str) -> str:
    query = urlencode({**values, **extra})
    return "/admin/audit/" + (f"?{query}" if query else "")


def _by_day(rows: list[audit.AuditRow]) -> list[dict[str, Any]]:
    days = []
    for day, items in groupby(rows, key=lambda r: r.at.astimezone(UTC).date()):
        days.append(
            {"iso": day.isoformat(), "label": day.strftime("%A %d %B %Y"), "rows": list(items)}
        )
    return days


async def history_page(request: web.Request) -> web.Response:
    await require(request, role=ROLE)
    q = parse_query(request.query)
    page = audit.HistoryPage([])
    if not q.errors:
        try:
            async with request.app[keys.POOL].connection() as conn:
                page = await audit.history(conn, limit=PAGE_SIZE, **q.kwargs)
        except Invalid as exc:
            q.errors.update(exc.fields or {"filter": exc.problem})
    status = 400 if q.errors else 200
    chips = [
        {
            "label": f"{name}: {value}",
            "remove_url": _link({k: v for k, v in q.values.items() if k != name}),
        }
        for name, value in q.values.items()
        if name not in q.errors
    ]
    return render(
        request,
        "audit/history.html",
        {
            "days": _by_day(page.rows),
            "count": len(page.rows),
            "values": q.values,
            "errors": q.errors,
            "event_types": [t.value for t in events.FILTERABLE],
            "chips": chips,
            "first_url": _link(q.values) if page.newer else None,
            "newer_url": _link(q.values, before=page.newer) if page.newer else None,
            "older_url": _link(q.values, after=page.older) if page.older else None,
            "tones": TONES,
            "breadcrumbs": [
                {"label": "Admin", "url": "/admin/"},
                {"label": "Audit log", "url": None},
            ],
        },
        status=status,
    )
