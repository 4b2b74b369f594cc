"""The edit page's related parts: many-to-many multi-selects and editable inlines.

`edit_context` draws them, `parse` reads them from the posted form, `conflict` explains a
stale set or child row. The save itself is `app/admin/relations.py: save_edit` (the service
owns the transaction); this module only turns requests into its input and its refusals
into page context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from app.admin import inlines, m2m
from app.admin.relations import Related
from app.admin.resources import BoundResource
from app.admin.setup import ADMIN
from app.authority.principal import Principal
from app.web import keys
from app.web.auth import can as may


def resource_for_table(request: web.Request, table: str) -> BoundResource | None:
    """The resource over `table` (`schema.name` or the declared name); as edit_views has it."""
    for b in request.app[ADMIN].values():
        if table in (b.table.qualified, b.resource.table):
            return b
    return None


async def can(request: web.Request, who: Principal, perm: str) -> bool:
    return who.bypasses_permissions or await may(request, perm)


def _target_url(request: web.Request, link: m2m.Link) -> str | None:
    target = resource_for_table(request, link.target.qualified)
    return f"/admin/{target.slug}/lookup" if target else None


async def _may_use(request: web.Request, who: Principal, link: m2m.Link) -> bool:
    """A set is shown when the other side is not a resource, or one this user may view."""
    target = resource_for_table(request, link.target.qualified)
    return target is None or await can(request, who, target.permission("view"))


async def _allowed(request: web.Request, who: Principal, child: BoundResource) -> frozenset[str]:
    out: set[str] = set()
    for action in ("add", "change", "delete"):
        if await can(request, who, child.permission(action)):
            out.add(action)
    return frozenset(out)


async def edit_context(
    request: web.Request,
    who: Principal,
    bound: BoundResource,
    pk: Any,
    *,
    chosen: Mapping[str, set[Any]] | None = None,
    was: Mapping[str, set[Any]] | None = None,
    forms_: Mapping[str, inlines.InlineForm] | None = None,
    errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`m2m_fields` and `edit_inlines` for edit.html; a re-shown form passes what was posted."""
    m2m_fields: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    errors = errors or {}
    if not bound.links and not inlines.editable(bound):
        # Most tables have neither: no pool checkout for nothing on every edit page.
        return {"m2m_fields": m2m_fields, "edit_inlines": blocks}
    async with request.app[keys.POOL].connection() as conn:
        for link in bound.links:
            if not await _may_use(request, who, link):
                continue
            current = await m2m.selected(conn, link, pk)
            options, more = await m2m.choices(conn, link)
            labels = {str(k): v for k, v in [*options, *current]}
            keys_now = {k for k, _ in current}
            picked = chosen.get(link.name, keys_now) if chosen else keys_now
            if chosen and link.name in chosen:
                labels.update(await m2m.labels(conn, link, list(picked)))
            shown = {str(k): (k, v) for k, v in options}
            for k in picked:
                shown.setdefault(str(k), (k, labels.get(str(k), str(k))))
            m2m_fields.append(
                {
                    "link": link,
                    "options": sorted(
                        (
                            {"value": str(k), "label": label, "checked": k in picked}
                            for k, label in shown.values()
                        ),
                        key=lambda o: (o["label"].lower(), o["value"]),
                    ),
                    "more": more,
                    "lookup_url": _target_url(request, link),
                    "was": m2m.was_text(was.get(link.name, keys_now) if was else keys_now),
                    "error": errors.get(link.field),
                }
            )
        for inline in inlines.editable(bound):
            child = resource_for_table(request, inline.table)
            if child is None or not await can(request, who, child.permission("view")):
                continue
            form = (forms_ or {}).get(child.slug)
            if form is None:
                form = await inlines.load(conn, inline, child, pk)
            else:
                posted = [int(r.index[3:]) for r in form.rows if r.index.startswith("new")]
                form.rows.extend(inlines.blank_rows(inline, child, max(posted, default=-1) + 1))
            allowed = await _allowed(request, who, child)
            for row in form.rows:
                p = inlines.prefix(child, row.index)
                row.errors.update({k[len(p) :]: v for k, v in errors.items() if k.startswith(p)})
            blocks.append(
                {
                    "child": child,
                    "inline": inline,
                    "specs": inlines.specs(inline, child),
                    "rows": form.rows,
                    "allowed": allowed,
                    "prefix": f"_in.{child.slug}.",
                    "list_url": f"/admin/{child.slug}/?{inline.fk_column}={pk}",
                }
            )
    return {"m2m_fields": m2m_fields, "edit_inlines": blocks}


async def parse(
    request: web.Request, who: Principal, bound: BoundResource, form: MultiMapping[str]
) -> tuple[Related, dict[str, Any]]:
    """The sets and child rows a posted edit form asks for, and what a re-shown form needs."""
    data = {k: str(v) for k, v in form.items()}
    changes: list[m2m.Change] = []
    chosen: dict[str, set[Any]] = {}
    was: dict[str, set[Any]] = {}
    for link in bound.links:
        if link.was_field not in form or not await _may_use(request, who, link):
            continue  # not on the page this user saw: left as it is
        picked = m2m.parse_keys(link, [str(v) for v in form.getall(link.field, [])])
        before = m2m.parse_was(link, str(form.get(link.was_field, "")))
        chosen[link.name], was[link.name] = picked, before
        if picked != before:
            changes.append(m2m.Change(link, frozenset(before), frozenset(picked)))
    children: list[tuple[inlines.InlineForm, frozenset[str]]] = []
    forms_: dict[str, inlines.InlineForm] = {}
    for inline in inlines.editable(bound):
        child = resource_for_table(request, inline.table)
        if child is None or not await can(request, who, child.permission("view")):
            continue
        allowed = await _allowed(request, who, child)
        parsed = inlines.parse(inline, child, data, allowed=allowed)
        forms_[child.slug] = parsed
        children.append((parsed, allowed))
    redisplay = {"chosen": chosen, "was": was, "forms_": forms_}
    return Related(changes, children), redisplay


def has_errors(redisplay: Mapping[str, Any]) -> bool:
    return any(not f.ok for f in redisplay.get("forms_", {}).values())


def conflict_message(exc: m2m.StaleSet | inlines.StaleChild) -> str:
    if isinstance(exc, m2m.StaleSet):
        return (
            f"{exc.link.label} were changed by someone else while you were editing: nothing was "
            "saved. Your choice is kept below; save again to replace theirs."
        )
    return (
        f"{exc.child.title}: {exc.label} {exc.why}: nothing was saved. The rows below are as "
        "they are now; make your change again."
    )
