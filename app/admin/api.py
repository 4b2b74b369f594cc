"""The JSON API over the declared resources, and its OpenAPI description and page.

The same services, checks and audit events as the pages: lists through the list's own query
parser and SQL (filters, search, ordering, signed cursors), writes through app/admin/writes.py
(optimistic concurrency on update, constraint errors as field errors), declared actions through
the bulk action path. Input is JSON; each value is turned into the text a form would send and
read by the form parser, so the API accepts and refuses exactly what the form does.

Addresses (registered in app/admin/routes.py):

    GET    /admin/api/                          the description, as a page
    GET    /admin/api/openapi.json              the OpenAPI 3.1 document (what the caller may use)
    GET    /admin/api/<resource>/               list
    POST   /admin/api/<resource>/               create
    GET    /admin/api/<resource>/<key>          detail, with the version to send back
    PATCH  /admin/api/<resource>/<key>          update {version, values, original?}
    DELETE /admin/api/<resource>/<key>          delete
    POST   /admin/api/<resource>/actions/<name> a declared action {ids}

Errors are JSON with problem, why and fix (app/web/middleware.py renders every error under
/admin/api/ as JSON); invalid input adds `fields`: field name → messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from multidict import MultiDict

from app import __version__, audit
from app.admin import delete_views, forms, rowkey, writes
from app.admin.edit_views import field_specs, path_key
from app.admin.list_params import parse_query
from app.admin.list_views import load_page
from app.admin.openapi import ResourceDoc, document, schema_name
from app.admin.resources import BoundResource
from app.admin.setup import ADMIN, get_resource
from app.errors import Conflict, Invalid, NotFound
from app.web import keys
from app.web.auth import audit_context, can, principal, require
from app.web.render import render

VERSION = re.compile(r"^[th]:[0-9A-Za-z:.\-+TZ]{1,64}$")
MAX_BODY_FIELDS = 500


# ---- values in and out ----------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A stored value as JSON, as the audit log keeps it: exact decimals as strings, times in
    UTC ISO 8601. The same form in lists, records and conflicts, so a script can send back as
    `original` what it read and get only real changes."""
    return audit.jsonable(value)


def detail(bound: BoundResource, row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key": rowkey.segment(rowkey.row_key(bound.key, row)),
        "version": writes.row_version(bound.table, row),
        "values": {k: jsonable(v) for k, v in row.items()},
    }


def as_text(spec: forms.FieldSpec, value: Any) -> str:
    """A JSON value → the text a form would send for this field (FieldError if it cannot)."""
    if spec.type_name in ("json", "jsonb"):
        return "" if value is None else json.dumps(value)
    if spec.widget == "checkbox" or spec.type_name == "boolean":
        if not isinstance(value, bool):
            raise forms.FieldError("Send true or false.")
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise forms.FieldError("Send a single text or number value.")
    return str(value)


def parse_values(bound: BoundResource, values: Any, *, creating: bool) -> dict[str, Any]:
    """The typed values of a JSON object of fields, or Invalid with field → message."""
    if not isinstance(values, dict):
        raise Invalid("Send the fields as a JSON object.", fix='e.g. {"name": "Ada"}')
    if len(values) > MAX_BODY_FIELDS:
        raise Invalid(f"At most {MAX_BODY_FIELDS} fields can be sent at once.")
    specs = {s.name: s for s in field_specs(bound)}
    errors: dict[str, str] = {}
    data: dict[str, str] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            errors[str(name)[:60]] = "No such field."
        elif spec.readonly:
            errors[name] = "This field is read-only."
        else:
            try:
                data[name] = as_text(spec, value)
            except forms.FieldError as exc:
                errors[name] = str(exc)
    # Absent fields: left as they are on update; on create, the database's default, NULL, or
    # "This field is required." (a boolean left out takes its default, not false).
    chosen = [
        s
        for s in specs.values()
        if not s.readonly and (s.name in values or (creating and s.widget != "checkbox"))
    ]
    parsed = forms.parse_form(chosen, data, creating=creating)
    errors.update(parsed.errors)
    if errors:
        raise Invalid("The record was not saved: see the fields.", fields=errors)
    return parsed.values


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Invalid(
            "The request body is not JSON.",
            fix="send a JSON object with Content-Type: application/json",
        ) from None


def writable(bound: BoundResource) -> None:
    """A resource without a key, or a view, has no API writes (the read-only mode is refused
    earlier, by its middleware, for every write)."""
    if bound.read_only_reason is not None or not bound.keyed:
        raise Conflict(
            f"{bound.title} cannot be changed.",
            why=bound.read_only_reason or "it has no primary key",
            fix="change these records where they come from",
        )


# ---- list, detail, create, update, delete ---------------------------------------------------


async def list_api(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("view"))
    lq = parse_query(bound, request.query)
    page, total, _saved = await load_page(request, bound, lq)
    wanted = list(dict.fromkeys([*bound.key, *(c.name for c in bound.list_columns)]))
    at = [page.columns.index(n) for n in wanted]
    rows = []
    for r in page.rows:
        raw = {n: r[i] for n, i in zip(wanted, at, strict=True)}
        # Each row as detail names it: its key for the row's address, then its values.
        key = rowkey.segment(rowkey.row_key(bound.key, raw)) if bound.keyed else None
        rows.append({"key": key, "values": {n: jsonable(v) for n, v in raw.items()}})
    return web.json_response(
        {
            "rows": rows,
            "next_cursor": page.next_cursor,
            "prev_cursor": page.prev_cursor,
            "total": total.value,
            "total_is_estimate": total.estimate,
            "total_is_capped": total.capped,
        }
    )


async def detail_api(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("view"))
    pk = path_key(bound, request.match_info["pk"])
    async with request.app[keys.POOL].connection() as conn:
        row = await writes.fetch_row(conn, bound, pk)
    if row is None:
        raise NotFound(f"{bound.title} {str(pk)[:60]} does not exist", fix="it may be deleted")
    return web.json_response(detail(bound, row))


async def create_api(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("add"))
    writable(bound)
    values = parse_values(bound, await read_json(request), creating=True)
    async with request.app[keys.POOL].connection() as conn:
        row = await writes.insert_row(conn, audit_context(request), bound, values)
    body = detail(bound, row)
    return web.json_response(
        body, status=201, headers={"Location": f"/admin/api/{bound.slug}/{body['key']}"}
    )


async def update_api(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("change"))
    writable(bound)
    pk = path_key(bound, request.match_info["pk"])
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"version", "values", "original"}:
        raise Invalid(
            "Send {version, values} (and optionally original).",
            fix="read the record first: its version comes with it",
        )
    version = body.get("version")
    if not isinstance(version, str) or not VERSION.match(version):
        raise Invalid(
            "The record version is missing or malformed.",
            fields={"version": "the version read with the record"},
            fix="read the record (GET) and send its version back",
        )
    values = parse_values(bound, body.get("values"), creating=False)
    original = body.get("original")
    try:
        async with request.app[keys.POOL].connection() as conn:
            row = await writes.update_row(
                conn, audit_context(request), bound, pk, values, version=version,
                original=original if isinstance(original, dict) else None,
            )  # fmt: skip
    except writes.StaleRow as stale:
        return web.json_response(
            {
                "error": "Conflict",
                "problem": str(stale),
                "message": str(stale),
                "why": "its version is no longer the one sent"
                + (f"; last changed by {stale.changed_by}" if stale.changed_by else ""),
                "fix": "read the record again, check the changes, and send yours again",
                "version": stale.version,
                "current": {k: jsonable(v) for k, v in stale.current.items()},
                "changes": audit.jsonable(stale.changes),
                "changed_by": stale.changed_by,
                "request_id": request.get(keys.REQUEST_ID, ""),
            },
            status=409,
        )
    return web.json_response(detail(bound, row))


async def delete_api(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await require(request, perm=bound.permission("delete"))
    writable(bound)
    pk = path_key(bound, request.match_info["pk"])
    async with request.app[keys.POOL].connection() as conn:
        await writes.delete_row(conn, audit_context(request), bound, pk)
    return web.json_response({"deleted": rowkey.segment(pk)})


async def action_api(request: web.Request) -> web.Response:
    """A declared action on explicit ids; the whole selection in one statement (EDIT-8).
    Bulk delete is not offered: it is behind the re-authentication wall."""
    bound = get_resource(request)
    name = request.match_info["action"]
    action = next((a for a in bound.resource.actions if a.name == name), None)
    if action is None:
        raise NotFound(f"{bound.title} has no action {name[:40]!r}")
    await require(request, perm=delete_views.permission(bound, action))
    writable(bound)
    body = await read_json(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or set(body) != {"ids"}:
        raise Invalid("Send {ids: [...]} with at least one key.", fields={"ids": "a list of keys"})
    if len(ids) > writes.MAX_BULK:
        raise Invalid(f"At most {writes.MAX_BULK:,} records at once.", fields={"ids": "too many"})
    if any(isinstance(i, bool) or not isinstance(i, str | int) for i in ids):
        raise Invalid("Each id is a key: a text or a whole number.", fields={"ids": "keys"})
    selection = delete_views.parse_selection(bound, MultiDict([("ids", str(i)) for i in ids]))
    done = await delete_views.run(request, bound, action, selection)
    return web.json_response({"done": [jsonable(i) for i in done], "count": len(done)})


# ---- the description ------------------------------------------------------------------------


async def visible(request: web.Request) -> list[ResourceDoc]:
    """The resources this caller may view, with what else they may do on each."""
    out = []
    bound: dict[str, BoundResource] = request.app[ADMIN]
    for b in bound.values():
        if not await can(request, b.permission("view")):
            continue
        actions = [a for a in b.resource.actions if await can(request, b.permission(a.name))]
        out.append(
            ResourceDoc(
                b,
                field_specs(b),
                can_add=await can(request, b.permission("add")),
                can_change=await can(request, b.permission("change")),
                can_delete=await can(request, b.permission("delete")),
                actions=actions,
            )
        )
    return out


async def openapi_json(request: web.Request) -> web.Response:
    await require(request)
    doc = document(await visible(request), version=__version__)
    return web.json_response(doc)


def _schema_text(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "enum" in schema:
        text += ": " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    if "$ref" in schema:
        text = str(schema["$ref"]).rsplit("/", 1)[-1]
    return text


def _page_sections(doc: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """One section per resource (by its tag): its operations, then its fields; `names` maps
    a resource's title to its schema's name."""
    schemas = doc["components"]["schemas"]
    sections: dict[str, dict[str, Any]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            tag = op["tags"][0]
            section = sections.setdefault(tag, {"title": tag, "operations": [], "fields": []})
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            section["operations"].append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "id": op["operationId"],
                    "params": [
                        {"name": p["name"], "in": p["in"], "text": p.get("description", "")}
                        for p in op.get("parameters", ())
                    ],
                    "body": _schema_text(body.get("schema", {})) if body else "",
                    "statuses": sorted(op.get("responses", {})),
                }
            )
    for title, section in sections.items():
        name = names.get(title, "")
        record: Sequence[tuple[str, Any]] = list(
            schemas.get(name, {}).get("properties", {}).items()
        )
        section["fields"] = [
            {
                "name": n,
                "type": _schema_text(s),
                "read_only": bool(s.get("readOnly")),
                "text": s.get("description", ""),
            }
            for n, s in record
        ]
    return list(sections.values())


async def docs_page(request: web.Request) -> web.Response:
    """The description as a page: server-rendered, no script, no outside assets."""
    await require(request)
    docs = await visible(request)
    doc = document(docs, version=__version__)
    who = principal(request)
    ctx = {
        "page_title": "API",
        "breadcrumbs": [{"label": "Admin", "url": "/admin/"}, {"label": "API"}],
        "sections": _page_sections(doc, {d.bound.title: schema_name(d.bound.slug) for d in docs}),
        "version": doc["info"]["version"],
        "signed_in_as": who.email if who else "",
    }
    return render(request, "admin/api_docs.html", ctx)
