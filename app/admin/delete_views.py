"""Deleting one record (EDIT-5) and bulk actions on selected or all matching rows (EDIT-8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import MultiMapping

from app.admin import bulk, deletion, forms, rowkey, writes
from app.admin.edit_views import (
    back_query,
    breadcrumbs,
    check_params,
    list_url,
    load_row,
    path_key,
    read_only_reason,
    singular,
)
from app.admin.resources import Action, BoundResource
from app.admin.setup import get_resource
from app.errors import Conflict, Invalid, NotFound
from app.web import flash, keys
from app.web.auth import audit_context, is_elevated, require, require_elevated, session
from app.web.forms import read_form
from app.web.render import crumbs, render

OWN_PARAMS = frozenset({"ids", "all", "all_matching", "query", "confirmed", "csrf_token", "back"})
DELETE = Action("delete", "Delete", None, confirm=True)
SHOWN_IDS = 50  # the confirmation page names this many ids, then "and N more"


@dataclass(frozen=True)
class Selection:
    """Either explicit ids, or "all matching" the list query carried in `state` (EDIT-8)."""

    ids: tuple[Any, ...]
    all_matching: bool
    state: tuple[tuple[str, str], ...]  # the list's filter/search parameters, as sent
    back: str

    def query(self) -> list[tuple[str, str]]:
        out = [("all", "1")] if self.all_matching else [("ids", str(i)) for i in self.ids]
        return out + list(self.state) + ([("back", self.back)] if self.back else [])


class NothingSelected(Invalid):
    """No row ticked and not "all matching": back to the list (`back`) with a message."""

    def __init__(self, bound: BoundResource, back: str) -> None:
        super().__init__(
            f"Select at least one {singular(bound.title).lower()} first: nothing was changed."
        )
        self.back = back


def nothing_selected(request: web.Request, bound: BoundResource, exc: NothingSelected) -> NoReturn:
    """The list as it was (same filters, same page) with the message, rather than a 400 page."""
    raise flash.see_other(request, list_url(bound, exc.back), exc.problem, "warning")


def find_action(bound: BoundResource, name: str) -> Action:
    if name == "delete":
        return DELETE
    for action in bound.resource.actions:
        if action.name == name:
            return action
    raise NotFound(f"{bound.title} has no action {name[:40]!r}")


def permission(bound: BoundResource, action: Action) -> str:
    return bound.permission("delete" if action is DELETE else action.name)


def parse_selection(bound: BoundResource, data: MultiMapping[str]) -> Selection:
    """SEC-3: ids typed by the key column; the filter checked by the list's own allow-list.

    The list page posts `ids`, `all_matching=1` and its state as one `query` string; links and
    the confirmation page carry `all=1` and the state as separate parameters. Both are read."""
    if not bound.keyed or bound.composite:
        raise Invalid(
            f"{bound.title} has no bulk actions: they need a single-column primary key.",
            fix="change records one at a time",
        )
    col = bound.column(bound.pk)
    assert col is not None
    raw_ids = data.getall("ids", [])
    if len(raw_ids) > writes.MAX_BULK:
        raise Invalid(f"At most {writes.MAX_BULK:,} records can be selected at once.")
    try:
        ids = tuple(dict.fromkeys(forms.parse_key(col, str(i)) for i in raw_ids))
    except forms.FieldError as exc:
        raise Invalid(f"A selected id is not valid: {exc}.") from None
    all_matching = data.get("all") == "1" or data.get("all_matching") == "1"
    listed = back_query(str(data.get("query", "")) or None)
    state = tuple((k, str(v)) for k, v in data.items() if k not in OWN_PARAMS)
    if state and not all_matching:
        raise Invalid(f"Unknown parameter {state[0][0][:40]!r}.")
    if all_matching:
        state += tuple(parse_qsl(listed, keep_blank_values=True))
    back = back_query(str(data.get("back", "")) or None) or listed
    if not ids and not all_matching:
        raise NothingSelected(bound, back)
    return Selection(ids if not all_matching else (), all_matching, state, back)


def _scope(selection: Selection) -> tuple[tuple[Any, ...], tuple[tuple[str, str], ...] | None]:
    """The selection as the bulk service takes it: ids, or the list's state for "all matching"."""
    return selection.ids, selection.state if selection.all_matching else None


def button_labels(bound: BoundResource, action: Action, count: int) -> tuple[str, str]:
    """The confirmation's two buttons, never alike (an action called "Cancel" next to a way back
    called "Cancel"): the verb with what it touches, and a way back that keeps the records."""
    noun = singular(bound.title).lower() if count == 1 else bound.title.lower()
    what = f"{count:,} {noun}"
    # "Cancel 3 bookings"; a longer label reads better with the count after it.
    label = f"{action.label} {what}" if " " not in action.label else f"{action.label}: {what}"
    keep = "Keep it" if count == 1 else "Keep them"
    return label, keep if action is DELETE or action.confirm else "Go back"


async def confirm_page(
    request: web.Request,
    bound: BoundResource,
    action: Action,
    selection: Selection,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[keys.POOL].connection() as conn:
        ids, plan = await bulk.preview(conn, bound, *_scope(selection), delete=action is DELETE)
    too_many = len(ids) > writes.MAX_BULK
    shown = [str(i) for i in ids[:SHOWN_IDS]]
    more = len(ids) - len(shown)
    verb = "delete" if action is DELETE else f"apply “{action.label}” to"
    count = f"{writes.MAX_BULK:,}+" if too_many else f"{len(ids):,}"
    confirm_label, back_label = button_labels(bound, action, len(ids))
    ctx = {
        "bound": bound,
        "action": action,
        "page_title": f"{action.label}: {count} {bound.title.lower()}",
        "breadcrumbs": crumbs((bound.title, f"/admin/{bound.slug}/"), (action.label, None)),
        "text": f"You are about to {verb} {count} {bound.title.lower()} record(s).",
        "ids": shown,
        "more": more,
        "items": [c.sentence() for c in plan.consequences] if plan else [],
        "blocked": bool(plan and plan.blocked),
        "too_many": too_many,
        "empty": not ids,
        "hidden": [*selection.query(), ("confirmed", "1")],
        "action_url": f"/admin/{bound.slug}/bulk/{action.name}",
        "cancel_url": f"/admin/{bound.slug}/" + (f"?{selection.back}" if selection.back else ""),
        "danger": action is DELETE,
        "confirm_label": confirm_label,
        "back_label": back_label,
        "error": error,
    }
    names = [f"admin/{bound.slug}/bulk_confirm.html", "admin/bulk_confirm.html"]
    return render(request, names, ctx, status=status)


async def bulk_page(request: web.Request) -> web.Response:
    """GET: the confirmation page (delete is behind the re-auth wall, REAUTH-1)."""
    bound = get_resource(request)
    action = find_action(bound, request.match_info["action"])
    await require(request, perm=permission(bound, action))
    if action is DELETE:
        await require_elevated(request)
    try:
        selection = parse_selection(bound, request.query)
    except NothingSelected as exc:
        nothing_selected(request, bound, exc)
    return await confirm_page(request, bound, action, selection)


async def bulk_submit(request: web.Request) -> web.StreamResponse:
    """POST: run the action as one statement in one transaction, or ask to confirm first."""
    bound = get_resource(request)
    action = find_action(bound, request.match_info["action"])
    await require(request, perm=permission(bound, action))
    data = await read_form(request)
    try:
        selection = parse_selection(bound, data)
    except NothingSelected as exc:
        nothing_selected(request, bound, exc)
    if action is DELETE and not is_elevated(session(request)):
        # Re-auth first; the selection travels in the GET address it returns to.
        raise web.HTTPSeeOther(f"{request.path}?{urlencode(selection.query())}")
    if (action.confirm or action is DELETE) and data.get("confirmed") != "1":
        return await confirm_page(request, bound, action, selection)
    try:
        done = await run(request, bound, action, selection)
    except Invalid as exc:
        return await confirm_page(request, bound, action, selection, error=exc.problem, status=400)
    except Conflict as exc:
        return await confirm_page(request, bound, action, selection, error=exc.problem, status=409)
    noun = bound.title.lower() if len(done) != 1 else singular(bound.title).lower()
    verb = "Deleted" if action is DELETE else f"{action.label}:"
    back = f"/admin/{bound.slug}/" + (f"?{selection.back}" if selection.back else "")
    # Deleted rows have no page to open; changed ones are linked so the operator can check them.
    links = [] if action is DELETE else changed_links(bound, done, back)
    text = f"{verb} {len(done):,} {noun}" + (":" if links else ".")
    raise flash.see_other(request, back, text, links=links)


def changed_links(bound: BoundResource, done: Sequence[Any], back: str) -> list[tuple[str, str]]:
    """A link to each changed record, the first few of them; the rest as one "and N more"
    link back to the list (a flash is a cookie: it cannot carry a long list of keys)."""
    room = flash.MAX_LINKS - 1
    shown = done if len(done) <= flash.MAX_LINKS else done[:room]
    title = singular(bound.title)
    links = [(f"{title} {k}", f"/admin/{bound.slug}/{rowkey.segment(k)}/") for k in shown]
    if len(done) > len(shown):
        links.append((f"and {len(done) - len(shown):,} more", back))
    return links


async def run(
    request: web.Request, bound: BoundResource, action: Action, selection: Selection
) -> list[Any]:
    ctx = audit_context(request)
    async with request.app[keys.POOL].connection() as conn:
        chosen = None if action is DELETE else action
        ids, state = _scope(selection)
        return await bulk.apply(conn, ctx, bound, chosen, ids=ids, state=state)


# ---- delete (EDIT-5) ----------------------------------------------------------------------


async def delete_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("delete"))
    check_params(request, {"back"})
    pk = path_key(bound, request.match_info["pk"])
    row = await load_row(request, bound, pk)
    async with request.app[keys.POOL].connection() as conn:
        plan = await deletion.plan_delete(conn, bound.table, [pk])
    return render_delete(request, bound, pk, row, plan)


def render_delete(
    request: web.Request,
    bound: BoundResource,
    pk: Any,
    row: Mapping[str, Any],
    plan: deletion.Plan,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    back = back_query(request.query.get("back"))
    key = rowkey.segment(pk)
    label = writes.label_of(bound, row)
    ctx = {
        "bound": bound,
        "page_title": f"Delete {singular(bound.title).lower()} {label}",
        "noun": singular(bound.title).lower(),
        "breadcrumbs": breadcrumbs(
            bound, back, {"label": label, "url": f"/admin/{bound.slug}/{key}/"}, {"label": "Delete"}
        ),
        "label": label,
        "plan": plan,
        "items": [c.sentence() for c in plan.consequences],
        "action_url": f"/admin/{bound.slug}/{key}/delete",
        "cancel_url": f"/admin/{bound.slug}/{key}/",
        "read_only_reason": read_only_reason(request, bound),
        "error": error,
    }
    return render(
        request, [f"admin/{bound.slug}/delete.html", "admin/delete.html"], ctx, status=status
    )


async def delete_submit(request: web.Request) -> web.StreamResponse:
    bound = get_resource(request)
    await require(request, perm=bound.permission("delete"))
    pk = path_key(bound, request.match_info["pk"])
    await read_form(request)
    async with request.app[keys.POOL].connection() as conn:
        try:
            await writes.delete_row(conn, audit_context(request), bound, pk)
        except Conflict as exc:
            row = await writes.fetch_row(conn, bound, pk)
            plan = await deletion.plan_delete(conn, bound.table, [pk])
            if row is None:
                raise
            return render_delete(request, bound, pk, row, plan, error=exc.problem, status=409)
    raise flash.see_other(
        request,
        list_url(bound),
        f"Deleted {singular(bound.title).lower()} {rowkey.audit_id(bound.key, pk)}.",
    )
