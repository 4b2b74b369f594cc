"""The audit log on the engine (AUDIT-8): a list for administrators, filtered, grouped by day,
keyset-paged through the engine's signed cursor. Nothing here writes: the log is append-only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from app import audit
from app import audit_events as events
from app.admin.hooks import Call, Entity, Field, Listing, ListPage
from app.errors import Invalid

PAGE_SIZE = 50
ROLE = "administrator"  # the global history is for administrators and developers (AUDIT-8)


def _day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Invalid(
            f"{raw} is not a calendar date", fields={name: "not a calendar date"}
        ) from None


def history_filters(f: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's parsed filters as `audit.history` arguments; `until` counts its whole day."""
    out: dict[str, Any] = {k: f[k] for k in ("event", "actor", "resource") if k in f}
    if "since" in f:
        since = _day(f["since"], "since")
        out["since"] = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if "until" in f:
        until = _day(f["until"], "until")
        if until < date.max:  # 9999-12-31 has no next day: up to its end is no bound at all
            end = until + timedelta(days=1)
            out["until"] = datetime(end.year, end.month, end.day, tzinfo=UTC)
    return out


async def _rows(call: Call, f: Mapping[str, Any], position: list[Any] | None, d: str) -> ListPage:
    cursor = str(position[0]) if position else None
    page = await audit.history(
        call.conn, limit=PAGE_SIZE, **history_filters(f),
        after_cursor=cursor if d == "n" else None, before_cursor=cursor if d == "p" else None,
    )  # fmt: skip
    days = [
        {"iso": day.isoformat(), "label": day.strftime("%A %d %B %Y"), "rows": list(items)}
        for day, items in groupby(page.rows, key=lambda r: r.at.astimezone(UTC).date())
    ]
    return ListPage(
        days,
        next=[page.older] if page.older else None,
        prev=[page.newer] if page.newer else None,
    )


async def _choices(call: Call) -> dict[str, Any]:
    return {"events": [t.value for t in events.FILTERABLE]}


AUDIT = Entity(
    slug="audit",
    title="Audit log",
    noun="event",
    min_role=ROLE,
    icon="activity",
    listing=Listing(
        _rows,
        filters=(
            Field(
                "event",
                "Event",
                "select",
                max_len=320,
                options="events",
                accept=tuple(t.value for t in audit.EventType),
            ),
            Field("actor", "Actor", max_len=320, help="Email or user id"),
            Field("resource", "Resource", max_len=320, help="e.g. users, groups, bookings"),
            Field("since", "From", "date", max_len=320),
            Field("until", "To", "date", max_len=320),
        ),
        empty="No events",
    ),
    choices=_choices,
    extra_context={"tones": {"failure": "danger", "denied": "warning"}},
)
