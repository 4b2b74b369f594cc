"""`/admin/palette`: what the Ctrl-K / ⌘K palette offers for the text typed so far.

Pages and lists come from this user's own sidebar (so only what they may open), records from
the name and key lookup of every resource they may view. A key typed exactly puts that record
first, marked `exact`: Enter in the palette then opens it."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from aiohttp import web

from app.admin import lookup, rowkey
from app.admin.dashboard import viewable
from app.admin.edit_views import singular
from app.errors import Invalid, KeelError
from app.web import keys
from app.web.auth import NAV, require

log = logging.getLogger("keel.admin")
PER_RESOURCE = 4  # records per resource: enough to recognise, few enough to scan
MAX_RESULTS = 20


async def palette_json(request: web.Request) -> web.Response:
    """`{results: [{kind, label, hint, url, exact}]}` for `?q=`; staff only, like the admin."""
    who = await require(request)
    try:
        q = lookup.check_query(request.query.get("q", ""))
    except Invalid as exc:
        return web.json_response({"error": "Bad request", "message": exc.problem}, status=400)
    needle = q.casefold()
    results: list[dict[str, Any]] = []
    for item in request.get(NAV) or []:
        label = str(item.get("label", ""))
        if needle in label.casefold():
            kind = "List" if item.get("section") == "Data" else "Page"
            hint = str(item.get("section") or "")
            results.append(
                {"kind": kind, "label": label, "hint": hint, "url": item["url"], "exact": False}
            )
    if q:
        key = lookup.typed_key(q)  # "123" or "ID 123": the record with that key comes first
        records: list[dict[str, Any]] = []
        async with request.app[keys.POOL].connection() as conn:
            for b in await viewable(request, who):
                try:
                    found = await lookup.search(conn, b, q, PER_RESOURCE)
                except (psycopg.Error, KeelError):  # one table's trouble hides only its rows
                    log.exception("palette search failed on %s", b.slug)
                    continue
                title = singular(b.title)
                by_key = b.display_column == b.pk
                value = lookup.key_value(b, key) if key is not None else None
                for r in found:
                    exact = value is not None and r["id"] == str(value)
                    hint = b.title if by_key else f"{b.title} · {r['id']}"
                    records.append(
                        {
                            "kind": "Record",
                            "label": f"{title} {r['label']}" if by_key else r["label"],
                            # Why it is offered: its key is what was typed, or its name has it.
                            "hint": f"ID {r['id']} · {b.title}" if exact else hint,
                            "url": f"/admin/{b.slug}/{rowkey.segment(r['id'])}/",
                            "exact": exact,
                        }
                    )
        # An exact key first (the record the operator named), then pages, then the rest.
        results = [r for r in records if r["exact"]] + results
        results += [r for r in records if not r["exact"]]
    return web.json_response({"results": results[:MAX_RESULTS]})
