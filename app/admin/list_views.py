"""List pages: `/admin/<resource>/` as HTML or JSON, saved filters, and the route table (LIST-1..10)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from markupsafe import Markup
from multidict import MultiDict

from app.admin import saved_filters, types
from app.admin.list_params import DATE_PRESETS, ListQuery, parse_query
from app.admin.list_render import RowRenderer, json_rows, querystring
from app.admin.listing import (
    Page,
    PageQuery,
    Total,
    count_question,
    count_rows,
    page_query,
    read_page,
    start_count,
    start_page,
)
from app.admin.resources import BoundResource, filter_kind
from app.admin.setup import CURSOR_KEY, DISPLAYS, SLUGS, get_resource
from app.admin.values import choice_options, choice_tones
from app.authority import sessions
from app.errors import Invalid, KeelError
from app.names import ROUTE_SLUG
from app.web import keys, prefetch
from app.web.auth import require
from app.web.forms import read_form
from app.web.render import crumbs, render

# A resource slug in a path: never one of the built-in pages (users, groups, audit, search, invitations).
SLUG = ROUTE_SLUG


def displays(app: web.Application) -> dict[str, str]:
    return app[DISPLAYS]


def slugs_by_table(app: web.Application) -> dict[str, str]:
    return app[SLUGS]


def wants_json(request: web.Request) -> bool:
    if request.query.get("format") == "json":
        return True
    accept = request.headers.get("Accept", "")
    return accept.startswith("application/json")


@dataclass(frozen=True)
class ListPlan:
    """What `plan_list` worked out from a list's address, and which of its questions it sent."""

    b: BoundResource
    lq: ListQuery
    pq: PageQuery
    count: bool  # the total's first question (`count_question`) is the second statement
    saved: bool  # the user's saved views (a column of the lookup's row) are the last result


def plan_list(request: web.Request) -> prefetch.Batch | None:
    """A list page's questions from its address alone (app/web/prefetch.py): the page, the
    first question of its total and, for the HTML page, the user's saved views, sent with the
    session lookup in one round trip. `list_view` reads them once it has checked that the user
    may view the resource. An address the page would refuse or redirect plans nothing."""
    if any(v == "" for v in request.query.values()):
        return None  # `list_view` redirects to the clean address
    try:
        b = get_resource(request)
        lq = parse_query(b, request.query)
        pq = page_query(b, lq, request.app[CURSOR_KEY], displays(request.app))
    except KeelError:
        return None
    sent = [prefetch.Sent(pq.query, pq.params, pq.prepare, sessions.LIVE)]
    question = count_question(b, lq)
    if question is not None:
        sent.append(prefetch.Sent(*question, None, sessions.NOTHING))
    saved = not wants_json(request)
    if saved:
        sent.append(prefetch.Sent(*saved_filters.for_session(b.slug), None, sessions.COLUMN))
    return prefetch.Batch(tuple(sent), ListPlan(b, lq, pq, question is not None, saved))


async def load_page(
    request: web.Request,
    b: BoundResource,
    lq: ListQuery,
    user_id: int | None = None,
    taken: tuple[ListPlan, list[Any]] | None = None,
) -> tuple[Page, Total, list[saved_filters.SavedFilter]]:
    """One connection, a few short queries: the page with its FK names, the total (LIST-1,
    LIST-4) and, for the HTML page, the user's saved filters (LIST-8).

    The page, the first question of the total and the saved filters do not depend on one
    another: they go in one pipeline (one round trip, and a third less client CPU than three),
    usually the session lookup's (`taken`, from `plan_list`, where the saved filters are a
    column of the lookup's row); the FK names are sub-selects of the page query; a count (when
    one is needed) needs the estimate."""
    key = request.app[CURSOR_KEY]
    async with request.app[keys.POOL].connection() as conn:
        if taken is not None:
            plan, results = taken
            pq, page_cur = plan.pq, results[0]
            count_cur = results[1] if plan.count else None
            saved = saved_filters.from_json(results[-1]) if plan.saved else []
            page = await read_page(page_cur, b, lq, key, pq)
        else:
            async with conn.pipeline():
                page_cur, pq = await start_page(conn, b, lq, key, displays(request.app))
                count_cur = await start_count(conn, b, lq)
                saved_cur = (
                    None
                    if user_id is None
                    else await saved_filters.start_for_user(conn, user_id, b.slug)
                )
            page = await read_page(page_cur, b, lq, key, pq)
            saved = [] if saved_cur is None else await saved_filters.read(saved_cur)
        total = await count_rows(conn, b, lq, page, count_cur)
    return page, total, saved


def _taken(
    request: web.Request, b: BoundResource, as_json: bool
) -> tuple[ListPlan, list[Any]] | None:
    """This page's questions as sent with the session lookup, when they were."""
    taken = prefetch.take_batch(request)
    if taken is None:
        return None
    plan, results = taken
    if not isinstance(plan, ListPlan) or plan.b is not b or plan.saved == as_json:
        return None
    return plan, results


async def list_view(request: web.Request) -> web.StreamResponse:
    b = get_resource(request)
    who = await require(request, perm=b.permission("view"))
    if any(v == "" for v in request.query.values()):
        # A filter form sent without its script names every empty field: the same list at
        # its clean address, which is the one to bookmark, share and save.
        clean = urlencode([(k, v) for k, v in request.query.items() if v != ""])
        raise web.HTTPFound(f"/admin/{b.slug}/" + (f"?{clean}" if clean else ""))
    as_json = wants_json(request)
    # Only now, with the user's permission checked, are the rows sent with the session used.
    taken = _taken(request, b, as_json)
    lq = taken[0].lq if taken is not None else parse_query(b, request.query)
    page, total, saved = await load_page(request, b, lq, None if as_json else who.user_id, taken)
    if as_json:
        return web.json_response(
            {
                "rows": json_rows(b, page),
                "next_cursor": page.next_cursor,
                "prev_cursor": page.prev_cursor,
                "total": total.value,
                "total_is_estimate": total.estimate,
                "total_is_capped": total.capped,
            }
        )
    ctx = list_context(request, b, lq, page, total)
    ctx["saved_filters"] = [
        {"id": s.id, "name": s.name, "url": f"/admin/{b.slug}/?{s.query}", "query": s.query}
        for s in saved
    ]
    names = [f"admin/{b.slug}/list.html", "admin/list.html"]
    shaped = _shaped(request, b, lq, names, ctx) if ctx["row_count"] else None
    return shaped or render(request, names, ctx)


# What a list page inserts rather than decides: its rows, the counts and the page links.
# Everything else it shows follows from the resource, the list's query (filters, search,
# order, page size) and the user's saved views, which key its shape.
_LIST_HOLES = ("rows_html", "summary", "total_text")
_PAGE_LINKS = ("first_url", "prev_url", "next_url", "last_url")


def _shaped(
    request: web.Request, b: BoundResource, lq: ListQuery, names: list[str], ctx: dict[str, Any]
) -> web.Response | None:
    """The list page drawn once per shape and filled with this page's rows
    (`Renderer.shaped_response`); None when it must be drawn in full."""
    present = tuple(ctx[name] is not None for name in _PAGE_LINKS)
    holes = [ctx[name] for name in _LIST_HOLES] + [ctx[n] for n in _PAGE_LINKS if ctx[n]]
    saved = tuple(tuple(s.items()) for s in ctx["saved_filters"])
    key = ("list", b.slug, id(b), lq.state, present, ctx["selectable"], saved)

    def context(values: Sequence[Any]) -> dict[str, Any]:
        filled = dict(zip(_LIST_HOLES, values, strict=False))
        links = iter(values[len(_LIST_HOLES) :])
        for name, shown in zip(_PAGE_LINKS, present, strict=True):
            filled[name] = next(links) if shown else None
        return {**ctx, **filled}

    return request.app[keys.RENDERER].shaped_response(request, names, key, holes, context)


def _headers(b: BoundResource, lq: ListQuery) -> list[dict[str, Any]]:
    """Sortable headers (LIST-2): clicking sorts by that column, again reverses it.

    They depend only on the resource and the list's state (not on the page), which stays the
    same while a user pages through a list: kept per state, bounded."""
    key = (id(b), lq.state, lq.ordering, lq.order_param)
    found = _HEADERS.get(key)
    if found is None or found[0] is not b:
        if len(_HEADERS) >= 512:
            _HEADERS.clear()
        found = _HEADERS[key] = (b, _draw_headers(b, lq))
    return [dict(h) for h in found[1]]  # copies: a page template may change what it is given


_HEADERS: dict[tuple[Any, ...], tuple[BoundResource, list[dict[str, Any]]]] = {}


def _draw_headers(b: BoundResource, lq: ListQuery) -> list[dict[str, Any]]:
    current = dict(lq.ordering[:1]) if lq.order_param or b.resource.ordering else {}
    out = []
    for col in b.list_columns:
        desc = current.get(col.name)
        key = col.name if desc is None or desc else f"-{col.name}"
        url = "?" + querystring(lq.state, o=key, cursor=None, last=None)
        direction = None if desc is None else ("desc" if desc else "asc")
        numeric = col.type_name in ("integer", "bigint", "smallint", "numeric") and col.fk is None
        sortable = types.sortable(col)
        out.append(
            {
                "label": b.label(col.name),
                "url": url if sortable else None,
                "dir": direction,
                "numeric": numeric,
            }
        )
    return out


def _filters(
    b: BoundResource, state: Mapping[str, list[str]], slugs: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The filter form's fields (LIST-5), with the current values filled in."""
    out = []
    for name in b.resource.list_filter:
        col = b.resolve_column(name)
        if col is None:
            continue
        kind = filter_kind(col)
        item: dict[str, Any] = {"name": col.name, "label": b.label(col.name), "kind": kind}
        # Tuples, not lists: the filter macros are memoised by their arguments (`km`).
        item["values"] = tuple(state.get(col.name, ()))
        item["gte"] = (state.get(f"{col.name}__gte") or [""])[-1]
        item["lte"] = (state.get(f"{col.name}__lte") or [""])[-1]
        if kind == "choice":
            item["options"] = tuple(choice_options(col.choices or ()))
            item["tones"] = choice_tones(col.choices or (), b.resource.badges.get(col.name))
        elif kind == "date":
            item["options"] = (("", "Any time"), *DATE_PRESETS.items())
            item["input"] = "date"
        elif kind == "fk" and col.fk is not None:
            # The target resource's autocomplete (EDIT-9), which checks view on the target.
            target = slugs.get(col.fk.target)
            item["lookup"] = f"/admin/{target}/lookup" if target else None
        out.append(item)
    return out


def list_context(
    request: web.Request, b: BoundResource, lq: ListQuery, page: Page, total: Total
) -> dict[str, Any]:
    state = lq.state
    grouped: dict[str, list[str]] = {}
    for k, v in state:
        grouped.setdefault(k, []).append(v)
    # The edit page sends the user back to exactly this page (LIST-7).
    back = querystring(state, cursor=lq.cursor, last="1" if lq.last else None)
    renderer = RowRenderer(
        b, page, lq.words, back=back, slugs_by_table=slugs_by_table(request.app), selectable=True
    )
    base = f"/admin/{b.slug}/"
    plain = querystring(state)
    chips = [
        {
            "label": c.label,
            "remove_url": base + "?" + urlencode([(k, v) for k, v in state if k != c.param]),
        }
        for c in dict((c.param, c) for c in lq.conditions).values()
    ]
    if lq.q:
        chips.append(
            {"label": f"Search: {lq.q}", "remove_url": base + "?" + querystring(state, q=None)}
        )
    first = len(page.rows)
    # In ASCII, like the rest of the page (see `values.ascii_html`): numbers and fixed words.
    summary = Markup(  # noqa: S704
        f"{first:,} shown &middot; {total.html()} {'matching' if lq.filtered else 'in total'}"
    )
    return {
        "resource": b,
        "slug": b.slug,
        "title": b.title,
        "breadcrumbs": crumbs((b.title, None)),
        "headers": _headers(b, lq),
        "rows_html": renderer.body(),
        "row_count": len(page.rows),
        "filters": _filters(b, grouped, slugs_by_table(request.app)),
        "chips": chips,
        # What the filter bar is drawn from (above: the resource, this app's slugs and the
        # list's query), standing for it in the drawn bar's memo key.
        "filter_bar_key": (id(b), b.slug, state),
        "clear_url": base if state else None,
        "q": lq.q,
        "search_enabled": bool(b.resource.search_fields or b.resource.tsvector_field),
        "total_text": total.html(),
        "summary": summary,
        "first_url": f"{base}?{plain}" if not page.at_start else None,
        "prev_url": f"{base}?{querystring(state, cursor=page.prev_cursor)}"
        if page.prev_cursor
        else None,
        "next_url": f"{base}?{querystring(state, cursor=page.next_cursor)}"
        if page.next_cursor
        else None,
        "last_url": f"{base}?{querystring(state, last='1')}"
        if page.next_cursor and not b.offset_paging
        else None,
        "export_csv": f"{base}export.csv?{plain}",
        "export_jsonl": f"{base}export.jsonl?{plain}",
        "state_query": plain,
        "actions": [
            {"name": a.name, "label": a.label, "confirm": a.confirm} for a in b.resource.actions
        ],
        "filtered": lq.filtered,
        "selectable": renderer.selectable,
        "read_only_reason": b.read_only_reason,
    }


async def save_filter(request: web.Request) -> web.StreamResponse:
    """POST name + query: keep the current list query under a private name (LIST-8)."""
    b = get_resource(request)
    who = await require(request, perm=b.permission("view"))
    form = await read_form(request)
    name, query = str(form.get("name", "")), str(form.get("query", ""))
    if len(query) > saved_filters.MAX_QUERY:
        raise Invalid("that list query is too long to save", fields={"query": "too long"})
    # The query is validated now (and again whenever it is opened): only real filters are kept.
    lq = parse_query(b, MultiDict(parse_qsl(query, keep_blank_values=False)))
    normalised = querystring(lq.state)
    async with request.app[keys.POOL].connection() as conn:
        await saved_filters.save(conn, who.user_id, b.slug, name, normalised)
    raise web.HTTPSeeOther(f"/admin/{b.slug}/?{normalised}")


async def delete_filter(request: web.Request) -> web.StreamResponse:
    b = get_resource(request)
    who = await require(request, perm=b.permission("view"))
    raw = request.match_info.get("filter_id", "")
    if not raw.isdigit() or len(raw) > 18:
        raise Invalid("no such saved filter", fields={"filter_id": "a number"})
    async with request.app[keys.POOL].connection() as conn:
        await saved_filters.delete(conn, who.user_id, int(raw))
    raise web.HTTPSeeOther(f"/admin/{b.slug}/")
