"""Admin write pages: create, edit, history, FK lookup (EDIT-1..4, 7, 9; SEC-3/4); routes for all."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from app import audit
from app.admin import (
    field_html,
    forms,
    inlines,
    lookup,
    m2m,
    relation_views,
    relations,
    rowkey,
    writes,
)
from app.admin.resources import BoundResource, display_column_of
from app.admin.setup import ADMIN, get_resource
from app.authority.principal import Principal
from app.db.catalog import Table
from app.errors import Conflict, Invalid, KeelError, NotFound
from app.names import ROUTE_SLUG
from app.web import flash, keys, prefetch
from app.web.auth import audit_context, require
from app.web.auth import can as may
from app.web.forms import read_form
from app.web.readonly import GLOBAL_MESSAGE, resource_is_read_only
from app.web.render import crumbs, render

# Reserved slugs belong to the built-in pages, whatever order the routes were added in.
SLUG = ROUTE_SLUG
PK = r"{pk:[^/]{1,200}}"
_BACK = re.compile(r"^[^\x00-\x1f\x7f#]{0,2000}$")
SAVE_CHOICES = ("save", "continue", "add")
RESERVED = "new|lookup|bulk-edit"  # sub-pages whose names could be read as a record's key


# ---- addresses with a trailing slash ------------------------------------------------------


async def without_slash(request: web.Request) -> web.StreamResponse:
    """The canonical address (no trailing slash), query kept; 308 keeps a POST a POST."""
    target = request.rel_url.path.rstrip("/")
    if request.rel_url.query_string:
        target += "?" + request.rel_url.query_string
    raise web.HTTPPermanentRedirect(target)


def _is_key(request: web.Request) -> bool:
    """ "new" or "lookup" can be a real key of a text-keyed table: then it names that record."""
    bound = get_resource(request)
    col = bound.column(bound.pk)
    try:
        return col is not None and forms.parse_key(col, request.match_info["pk"]) is not None
    except forms.FieldError:
        return False


async def reserved_or_edit_page(request: web.Request) -> web.StreamResponse:
    return await edit_page(request) if _is_key(request) else await without_slash(request)


async def reserved_or_edit_submit(request: web.Request) -> web.StreamResponse:
    return await edit_submit(request) if _is_key(request) else await without_slash(request)


# ---- input (SEC-3) ----------------------------------------------------------------------


def first_values(data: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        out.setdefault(key, str(value))
    return out


def path_key(bound: BoundResource, raw: str) -> Any:
    """The key a row's address names: a typed value, or a tuple for a composite key
    (app/admin/rowkey.py). A resource without a primary key has no row pages."""
    if not bound.keyed:
        raise NotFound(
            f"{bound.title} has no pages per record",
            why=bound.read_only_reason or "it has no primary key",
            fix=f"use the list at /admin/{bound.slug}/",
        )
    if not bound.composite:  # the common case, on every record page: one value, as it is
        try:
            return forms.parse_key(bound.column(bound.key[0]), raw)  # type: ignore[arg-type]
        except forms.FieldError as exc:
            raise Invalid(f"{bound.title}: {exc}; the address names no record.") from None
    parts = rowkey.split_key(raw, len(bound.key))
    if parts is None:
        raise Invalid(
            f"{bound.title}: the address names no record; it needs {len(bound.key)} key values "
            "separated by commas."
        )
    try:
        values = tuple(
            forms.parse_key(bound.column(k), part)  # type: ignore[arg-type]
            for k, part in zip(bound.key, parts, strict=True)
        )
    except forms.FieldError as exc:
        raise Invalid(f"{bound.title}: {exc}; the address names no record.") from None
    return values if bound.composite else values[0]


def back_query(raw: str | None) -> str:
    """LIST-7: the list's query string carried through the edit page, never a URL."""
    if raw is None:
        return ""
    if not _BACK.match(raw):
        raise Invalid("back must be a list query string of at most 2000 printable characters.")
    return raw.lstrip("?")


def check_params(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise Invalid(f"Unknown query parameter {unknown[0][:40]!r}.", fix="remove it")


def list_url(bound: BoundResource, back: str = "") -> str:
    return f"/admin/{bound.slug}/" + (f"?{back}" if back else "")


def with_back(url: str, back: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}back={quote(back, safe='')}" if back else url


# ---- shared page facts -------------------------------------------------------------------


def resources(request: web.Request) -> dict[str, BoundResource]:
    return request.app[ADMIN]


def resource_for_table(request: web.Request, table: str) -> BoundResource | None:
    """The resource over `table`: its `schema.name`, or the name a declaration used."""
    for b in resources(request).values():
        if table in (b.table.qualified, b.resource.table):
            return b
    return None


def read_only_reason(request: web.Request, bound: BoundResource) -> str | None:
    """SEC-4: why writes are off for this resource, shown as a banner; None when writable."""
    if request.app[keys.CONFIG].read_only:
        return GLOBAL_MESSAGE
    if resource_is_read_only(request.app, bound.slug):
        return f"{bound.title} is read-only: records can be viewed but not changed here."
    return None


async def can(request: web.Request, who: Principal, perm: str) -> bool:
    """`who` (this request's principal) may use `perm`: from the names read with the session."""
    return who.bypasses_permissions or await may(request, perm)


def singular(title: str) -> str:
    """ "Technicians" → "Technician", "Properties" → "Property": good enough for page titles."""
    if title.endswith("ies"):
        return title[:-3] + "y"
    return title[:-1] if title.endswith("s") and not title.endswith("ss") else title


def breadcrumbs(bound: BoundResource, back: str, *tail: dict[str, Any]) -> list[dict[str, Any]]:
    return crumbs((bound.title, list_url(bound, back)), *((t["label"], t.get("url")) for t in tail))


def field_specs(bound: BoundResource) -> tuple[forms.FieldSpec, ...]:
    """The form's fields: built once per resource (declarations and catalog are fixed)."""
    return per_resource(_SPECS, bound, _build_specs, bound)


def _build_specs(bound: BoundResource) -> tuple[forms.FieldSpec, ...]:
    r = bound.resource
    return forms.build_fields(
        bound.table.columns,
        readonly_fields=r.readonly_fields,
        labels={c.name: bound.label(c.name) for c in bound.table.columns},
        help_texts=r.help_texts,
        widgets=r.widgets,
        order=[n for _t, names in r.fieldsets for n in names],
        keel_filled=writes.keel_filled(bound.table),
    )


_SPECS: dict[int, tuple[BoundResource, tuple[forms.FieldSpec, ...]]] = {}
_T = TypeVar("_T")


def per_resource(
    kept: dict[int, tuple[BoundResource, _T]],
    bound: BoundResource,
    build: Callable[..., _T],
    *args: Any,
) -> _T:
    """`build(*args)`, once per resource: kept by the resource's identity (the entry holds it,
    so the id cannot be reused while it is kept), a few hundred at most (tests build many).
    Called on every page, so nothing is made before the kept value is found."""
    found = kept.get(id(bound))
    if found is not None and found[0] is bound:
        return found[1]
    if len(kept) > 256:
        kept.clear()
    value = build(*args)
    kept[id(bound)] = (bound, value)
    return value


def grouped(bound: BoundResource, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Declared fieldsets first; fields no fieldset names follow under "Other"."""
    by_name = {i["spec"].name: i for i in items}
    groups: list[dict[str, Any]] = []
    used: set[str] = set()
    for title, names in bound.resource.fieldsets:
        members = [by_name[n] for n in names if n in by_name]
        used.update(names)
        if members:
            groups.append({"title": title, "items": members})
    rest = [i for i in items if i["spec"].name not in used]
    if rest:
        groups.append({"title": "Other" if groups else None, "items": rest})
    return groups


def fk_target(
    request: web.Request, bound: BoundResource, spec: forms.FieldSpec
) -> tuple[BoundResource | None, Table | None]:
    """The resource (for its lookup URL) and table a foreign-key field points to."""
    col = bound.table.column(spec.name)
    if spec.fk_table is None or col is None or col.fk is None:
        return None, None
    target = resource_for_table(request, col.fk.target)
    return target, target.table if target else bound.related.get(col.fk.target)


async def fk_facts(
    request: web.Request, conn: Any, bound: BoundResource, spec: forms.FieldSpec, raw: str
) -> tuple[str | None, str | None]:
    """The autocomplete URL (target resource's lookup) and the current value's label."""
    target, table = fk_target(request, bound, spec)
    if spec.fk_table is None:
        return None, None
    url = f"/admin/{target.slug}/lookup" if target else None
    if not raw or table is None:
        return url, None
    display = target.display_column if target else display_column_of(table)
    col = table.column(spec.fk_column or "id")
    try:
        key = forms.parse_key(col, raw) if col else raw
    except forms.FieldError:
        return url, None
    found = await lookup.labels(conn, table, display, spec.fk_column or "id", [key])
    return url, found.get(str(key))


async def form_items(
    request: web.Request,
    bound: BoundResource,
    raw: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    creating: bool,
    labels: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """One item per field; `labels` are the FK names already read with the row, when the
    values shown are the stored ones (the edit page), else each is looked up."""
    items = []
    specs = [s for s in field_specs(bound) if not (creating and s.readonly)]
    wanted = [
        s
        for s in specs
        if s.widget == "autocomplete" and not (labels is not None and s.name in labels)
    ]
    found: dict[str, tuple[str | None, str | None]] = {}
    if wanted:
        async with request.app[keys.POOL].connection() as conn:
            for spec in wanted:
                found[spec.name] = await fk_facts(
                    request, conn, bound, spec, raw.get(spec.name, "")
                )
    for spec in specs:
        # Read-only fields when creating: nothing to show yet, the database fills them (EDIT-3).
        value = raw.get(spec.name, "")
        url, label = (None, None)
        if spec.name in found:
            url, label = found[spec.name]
        elif spec.widget == "autocomplete" and labels is not None:
            target, _table = fk_target(request, bound, spec)
            url = f"/admin/{target.slug}/lookup" if target else None
            label = labels.get(spec.name) if value else None
        items.append(
            {
                "spec": spec,
                "value": value,
                "error": errors.get(spec.name),
                "lookup_url": url,
                "value_label": label,
            }
        )
    return items


def displayed(bound: BoundResource, row: Mapping[str, Any]) -> dict[str, str]:
    return {s.name: forms.format_value(s, row.get(s.name)) for s in field_specs(bound)}


def original_json(row: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> str:
    """What this editor saw, so a conflict can show what someone else changed (EDIT-4).
    `values`: the row's values through `audit.jsonable` already, when the caller has them."""
    if values is None:
        values = {k: audit.jsonable(v) for k, v in row.items()}
    return json.dumps(values, separators=(",", ":"))


def parse_original(text: str | None) -> dict[str, Any] | None:
    if not text or len(text) > 500_000:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---- create and edit (EDIT-1..4, EDIT-7) -------------------------------------------------


async def render_form(
    request: web.Request,
    bound: BoundResource,
    who: Principal,
    *,
    pk: Any = None,
    raw: Mapping[str, str],
    errors: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    status: int = 200,
    labels: Mapping[str, str | None] | None = None,
) -> web.Response:
    creating = pk is None
    errors = errors or {}
    perm = "add" if creating else "change"
    writable = await can(request, who, bound.permission(perm))
    back = back_query(request.query.get("back") or raw.get("_back"))
    title = f"New {singular(bound.title).lower()}" if creating else str(raw.get("_label", pk))
    items = await form_items(request, bound, raw, errors, creating=creating, labels=labels)
    why_read_only = read_only_reason(request, bound)
    # The same rule as edit.html's `locked`; each field is drawn from its cached shape.
    locked = not writable or why_read_only is not None
    drawer = field_html.for_env(
        request.app[keys.RENDERER].env, request.app[keys.CONFIG].template_dir
    )
    htmls = [drawer.html(item, locked, creating) for item in items]
    action_url = (
        f"/admin/{bound.slug}/new" if creating else f"/admin/{bound.slug}/{rowkey.segment(pk)}/"
    )
    can_delete = not creating and await can(request, who, bound.permission("delete"))

    def context(holes: Sequence[Any]) -> dict[str, Any]:
        """The template's context; `holes` are the page's per-record values, in the order
        `shaped` below passes them (`Renderer.shaped_response`)."""
        title_, action_url_, version_, original_, *htmls_ = holes
        shown = [{**item, "html": html} for item, html in zip(items, htmls_, strict=True)]
        groups = grouped(bound, shown)
        # Which fields each fieldset shows, and the read-only ones gathered after the save
        # bar (edit.html's layout), decided here once: as Jinja filter chains they were a
        # twentieth of the page's CPU.
        for group in groups:
            group["shown"] = (
                group["items"] if locked else [i for i in group["items"] if not i["spec"].readonly]
            )
        fixed = [] if locked else [i for g in groups for i in g["items"] if i["spec"].readonly]
        return {
            "bound": bound,
            "page_title": title_,
            "breadcrumbs": breadcrumbs(bound, back, {"label": title_}),
            "groups": groups,
            "fixed_items": fixed,
            "creating": creating,
            "pk": pk,
            "back": back,
            "action_url": action_url_,
            "writable": writable,
            "read_only_reason": why_read_only,
            "can_delete": can_delete,
            "row_version": version_,
            "original": original_,
            "field_errors": errors,
            # The error summary links each field in the order the form shows them.
            "error_links": [
                {"id": f"f-{i['spec'].name}", "label": i["spec"].label, "message": i["error"]}
                for g in groups
                for i in g["items"]
                if i["error"]
            ],
            "form_errors": [],
            "inlines": [],
            "m2m_fields": [],
            "edit_inlines": [],
            **(extra or {}),
        }

    holes = [title, action_url, raw.get("_version", ""), raw.get("_original", ""), *htmls]
    names = [f"admin/{bound.slug}/edit.html", "admin/edit.html"]
    # The form as it stands when first opened (no error, message, related block or conflict;
    # a title the page shows as it is) has one shape per resource and state: drawn once,
    # then filled with this record's values.
    if (
        status == 200
        and not errors
        and not any((extra or {}).values())
        and title == title.strip()
        and not creating
    ):
        key = ("edit", bound.slug, id(bound), locked, writable, can_delete, why_read_only, back)
        shaped = request.app[keys.RENDERER].shaped_response(request, names, key, holes, context)
        if shaped is not None:
            return shaped
    return render(request, names, context(holes), status=status)


def prefill(request: web.Request, bound: BoundResource) -> dict[str, str]:
    """`/new?customer_id=42` pre-fills a field (EDIT-7 "add child"); values are type-checked."""
    specs = {s.name: s for s in field_specs(bound) if not s.readonly}
    check_params(request, {*specs, "back", "saved"})
    raw = {k: request.query[k] for k in specs if k in request.query}
    parsed = forms.parse_form([specs[k] for k in raw], raw, creating=True)  # only the given fields
    if parsed.errors:
        name, message = next(iter(parsed.errors.items()))
        raise Invalid(f"Cannot pre-fill {name}: {message}", fields=parsed.errors)
    return raw


async def create_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    who = await require(request, perm=bound.permission("add"))
    # Constant column defaults first (a new technician starts active), then `?column=value`.
    raw = {**forms.defaults(field_specs(bound)), **prefill(request, bound)}
    saved = request.query.get("saved")
    flashes = (
        [{"kind": "success", "text": f"Saved {bound.title.lower()} {saved[:40]}."}] if saved else []
    )
    return await render_form(request, bound, who, raw=raw, extra={"flashes": flashes})


async def create_submit(request: web.Request) -> web.StreamResponse:
    bound = get_resource(request)
    who = await require(request, perm=bound.permission("add"))
    data = first_values(await read_form(request))
    parsed = forms.parse_form(field_specs(bound), data, creating=True)
    raw = {**data, **parsed.raw}
    if parsed.ok:
        try:
            async with request.app[keys.POOL].connection() as conn:
                row = await writes.insert_row(conn, audit_context(request), bound, parsed.values)
        except Invalid as exc:
            return await _invalid(request, bound, who, raw, exc)
        raise redirect_after_save(
            request,
            bound,
            rowkey.row_key(bound.key, row),
            data,
            f"Added {writes.label_of(bound, row)}.",
        )
    return await render_form(
        request, bound, who, raw=raw, errors=parsed.errors, status=400,
        extra={"form_errors": ["Please correct the fields marked below."]},
    )  # fmt: skip


async def _invalid(
    request: web.Request,
    bound: BoundResource,
    who: Principal,
    raw: Mapping[str, str],
    exc: Invalid,
    *,
    pk: Any = None,
) -> web.Response:
    problems = [] if exc.fields else [exc.problem]
    return await render_form(
        request, bound, who, pk=pk, raw=raw, errors=exc.fields, status=400,
        extra={"form_errors": problems or ["The record was not saved: see the fields below."]},
    )  # fmt: skip


def _noun(bound: BoundResource) -> str:
    return singular(bound.title).lower()


def redirect_after_save(
    request: web.Request, bound: BoundResource, pk: Any, data: Mapping[str, str], message: str
) -> web.HTTPSeeOther:
    """EDIT-2: save → list; save and continue → this record; save and add another → blank form.
    The page it lands on says what was saved."""
    choice = data.get("_save", "save")
    back = back_query(data.get("_back"))
    key = rowkey.segment(pk)
    if choice == "continue":
        return web.HTTPSeeOther(with_back(f"/admin/{bound.slug}/{key}/?saved=1", back))
    if choice == "add":
        return web.HTTPSeeOther(with_back(f"/admin/{bound.slug}/new?saved={key}", back))
    return flash.see_other(request, list_url(bound, back), message)


async def load_row(request: web.Request, bound: BoundResource, pk: Any) -> dict[str, Any]:
    async with request.app[keys.POOL].connection() as conn:
        row = await writes.fetch_row(conn, bound, pk)
    if row is None:
        raise NotFound(
            f"{bound.title} {str(pk)[:60]} does not exist", fix="it may have been deleted"
        )
    return row


async def inline_blocks(
    request: web.Request, who: Principal, bound: BoundResource, pk: Any
) -> list[dict[str, Any]]:
    """EDIT-7: children of this row, read-only, with a capped count and an "add" link."""
    blocks = []
    for inline in bound.resource.inlines:
        if inline.editable:
            continue  # drawn inside the form (relation_views.edit_context)
        child = resource_for_table(request, inline.table)
        if child is None or not await can(request, who, child.permission("view")):
            continue
        async with request.app[keys.POOL].connection() as conn:
            found = await lookup.inline_rows(
                conn, child.table, inline.fk_column, pk,
                columns=inline.list_display, limit=inline.limit,
            )  # fmt: skip
        add = await can(request, who, child.permission("add"))
        blocks.append(
            {
                "child": child,
                "data": found,
                "columns": [(c, child.label(c)) for c in found.columns],
                "add_url": f"/admin/{child.slug}/new?{urlencode({inline.fk_column: str(pk)})}"
                if add
                else None,
                "list_url": f"/admin/{child.slug}/?{urlencode({inline.fk_column: str(pk)})}",
            }
        )
    return blocks


async def edit_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    who = await require(request, perm=bound.permission("view"))
    check_params(request, {"back", "saved"})
    pk = path_key(bound, request.match_info["pk"])
    row, labels = await load_row_and_labels(request, bound, pk)
    values = {k: audit.jsonable(v) for k, v in row.items()}  # once, for both below
    raw = {
        **displayed(bound, row),
        "_version": writes.row_version(bound.table, row, values),
        "_original": original_json(row, values),
        "_label": writes.label_of(bound, row),
    }
    flashes = [{"kind": "success", "text": "Saved."}] if request.query.get("saved") == "1" else []
    blocks = await inline_blocks(request, who, bound, pk) if bound.resource.inlines else []
    related = await relation_views.edit_context(request, who, bound, pk)
    return await render_form(
        request, bound, who, pk=pk, raw=raw, labels=labels,
        extra={"flashes": flashes, "inlines": blocks, **related},
    )  # fmt: skip


async def load_row_and_labels(
    request: web.Request, bound: BoundResource, pk: Any
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The row and the names of the rows its foreign keys point to, in one query (EDIT-1).

    A GET usually finds it already read, with the session (`plan_row`)."""
    q = row_query(request, bound, pk)
    rows = prefetch.take(request, q.statement)
    if rows is None:
        async with request.app[keys.POOL].connection() as conn:
            rows = await (await conn.execute(q.query, q.params)).fetchall()
    found = lookup.read_row(bound, q, rows)
    if found is None:
        raise NotFound(
            f"{bound.title} {str(pk)[:60]} does not exist", fix="it may have been deleted"
        )
    return found


def row_query(request: web.Request, bound: BoundResource, pk: Any) -> lookup.RowQuery:
    """The record page's query for `pk`; its text is worked out once per resource (the
    session lookup plans it and the page asks for it again: two calls a page)."""
    query, refs = per_resource(_ROW_QUERIES, bound, _build_row_shape, request, bound)
    return lookup.RowQuery(query, writes.key_params(bound, pk), refs)


def _build_row_shape(
    request: web.Request, bound: BoundResource
) -> tuple[Any, tuple[lookup.Ref, ...]]:
    refs = []
    for spec in field_specs(bound):
        target, table = fk_target(request, bound, spec)
        if spec.widget == "autocomplete" and table is not None and spec.fk_column:
            display = target.display_column if target else display_column_of(table)
            refs.append(lookup.Ref(spec.name, table, display, spec.fk_column))
    return lookup.row_shape(bound, refs)


_ROW_QUERIES: dict[int, tuple[BoundResource, tuple[Any, tuple[lookup.Ref, ...]]]] = {}


def plan_row(request: web.Request) -> prefetch.Statement | None:
    """The edit page's row query, from its address alone (app/web/prefetch.py): sent with
    the session lookup, read by `load_row_and_labels` once `edit_page` has checked that the
    user may view the resource. An address that names no record plans nothing."""
    try:
        bound = get_resource(request)
        return row_query(request, bound, path_key(bound, request.match_info["pk"])).statement
    except KeelError:
        return None


async def edit_submit(request: web.Request) -> web.StreamResponse:
    bound = get_resource(request)
    who = await require(request, perm=bound.permission("change"))
    pk = path_key(bound, request.match_info["pk"])
    form = await read_form(request)
    data = first_values(form)
    version = data.get("_version", "")
    if not re.fullmatch(r"[th]:[0-9A-Za-z:.\-+TZ]{1,64}", version):
        raise Invalid("The form has no valid record version.", fix="reload the page and try again")
    parsed = forms.parse_form(field_specs(bound), data, creating=False)
    # Many-to-many sets and editable inlines travel in the same form (relation_views).
    related, shown = await relation_views.parse(request, who, bound, form)

    async def again(errors: Mapping[str, str], status: int, **extra: Any) -> web.Response:
        raw = await redisplay(request, bound, pk, data, parsed.raw)
        more = await relation_views.edit_context(request, who, bound, pk, errors=errors, **shown)
        blocks = await inline_blocks(request, who, bound, pk) if bound.resource.inlines else []
        return await render_form(
            request, bound, who, pk=pk, raw=raw, errors=errors, status=status,
            extra={"inlines": blocks, **more, **extra},
        )  # fmt: skip

    if not parsed.ok or relation_views.has_errors(shown):
        return await again(
            parsed.errors, 400, form_errors=["Please correct the fields marked below."]
        )
    try:
        async with request.app[keys.POOL].connection() as conn:
            await relations.save_edit(
                conn, audit_context(request), bound, pk, parsed.values,
                version=version, original=parse_original(data.get("_original")),
                related=related,
            )  # fmt: skip
    except Invalid as exc:
        problems = [] if exc.fields else [exc.problem]
        return await again(
            exc.fields, 400,
            form_errors=problems or ["The record was not saved: see the fields below."],
        )  # fmt: skip
    except Conflict as exc:
        return await again({}, 409, form_errors=[exc.problem])
    except writes.StaleRow as stale:
        label = writes.label_of(bound, stale.current)
        raw = {**displayed(bound, stale.current), **data, **parsed.raw, "_label": label}
        return await conflict_page(request, bound, who, pk, raw=raw, stale=stale)
    except m2m.StaleSet as exc:
        shown["was"][exc.link.name] = exc.now  # saving again replaces their set with this one
        return await again({}, 409, form_errors=[relation_views.conflict_message(exc)])
    except inlines.StaleChild as exc:
        shown["forms_"].pop(exc.child.slug, None)  # the rows as they are now
        return await again({}, 409, form_errors=[relation_views.conflict_message(exc)])
    raise redirect_after_save(
        request, bound, pk, data, f"Saved {_noun(bound)} {rowkey.audit_id(bound.key, pk)}."
    )


async def redisplay(
    request: web.Request,
    bound: BoundResource,
    pk: Any,
    data: Mapping[str, str],
    typed: Mapping[str, str],
) -> dict[str, str]:
    """What a re-shown form holds: the stored row, overlaid with what this editor sent, so
    read-only fields and fields a script left out are not shown (and re-sent) empty."""
    async with request.app[keys.POOL].connection() as conn:
        row = await writes.fetch_row(conn, bound, pk)
    base = displayed(bound, row) if row else {}
    label = writes.label_of(bound, row) if row else str(pk)
    return {**base, **data, **typed, "_label": label}


async def conflict_page(
    request: web.Request,
    bound: BoundResource,
    who: Principal,
    pk: Any,
    *,
    raw: dict[str, str],
    stale: writes.StaleRow,
) -> web.Response:
    """EDIT-4: refuse, show what changed, keep this editor's input; saving again overwrites."""
    raw = {**raw, "_version": stale.version, "_original": original_json(stale.current)}
    changes = [
        {"field": bound.label(name), "from": change["from"], "to": change["to"]}
        for name, change in stale.changes.items()
    ]
    by = f" ({stale.changed_by})" if stale.changed_by else ""
    message = f"This record was changed by someone else{by} while you were editing it."
    return await render_form(
        request, bound, who, pk=pk, raw=raw, status=409,
        extra={"form_errors": [message], "conflict": changes},
    )  # fmt: skip


# ---- history (AUDIT-8) and lookup (EDIT-9) -----------------------------------------------


async def history_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("view"))
    check_params(request, {"back"})
    pk = path_key(bound, request.match_info["pk"])
    async with request.app[keys.POOL].connection() as conn:
        row = await writes.fetch_row(conn, bound, pk)
        events = await audit.object_history(
            conn, bound.slug, rowkey.audit_id(bound.key, pk), limit=100
        )
    if row is None and not events:
        raise NotFound(f"{bound.title} {str(pk)[:60]} has no record and no history")
    key = rowkey.segment(pk)
    label = writes.label_of(bound, row) if row else str(rowkey.audit_id(bound.key, pk))
    ctx = {
        "bound": bound,
        "page_title": f"History of {singular(bound.title).lower()} {label}",
        "breadcrumbs": breadcrumbs(
            bound, "", {"label": label, "url": f"/admin/{bound.slug}/{key}/"}, {"label": "History"}
        ),
        "events": [
            {
                "row": e,
                "when": e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "when_iso": audit.iso(e.at),
                "changes": [(bound.label(k), v) for k, v in e.changes.items()],
            }
            for e in events
        ],
        "edit_url": f"/admin/{bound.slug}/{key}/" if row else None,
    }
    return render(request, [f"admin/{bound.slug}/history.html", "admin/history.html"], ctx)


async def lookup_json(request: web.Request) -> web.Response:
    """EDIT-9: `{results: [{id, label}]}`; needs `view` on this (the target) resource."""
    bound = get_resource(request)
    await require(request, perm=bound.permission("view"))
    try:
        check_params(request, {"q", "limit"})
        q = lookup.check_query(request.query.get("q", ""))
        limit = lookup.check_limit(request.query.get("limit"))
    except Invalid as exc:
        return web.json_response({"error": "Bad request", "message": exc.problem}, status=400)
    async with request.app[keys.POOL].connection() as conn:
        results = await lookup.search(conn, bound, q, limit)
    return web.json_response({"results": results})
