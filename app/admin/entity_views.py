"""The engine's pages for entities (app/admin/hooks.py): list, create, object page, edit,
delete and per-object actions. Every page checks the entity's role floor first; writes go
through the entity's service hooks; refusals are the 403 page naming the rule; bad input
re-renders the form with what was typed; notices travel in the signed flash cookie."""

from __future__ import annotations

import calendar
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from app.admin import saved_filters
from app.admin.hooks import Call, Cell, Done, Entity, Field, ObjectAction
from app.admin.listing import open_cursor, sign_cursor
from app.admin.setup import CURSOR_KEY
from app.errors import Conflict, Invalid, KeelError, PermissionDenied
from app.web import flash, forms, keys
from app.web.auth import require
from app.web.csrf import token_for
from app.web.render import crumbs, render

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE_SIZE = 50
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def sentence(text: str) -> str:
    """Services word problems as clauses ("the reason is too short"); pages show sentences."""
    text = text.strip()
    if not text:
        return text
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def form_problem(exc: KeelError) -> tuple[list[str], dict[str, str]]:
    message = sentence(exc.problem) + (f" {sentence(exc.fix)}" if exc.fix else "")
    return [message], dict(exc.fields) if isinstance(exc, Invalid) else {}


def refused(request: web.Request, exc: PermissionDenied) -> web.Response:
    """A guard's refusal as the 403 page, naming the rule and what to do (AUTHZ-3, AUTHZ-8)."""
    return render(
        request,
        "admin/refused.html",
        {"status": 403, "title": "Not allowed", "message": sentence(exc.problem), "fix": exc.fix},
        status=403,
    )


# ---- reading input ------------------------------------------------------------------------


def _options(f: Field, choices: Mapping[str, Any]) -> list[str]:
    if f.accept is not None:
        return list(f.accept)
    found = choices.get(f.options or "", [])
    if f.kind == "grid":
        return list(found.names)
    return [o if isinstance(o, str) else str(o[0]) for o in found]


def parse_field(form: Any, f: Field, choices: Mapping[str, Any]) -> Any:
    """One posted field, validated by its kind against its allow-list (SEC-3)."""
    if f.kind == "email":
        return forms.email(form, f.name, f.label)
    if f.kind in ("select", "radios") and f.accept == ():  # offered, but the hook checks it
        return forms.text(form, f.name, f.label, max_len=f.max_len, required=f.required)
    if f.kind in ("select", "radios"):
        return forms.choice(form, f.name, f.label, _options(f, choices))
    if f.kind == "checkbox":
        return forms.boolean(form, f.name)
    if f.kind in ("checks", "grid"):
        return forms.many(form, f.name, f.label, _options(f, choices))
    if f.kind == "password":  # never trimmed: spaces are part of a password
        value = form.get(f.name, "")
        return value if isinstance(value, str) else ""
    return forms.text(
        form, f.name, f.label, max_len=f.max_len, required=f.required,
        multiline=f.kind == "textarea",
    )  # fmt: skip


def typed_back(form: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """What the user typed, to show again when the form comes back with an error."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.kind in ("checks", "grid"):
            out[f.name] = [v for v in form.getall(f.name, []) if isinstance(v, str)]
        elif f.kind == "checkbox":
            out[f.name] = form.get(f.name) is not None
        elif f.kind != "password":
            out[f.name] = forms.raw(form, f.name)
    return out


# The engine's own date presets (the same as the resource lists' date control): first and
# last day, counted back from today in UTC. A list may offer others (`Field.options`) and read
# them itself, e.g. "never signed in".
DATE_PRESETS: dict[str, str] = {
    "today": "Today",
    "past_7_days": "Past 7 days",
    "past_30_days": "Past 30 days",
    "this_month": "This month",
    "this_year": "This year",
}


def preset_days(preset: str, today: date) -> tuple[date, date] | None:
    if preset == "today":
        return today, today
    if preset == "past_7_days":
        return today - timedelta(days=6), today
    if preset == "past_30_days":
        return today - timedelta(days=29), today
    if preset == "this_month":
        return today.replace(day=1), today.replace(
            day=calendar.monthrange(today.year, today.month)[1]
        )
    if preset == "this_year":
        return today.replace(month=1, day=1), today.replace(month=12, day=31)
    return None


def date_options(f: Field, choices: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A date filter's presets as (value, label): the list's own, else the engine's."""
    if f.options and f.options in choices:
        return [(str(v), str(label)) for v, label in choices[f.options]]
    return list(DATE_PRESETS.items())


def filter_params(f: Field) -> tuple[str, ...]:
    """The URL parameters one filter reads."""
    return (f.name, f.from_name, f.to_name) if f.kind == "daterange" else (f.name,)


def parse_filters(
    fields: tuple[Field, ...], query: Mapping[str, str], choices: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """List filters: (as typed, parsed, errors). Every problem is collected, not only the first.

    A date range's preset and its from/to days narrow each other: the engine's presets become
    from/to days in `parsed`; a list's own preset stays under the filter's name for its hook."""
    typed: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        for param in filter_params(f):
            raw = query.get(param, "").strip()
            if not raw:
                continue
            typed[param] = raw
            if len(raw) > f.max_len or not raw.isprintable():
                errors[param] = "too long or contains control characters"
            elif f.kind == "date" or (f.kind == "daterange" and param != f.name):
                if not _DATE.fullmatch(raw):
                    errors[param] = "a date like 2024-05-31"
                else:
                    parsed[param] = raw
            elif f.kind == "daterange" and raw not in dict(date_options(f, choices)):
                errors[param] = "not one of the offered periods"
            elif f.kind == "select" and raw not in _options(f, choices):
                errors[param] = "not one of the offered values"
            else:
                parsed[param] = raw
        if f.kind == "daterange" and f.name in parsed:
            days = preset_days(parsed[f.name], datetime.now(UTC).date())
            if days is not None:
                first, last = (d.isoformat() for d in days)
                # Both given: the narrower bound (ISO dates compare as text).
                parsed[f.from_name] = max(first, parsed.get(f.from_name, first))
                parsed[f.to_name] = min(last, parsed.get(f.to_name, last))
    return typed, parsed, errors


def filter_bar(
    fields: tuple[Field, ...],
    typed: Mapping[str, str],
    choices: Mapping[str, Any],
    errors: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The entity's filters in the resource lists' filter-bar shape (admin/_list_filters.html):
    short choices as pills, long ones as a select, dates as presets + from/to."""
    out: list[dict[str, Any]] = []
    for f in fields:
        if f.kind == "search":
            continue  # the bar's own search box
        value = typed.get(f.name, "")
        item: dict[str, Any] = {
            "name": f.name,
            "label": f.label,
            "values": (value,) if value else (),
        }
        problems = [f"{p}: {errors[p]}" for p in filter_params(f) if errors and p in errors]
        item["error"] = "; ".join(problems)
        if f.kind == "daterange":
            item |= {
                "kind": "date", "options": (("", "Any time"), *date_options(f, choices)),
                "gte_name": f.from_name, "lte_name": f.to_name,
                "gte": typed.get(f.from_name, ""), "lte": typed.get(f.to_name, ""),
            }  # fmt: skip
        elif f.kind == "select":
            # A bare value (a role, a group's name) is its own label, first letter raised only:
            # "QA Team" stays as its owner wrote it.
            opts = [
                (o, o[:1].upper() + o[1:]) if isinstance(o, str) else (str(o[0]), str(o[1]))
                for o in choices.get(f.options or "", [])
            ]
            item["options"] = (("", "Any"), *opts)
            item["kind"] = "radio" if len(opts) <= 6 else "select"
        else:
            item |= {"kind": "text", "help": f.help, "max_len": f.max_len}
        out.append(item)
    return out


def _chip_text(f: Field, param: str, value: str, choices: Mapping[str, Any]) -> str:
    if f.kind == "daterange":
        if param == f.from_name:
            return f"{f.label} from: {value}"
        if param == f.to_name:
            return f"{f.label} to: {value}"
        return f"{f.label}: {dict(date_options(f, choices)).get(value, value).lower()}"
    if f.kind == "select":
        for o in choices.get(f.options or "", []):
            if not isinstance(o, str) and str(o[0]) == value:
                return f"{f.label}: {o[1]}"
    return f"{f.label}: {value}"


# ---- shared steps -------------------------------------------------------------------------


def _page(
    e: Entity, body: Callable[[Call], Awaitable[web.StreamResponse]], *, load: bool
) -> Handler:
    """A handler: the role floor first, then one pooled connection for the request and (for a
    row's pages) the row the path names, or 404; a guard's refusal is the 403 page."""

    async def handler(request: web.Request) -> web.StreamResponse:
        actor = await require(request, role=e.min_role)
        async with request.app[keys.POOL].connection() as conn:
            obj = None
            if load and e.service is not None:
                obj = await e.service.load(conn, forms.path_id(request))
            try:
                return await body(Call(request, actor, conn, obj))
            except PermissionDenied as exc:
                return refused(request, exc)

    return handler


def object_url(e: Entity, obj: Any) -> str:
    return f"/admin/{e.slug}/{obj.id}/"


def trail(e: Entity, call: Call, *tail: tuple[str, str | None]) -> list[dict[str, Any]]:
    """Admin › Entities › the row › the page."""
    items: list[tuple[str, str | None]] = [(e.title, f"/admin/{e.slug}/")]
    if call.obj is not None and e.service is not None:
        items.append((e.service.title_of(call.obj), object_url(e, call.obj) if tail else None))
    return crumbs(*items, *tail)


async def _choices(e: Entity, call: Call) -> dict[str, Any]:
    return await e.choices(call) if e.choices is not None else {}


def _finish(request: web.Request, e: Entity, call: Call, done: Done) -> web.StreamResponse:
    if done.shown_once is not None:
        heading, secret = done.shown_once
        # Shown once, on this response only; Cache-Control: no-store keeps it out of caches.
        return render(
            request,
            "admin/one_time.html",
            {
                "heading": heading,
                "password": secret,
                "name": e.service.title_of(call.obj) if e.service else "",
                "object_url": object_url(e, call.obj),
                "breadcrumbs": trail(e, call, (heading, None)),
            },
        )
    raise flash.see_other(request, done.location or object_url(e, call.obj), done.notice, done.kind)


# ---- list ---------------------------------------------------------------------------------


def _details(e: Entity, call: Call) -> list[tuple[str, Any]]:
    hidden = e.hidden_details(call) if e.hidden_details else frozenset()
    shown = tuple(d for d in e.details if d[0] not in hidden)
    return list(zip([label for label, _ in shown], _cells(call.obj, shown), strict=True))


def _cells(row: Any, columns: tuple[Any, ...]) -> list[Cell]:
    out = []
    for _label, fn in columns:
        value = fn(row)
        out.append(value if isinstance(value, Cell) else Cell(str(value)))
    return out


def list_view(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        request = call.request
        if any(not v.strip() for v in request.query.values()):
            # As on resource lists: a filter form sent without its script names every empty
            # field; the same list at its clean address is the one to bookmark and share.
            clean = urlencode([(k, v) for k, v in request.query.items() if v.strip()])
            raise web.HTTPFound(f"/admin/{e.slug}/" + (f"?{clean}" if clean else ""))
        choices = await _choices(e, call)
        typed, parsed, errors = parse_filters(e.listing.filters, request.query, choices)
        known = {"cursor", *(p for f in e.listing.filters for p in filter_params(f))}
        unknown = sorted(k for k in request.query if k not in known)
        if unknown:
            # Not ignored: an old bookmark (say `?active=no` from before `status`) would
            # otherwise show every row and look like it worked.
            names = ", ".join(sorted(known - {"cursor"})) or "none"
            errors["filter"] = (
                f"{unknown[0][:40]!r} is not a filter of this list (its filters: {names})"
            )
        key = request.app[CURSOR_KEY]
        position, direction = None, "n"
        raw = request.query.get("cursor", "")
        if raw:
            opened = open_cursor(key, raw, e.slug)
            if opened is None:
                errors["cursor"] = "the page link is damaged"
            else:
                direction, position = opened
        rows: list[Any] = []
        next_url = prev_url = None
        if not errors:
            try:
                page = await e.listing.load(call, parsed, position, direction)
            except Invalid as exc:
                errors.update(exc.fields or {"filter": exc.problem})
            else:
                rows = page.rows

                def link(d: str, pos: list[Any]) -> str:
                    return _list_link(e, typed, cursor=sign_cursor(key, [1, e.slug, d, pos]))

                next_url = link("n", page.next) if page.next is not None else None
                prev_url = link("p", page.prev) if page.prev is not None else None
        by_param = {p: f for f in e.listing.filters for p in filter_params(f)}
        chips = [
            {
                "label": _chip_text(by_param[name], name, value, choices),
                "remove_url": _list_link(e, {k: v for k, v in typed.items() if k != name}),
            }
            for name, value in typed.items()
            if name not in errors
        ]
        saved: list[dict[str, Any]] = []
        if e.listing.saved_views:
            found = await saved_filters.for_user(call.conn, call.actor.user_id, e.slug)
            saved = [
                {"id": s.id, "name": s.name, "url": f"/admin/{e.slug}/?{s.query}", "query": s.query}
                for s in found
            ]
        searching = next((f for f in e.listing.filters if f.kind == "search"), None)
        return render(
            request,
            [f"admin/{e.slug}/list.html", "admin/entity_list.html"],
            {
                "entity": e,
                "rows": rows,
                "cells": [_cells(r, e.listing.columns) for r in rows],
                "headers": [label for label, _ in e.listing.columns],
                "filters": filter_bar(e.listing.filters, typed, choices, errors),
                "choices": choices,
                "values": typed,
                "errors": errors,
                "chips": chips,
                "clear_url": f"/admin/{e.slug}/" if typed else None,
                # The bar and the saved views of resource lists (admin/_list_filters.html).
                "slug": e.slug,
                "title": e.title,
                "search_enabled": searching is not None,
                "search_name": searching.name if searching else "q",
                "q": typed.get(searching.name, "") if searching else "",
                "saved_views": e.listing.saved_views,
                "saved_filters": saved,
                "all_label": e.listing.all_label or f"All {e.title.lower()}",
                "state_query": _state_query(e, typed, errors),
                "csrf_token": token_for(request),
                "first_url": _list_link(e, typed) if raw else None,
                "next_url": next_url,
                "prev_url": prev_url,
                "creatable": e.service is not None and e.service.create is not None,
                "breadcrumbs": crumbs((e.title, None)),
                **e.extra_context,
            },
            status=400 if errors else 200,
        )

    return _page(e, body, load=False)


def _state_query(e: Entity, typed: Mapping[str, str], errors: Mapping[str, str]) -> str:
    """The list's filters as a query string in the declared order: what a saved view keeps."""
    return urlencode([(k, v) for k, v in typed.items() if k not in errors])


def save_view(e: Entity) -> Handler:
    """POST name + query: keep the list's current filters under a private name."""

    async def body(call: Call) -> web.StreamResponse:
        form = await forms.read_form(call.request)
        name, query = str(form.get("name", "")), str(form.get("query", ""))
        if len(query) > saved_filters.MAX_QUERY:
            raise Invalid("that list query is too long to save", fields={"query": "too long"})
        # Only the filters this list understands, and only valid values, are kept.
        raw = {k: v for k, v in parse_qsl(query, keep_blank_values=False)}
        typed, _parsed, errors = parse_filters(e.listing.filters, raw, await _choices(e, call))
        normalised = _state_query(e, typed, errors)
        await saved_filters.save(call.conn, call.actor.user_id, e.slug, name, normalised)
        raise web.HTTPSeeOther(f"/admin/{e.slug}/" + (f"?{normalised}" if normalised else ""))

    return _page(e, body, load=False)


def delete_view(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        await forms.read_form(call.request)
        raw = call.request.match_info.get("filter_id", "")
        if not raw.isdigit() or len(raw) > 18:
            raise Invalid("no such saved view", fields={"filter_id": "a number"})
        # Someone else's view simply matches nothing: saved views are private.
        await saved_filters.delete(call.conn, call.actor.user_id, int(raw))
        raise web.HTTPSeeOther(f"/admin/{e.slug}/")

    return _page(e, body, load=False)


def _list_link(e: Entity, typed: Mapping[str, str], **extra: str) -> str:
    query = urlencode({**typed, **extra})
    return f"/admin/{e.slug}/" + (f"?{query}" if query else "")


# ---- create and edit ----------------------------------------------------------------------


async def _form_page(
    call: Call, e: Entity, op: Literal["create", "edit"], values: dict[str, Any], *,
    errors: Mapping[str, str] | None = None, problem: list[str] | None = None, status: int = 200,
) -> web.Response:  # fmt: skip
    fields = e.form_fields(op)
    sections: dict[str, list[Field]] = {}
    for f in fields:
        sections.setdefault(f.section, []).append(f)
    creating = op == "create"
    tail = (f"New {e.noun}", None) if creating else ("Edit", None)
    return render(
        call.request,
        [f"admin/{e.slug}/form.html", "admin/entity_form.html"],
        {
            "entity": e,
            "obj": call.obj,
            "creating": creating,
            "sections": list(sections.items()),
            "choices": await _choices(e, call),
            "values": values,
            "errors": dict(errors or {}),
            "form_errors": problem,
            "action_url": f"/admin/{e.slug}/new" if creating else object_url(e, call.obj) + "edit",
            "cancel_url": f"/admin/{e.slug}/" if creating else object_url(e, call.obj),
            "page_title": f"New {e.noun}"
            if creating
            else f"Edit {e.service.title_of(call.obj)}"
            if e.service
            else "",
            "breadcrumbs": trail(e, call, tail),
            **e.extra_context,
        },
        status=status,
    )


async def _save(call: Call, e: Entity, op: Literal["create", "edit"]) -> web.StreamResponse:
    assert e.service is not None
    form = await forms.read_form(call.request)
    fields = e.form_fields(op)
    try:
        choices = await _choices(e, call)
        values = {f.name: parse_field(form, f, choices) for f in fields}
        if op == "create" and e.service.create is not None:
            obj, done = await e.service.create(call, values)
            call = Call(call.request, call.actor, call.conn, obj)
        elif op == "edit" and e.service.update is not None:
            done = await e.service.update(call, values)
        else:
            raise web.HTTPMethodNotAllowed(call.request.method, ["GET"])
    except (Invalid, Conflict) as exc:
        problem, errors = form_problem(exc)
        status = 400 if isinstance(exc, Invalid) else 409
        return await _form_page(
            call, e, op, typed_back(form, fields), errors=errors, problem=problem, status=status
        )
    return _finish(call.request, e, call, done)


def create_page(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        if call.request.method == "POST":
            return await _save(call, e, "create")
        values = {f.name: f.default for f in e.form_fields("create")}
        return await _form_page(call, e, "create", values)

    return _page(e, body, load=False)


def edit_page(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        assert e.service is not None
        if e.service.guard is not None:
            await e.service.guard(call, "edit")
        if call.request.method == "POST":
            return await _save(call, e, "edit")
        values = await e.service.initial(call) if e.service.initial else {}
        return await _form_page(call, e, "edit", values)

    return _page(e, body, load=True)


# ---- the object page, delete, actions -----------------------------------------------------


def object_page(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        assert e.service is not None
        panels = [(p, await p.load(call)) for p in e.panels]
        return render(
            call.request,
            [f"admin/{e.slug}/object.html", "admin/entity_object.html"],
            {
                "entity": e,
                "obj": call.obj,
                "title": e.service.title_of(call.obj),
                "subtitle": e.subtitle(call.obj) if e.subtitle else None,
                "details": _details(e, call),
                "actions": [a for a in e.actions if a.shown(call)],
                "may_edit": e.service.update is not None and await _allowed(e, call, "edit"),
                "may_delete": e.service.delete is not None and await _allowed(e, call, "delete"),
                "note": e.actions_note(call) if e.actions_note else None,
                "panels": panels,
                "url": object_url(e, call.obj),
                "breadcrumbs": trail(e, call),
                **e.extra_context,
            },
        )

    return _page(e, body, load=True)


async def _allowed(e: Entity, call: Call, op: str) -> bool:
    """Whether the guard lets `op` through: only to show or hide its button."""
    if e.service is None or e.service.guard is None:
        return True
    try:
        await e.service.guard(call, op)
    except PermissionDenied:
        return False
    return True


def delete_page(e: Entity) -> Handler:
    async def body(call: Call) -> web.StreamResponse:
        assert e.service is not None and e.service.delete is not None
        if e.service.guard is not None:
            await e.service.guard(call, "delete")
        if e.service.delete_reauth:
            await call.elevate()  # after the guards: a refusal needs no password first
        if call.request.method == "POST":
            await forms.read_form(call.request)
            return _finish(call.request, e, call, await e.service.delete(call))
        name = e.service.title_of(call.obj)
        return render(
            call.request,
            "admin/entity_delete.html",
            {
                "heading": f"Delete the {e.noun} {name}?",
                "text": e.service.delete_text(call.obj) if e.service.delete_text else "",
                "action_url": object_url(e, call.obj) + "delete",
                "cancel_url": object_url(e, call.obj),
                "submit": f"Delete {e.noun}",
                "breadcrumbs": trail(e, call, ("Delete", None)),
            },
        )

    return _page(e, body, load=True)


REASON = Field("reason", "Reason", "textarea", max_len=forms.REASON_MAX, required=True)


def action_page(e: Entity, a: ObjectAction) -> Handler:
    async def draw(
        call: Call, values: dict[str, Any], errors: Mapping[str, str] | None = None,
        problem: list[str] | None = None, status: int = 200,
    ) -> web.Response:  # fmt: skip
        return render(
            call.request,
            "admin/entity_action.html",
            {
                "action": a,
                "fields": a.fields,
                "choices": await _choices(e, call),
                "values": values,
                "errors": dict(errors or {}),
                "form_errors": problem,
                "action_url": object_url(e, call.obj) + a.name,
                "cancel_url": object_url(e, call.obj),
                "page_title": f"{a.title}: {e.service.title_of(call.obj) if e.service else ''}",
                "breadcrumbs": trail(e, call, (a.title, None)),
            },
            status=status,
        )

    async def body(call: Call) -> web.StreamResponse:
        if e.service is not None and e.service.guard is not None:
            await e.service.guard(call, a.name)
        if a.reauth:
            await call.elevate()
        fields = (*a.fields, REASON) if a.reason else a.fields
        if call.request.method == "GET":
            values = {f.name: call.request.query.get(f.name, f.default) for f in fields}
            return await draw(call, values)
        form = await forms.read_form(call.request)
        try:
            choices = await _choices(e, call)
            values = {f.name: parse_field(form, f, choices) for f in a.fields}
            if a.reason:
                values["reason"] = forms.reason(form)
            done = await a.run(call, values)
        except Invalid as exc:
            problem, errors = form_problem(exc)
            return await draw(call, typed_back(form, fields), errors, problem, 400)
        return _finish(call.request, e, call, done)

    return _page(e, body, load=True)


def routes(entities: tuple[Entity, ...]) -> list[web.RouteDef]:
    """Every entity's URLs; the row's own pages come last (`{id}` would take `new`)."""
    out: list[web.RouteDef] = []
    for e in entities:
        base = f"/admin/{e.slug}"
        out.append(web.get(f"{base}/", list_view(e)))
        if e.listing.saved_views:
            out += [
                web.post(f"{base}/saved-filters", save_view(e)),
                web.post(f"{base}/saved-filters/{{filter_id}}/delete", delete_view(e)),
            ]
        if e.service is None:
            continue
        row = f"{base}/{{id}}"
        if e.service.create is not None:
            handler = create_page(e)
            out += [web.get(f"{base}/new", handler), web.post(f"{base}/new", handler)]
        out.append(web.get(f"{row}/", object_page(e)))
        if e.service.update is not None:
            handler = edit_page(e)
            out += [web.get(f"{row}/edit", handler), web.post(f"{row}/edit", handler)]
        if e.service.delete is not None:
            handler = delete_page(e)
            out += [web.get(f"{row}/delete", handler), web.post(f"{row}/delete", handler)]
        for a in e.actions:
            handler = action_page(e, a)
            out += [web.get(f"{row}/{a.name}", handler), web.post(f"{row}/{a.name}", handler)]
    return out
