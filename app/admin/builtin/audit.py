"""The audit log on the engine (AUDIT-8): a list for administrators, filtered, grouped by day,
keyset-paged through the engine's signed cursor, each event one sentence (app/admin/events.py);
every raw field and the chain hashes on the event's own page. Nothing here writes: the log is
append-only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from app import audit
from app import audit_events as events
from app.admin.events import event_items, target_names
from app.admin.hooks import Call, Cell, Entity, Field, Listing, ListPage, Service
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
    names = await target_names(call.request, page.rows)
    items = event_items(call.request, page.rows, names)
    days = [
        {
            "iso": day.isoformat(),
            "label": day.strftime("%A %d %B %Y"),
            "rows": [i for _r, i in group],
        }
        for day, group in groupby(
            zip(page.rows, items, strict=True), key=lambda p: p[0].at.astimezone(UTC).date()
        )
    ]
    return ListPage(
        days,
        next=[page.older] if page.older else None,
        prev=[page.newer] if page.newer else None,
    )


async def _choices(call: Call) -> dict[str, Any]:
    return {"events": [t.value for t in events.FILTERABLE]}


def _text(value: Any) -> Cell | str:
    return Cell("—", muted=True) if value in (None, "", {}) else str(value)


def _json(value: Any) -> Cell | str:
    return _text(json.dumps(value, sort_keys=True, ensure_ascii=False) if value else None)


_OUTCOME_TONES = {"failure": "danger", "denied": "warning", "success": "success"}

# The event's own page: every sealed field as stored, then its place in the HMAC chain.
_DETAILS: tuple[tuple[str, Any], ...] = (
    ("Event", lambda s: s.row.event_type),
    ("Outcome", lambda s: Cell(s.row.outcome, tone=_OUTCOME_TONES.get(s.row.outcome, "neutral"))),
    ("When (UTC)", lambda s: s.row.at.astimezone(UTC).isoformat()),
    ("Summary", lambda s: s.row.summary),
    ("Actor id", lambda s: _text(s.row.actor_id)),
    ("Actor email", lambda s: _text(s.row.actor_email)),
    ("Operating-system user", lambda s: _text(s.row.os_actor)),
    ("Target resource", lambda s: _text(s.row.target_resource)),
    ("Target id", lambda s: _text(s.row.target_id)),
    ("Session id", lambda s: _text(s.row.session_id)),
    ("IP address", lambda s: _text(s.row.ip)),
    ("User agent", lambda s: _text(s.row.user_agent)),
    ("Request id", lambda s: _text(s.row.request_id)),
    ("Metadata", lambda s: _json(s.row.metadata)),
    ("Signing key id", lambda s: _text(s.key_id)),
    ("Previous hash", lambda s: s.prev_hash),
    ("Row hash", lambda s: s.row_hash),
)

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
            # One date control: presets, then from/to days under their old names (bookmarks).
            Field("when", "Date", "daterange", from_param="since", to_param="until"),
        ),
        empty="No events",
        saved_views=True,
        all_label="All events",
    ),
    service=Service(load=audit.sealed, title_of=lambda s: f"Event {s.id}"),
    details=_DETAILS,
    subtitle=lambda s: s.row.summary,
    choices=_choices,
    extra_context={"tones": {"failure": "danger", "denied": "warning"}},
)
