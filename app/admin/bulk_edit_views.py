"""Bulk edit pages: choose fields and values, see how many records change, apply (EDIT-8).

POST from the list's selection (ids, or "all N matching") → the form; `_stage=preview` →
the count and what will be set; `_stage=apply` → one statement through
`app/admin/bulk_edit.py` (the service owns the transaction and the audit event). More records
than the declaration's `reauth_above` pass the re-authentication wall first: the form travels
in the address it returns to."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDict, MultiMapping

from app.admin import bulk_edit, writes
from app.admin.delete_views import NothingSelected, Selection, nothing_selected, parse_selection
from app.admin.edit_views import singular
from app.admin.resources import BoundResource
from app.admin.setup import get_resource
from app.errors import Conflict, Invalid, NotFound
from app.web import flash, keys
from app.web.auth import audit_context, is_elevated, require, require_elevated, session
from app.web.forms import read_form
from app.web.render import render

STAGES = ("choose", "preview", "apply")


def _own(key: str) -> bool:
    return key in ("_set", "_stage", "expected") or key.startswith("v.")


def _split(data: MultiMapping[str]) -> tuple[MultiDict[str], MultiDict[str]]:
    """The selection's parameters (read by the bulk actions' own parser) and this page's."""
    sel: MultiDict[str] = MultiDict()
    own: MultiDict[str] = MultiDict()
    for k, v in data.items():
        (own if _own(k) else sel).add(k, str(v))
    return sel, own


def _target(selection: Selection) -> bulk_edit.Target:
    return bulk_edit.Target(selection.ids, selection.all_matching, selection.state)


def _decl(bound: BoundResource) -> Any:
    decl = bulk_edit.declared(bound)
    if decl is None:
        raise NotFound(f"{bound.title} has no bulk edit", fix="declare bulk_edit= on the resource")
    return decl


async def _page(
    request: web.Request,
    bound: BoundResource,
    selection: Selection,
    own: MultiMapping[str],
    *,
    stage: str,
    count: int,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    chosen = list(dict.fromkeys(own.getall("_set", [])))
    values = {k[2:]: str(v) for k, v in own.items() if k.startswith("v.")}
    specs = bulk_edit.specs(bound)
    noun = singular(bound.title).lower() if count == 1 else bound.title.lower()
    over = count > writes.MAX_BULK
    shown = f"{writes.MAX_BULK:,}+" if over else f"{count:,}"
    ctx = {
        "bound": bound,
        "page_title": f"Edit {shown} {noun}",
        "breadcrumbs": [
            {"label": "Admin", "url": "/admin/"},
            {"label": bound.title, "url": f"/admin/{bound.slug}/"},
            {"label": "Bulk edit"},
        ],
        "stage": stage,
        "count": count,
        "count_text": f"{shown} {noun}",
        "too_many": over,
        "fields": [
            {
                "spec": s,
                "chosen": s.name in chosen,
                "value": values.get(s.name, ""),
                "error": (errors or {}).get(s.name),
                "input": replace(s, name=f"v.{s.name}", required=False, help=s.help),
            }
            for s in specs
        ],
        "changes": [(s.label, values.get(s.name, "")) for s in specs if s.name in chosen],
        "hidden": selection.query(),
        "reauth": count > _decl(bound).reauth_above,
        "action_url": f"/admin/{bound.slug}/bulk-edit",
        "cancel_url": f"/admin/{bound.slug}/" + (f"?{selection.back}" if selection.back else ""),
        "error": error or (errors or {}).get(""),
    }
    names = [f"admin/{bound.slug}/bulk_edit.html", "admin/bulk_edit.html"]
    return render(request, names, ctx, status=status)


async def _count(request: web.Request, bound: BoundResource, selection: Selection) -> int:
    async with request.app[keys.POOL].connection() as conn:
        return await bulk_edit.count(conn, bound, _target(selection))


async def bulk_edit_page(request: web.Request) -> web.StreamResponse:
    """GET: where the re-authentication wall returns to with the whole form in the address."""
    return await _handle(request, request.query)


async def bulk_edit_submit(request: web.Request) -> web.StreamResponse:
    return await _handle(request, await read_form(request))


async def _handle(request: web.Request, data: MultiMapping[Any]) -> web.StreamResponse:
    bound = get_resource(request)
    decl = _decl(bound)
    await require(request, perm=bound.permission("change"))
    sel_data, own = _split(data)
    sel_data.popall("csrf_token", None)
    try:
        selection = parse_selection(bound, sel_data)
    except NothingSelected as exc:
        nothing_selected(request, bound, exc)
    stage = own.get("_stage", "choose")
    if stage not in STAGES:
        raise Invalid(f"Unknown step {stage[:20]!r}.")
    count = await _count(request, bound, selection)
    if stage == "choose" or not count:
        return await _page(request, bound, selection, own, stage="choose", count=count)
    values, errors = bulk_edit.parse_values(
        bound, own.getall("_set", []), {k: str(v) for k, v in own.items()}
    )
    if errors:
        return await _page(
            request, bound, selection, own, stage="choose", count=count, errors=errors, status=400
        )
    if count > decl.reauth_above and not is_elevated(session(request)):
        if request.method == "GET":
            await require_elevated(request)
        # Re-auth first; the selection and the chosen values travel in the address it returns to.
        query = [*selection.query(), *((k, v) for k, v in own.items() if k != "_stage")]
        raise web.HTTPSeeOther(f"{request.path}?{urlencode([*query, ('_stage', 'preview')])}")
    if stage == "preview" or request.method == "GET":
        return await _page(request, bound, selection, own, stage="preview", count=count)
    try:
        expected = int(own.get("expected", "-1"))
    except ValueError:
        raise Invalid("The form has no valid count.", fix="preview again") from None
    try:
        async with request.app[keys.POOL].connection() as conn:
            done = await bulk_edit.apply(
                conn, audit_context(request), bound, _target(selection), values, expected=expected
            )
    except Conflict as exc:
        return await _page(
            request, bound, selection, own, stage="preview", count=count, error=exc.problem,
            status=409,
        )  # fmt: skip
    noun = bound.title.lower() if len(done) != 1 else singular(bound.title).lower()
    raise flash.see_other(
        request,
        f"/admin/{bound.slug}/" + (f"?{selection.back}" if selection.back else ""),
        f"Changed {len(done):,} {noun}.",
    )
