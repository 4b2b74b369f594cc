"""CSV import pages: upload (streamed, capped), preview with the column mapping, apply (EDIT-10).

Thin over app/admin/importing.py: the upload goes chunk by chunk into the service's temporary
file, never into memory; the preview and the apply are service calls.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from app.admin import importing
from app.admin.edit_views import breadcrumbs, check_params, read_only_reason
from app.admin.resources import BoundResource
from app.admin.setup import get_resource
from app.errors import Invalid, KeelError, PermissionDenied
from app.web import flash, keys
from app.web.auth import audit_context, require
from app.web.auth import can as may
from app.web.csrf import streamed_upload
from app.web.forms import read_form
from app.web.render import render

CHUNK = 64 * 1024
TOKEN = r"{token:[A-Za-z0-9_-]{24}}"


async def _guard(request: web.Request, bound: BoundResource) -> str:
    """Adding rows is what an import does; the owner of uploads is the signed-in user."""
    who = await require(request, perm=bound.permission("add"))
    reason = read_only_reason(request, bound)
    if reason is None and bound.resource.read_only:
        reason = bound.read_only_reason or f"{bound.title} is read-only: records cannot be added."
    if reason:
        raise Invalid(reason, fix="import into a resource that can be changed")
    return str(who.user_id)


def _render_upload(
    request: web.Request, bound: BoundResource, *, error: KeelError | None = None, status: int = 200
) -> web.Response:
    cap = request.app[keys.CONFIG].import_max_size
    ctx = {
        "bound": bound,
        "page_title": f"Import {bound.title.lower()}",
        "breadcrumbs": breadcrumbs(bound, "", {"label": "Import"}),
        "action_url": f"/admin/{bound.slug}/import",
        "limit_mib": f"{cap / (1 << 20):g}",
        "fields": list(importing.importable(bound).values()),
        "keys": importing.key_choices(bound),
        "error": error,
    }
    return render(
        request, [f"admin/{bound.slug}/import.html", "admin/import.html"], ctx, status=status
    )


async def import_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    await _guard(request, bound)
    check_params(request, set())
    return _render_upload(request, bound)


@streamed_upload
async def upload_submit(request: web.Request) -> web.StreamResponse:
    """Streams the file part into a temporary file, refusing it past `import_max_size`."""
    bound = get_resource(request)
    owner = await _guard(request, bound)
    cap = request.app[keys.CONFIG].import_max_size
    # A declared length past the cap is refused before a byte of the body is read.
    if request.content_length is not None and request.content_length > cap + 64 * 1024:
        return _too_large(request, bound, importing.TooLarge(cap))
    reader = request.get(keys.UPLOAD_READER)
    part = await reader.next() if reader is not None else None
    if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
        raise Invalid(
            "No file was sent.",
            fix="Choose a CSV file and send the form again.",
        )
    sink = importing.UploadSink(owner, bound.slug, part.filename or "", cap)
    try:
        while chunk := await part.read_chunk(CHUNK):
            sink.write(chunk)
    except importing.TooLarge as exc:
        return _too_large(request, bound, exc)
    except BaseException:
        sink.abort()
        raise
    upload = sink.finish()
    if upload.size == 0:
        importing.discard_upload(upload)
        raise Invalid("The file is empty.", fix="Choose a CSV file with a header row.")
    raise web.HTTPSeeOther(f"/admin/{bound.slug}/import/{upload.token}")


def _too_large(
    request: web.Request, bound: BoundResource, exc: importing.TooLarge
) -> web.StreamResponse:
    response = _render_upload(request, bound, error=exc, status=413)
    # The rest of the body is not read: the connection cannot carry another request.
    response.force_close()
    return response


def _plan_from(bound: BoundResource, header: list[str], data: Any) -> importing.Plan | None:
    if not any(k.startswith("col") for k in data):
        return None  # first visit: the automatic mapping
    return importing.mapping_from(bound, header, {k: str(v) for k, v in data.items()})


async def _render_preview(
    request: web.Request,
    bound: BoundResource,
    upload: importing.Upload,
    plan: importing.Plan | None,
    *,
    error: KeelError | None = None,
    status: int = 200,
) -> web.Response:
    result = await importing.preview(bound, upload.path, plan)
    fields = importing.importable(bound)
    ctx = {
        "bound": bound,
        "page_title": f"Import {bound.title.lower()}: {upload.filename}",
        "breadcrumbs": breadcrumbs(bound, "", {"label": "Import"}),
        "upload": upload,
        "preview": result,
        "columns": [
            {"index": i, "header": importing.shown(h), "field": result.plan.mapping[i]}
            for i, h in enumerate(result.header)
        ],
        "field_options": [{"value": n, "label": s.label} for n, s in fields.items()],
        "key_options": [
            {"value": k, "label": ", ".join(fields[c].label if c in fields else c for c in cols)}
            for k, cols in importing.key_choices(bound).items()
        ],
        "labels": {n: s.label for n, s in fields.items()},
        "shown": importing.shown,
        "action_url": f"/admin/{bound.slug}/import/{upload.token}",
        "error": error,
    }
    return render(
        request,
        [f"admin/{bound.slug}/import_preview.html", "admin/import_preview.html"],
        ctx,
        status=status,
    )


async def preview_page(request: web.Request) -> web.Response:
    bound = get_resource(request)
    owner = await _guard(request, bound)
    upload = importing.find_upload(request.match_info["token"], owner, bound.slug)
    header = importing.read_header(upload.path)
    return await _render_preview(request, bound, upload, _plan_from(bound, header, request.query))


async def apply_submit(request: web.Request) -> web.StreamResponse:
    bound = get_resource(request)
    owner = await _guard(request, bound)
    upload = importing.find_upload(request.match_info["token"], owner, bound.slug)
    data = await read_form(request)
    header = importing.read_header(upload.path)
    plan = importing.mapping_from(bound, header, {k: str(v) for k, v in data.items()})
    mode = str(data.get("mode", "check"))
    if mode not in importing.MODES:
        # "Check again": the same page with the operator's mapping; nothing is written.
        return await _render_preview(request, bound, upload, plan)
    if plan.key and not await may(request, bound.permission("change")):
        # Matching rows by a key updates the ones found: that is a change, not an add.
        raise PermissionDenied(
            f"Matching rows updates {bound.title.lower()}, which needs another permission.",
            missing=bound.permission("change"),
        )
    try:
        async with request.app[keys.POOL].connection() as conn:
            result = await importing.apply_import(
                conn, audit_context(request), bound, upload, plan, mode=mode
            )
    except Invalid as exc:
        return await _render_preview(request, bound, upload, plan, error=exc, status=400)
    importing.discard_upload(upload)
    parts = [f"{result.inserted} added", f"{result.updated} updated"]
    if result.unchanged:
        parts.append(f"{result.unchanged} unchanged")
    if result.skipped:
        parts.append(f"{result.skipped} rows with errors skipped")
    message = f"Imported {upload.filename}: {', '.join(parts)}."
    raise flash.see_other(request, f"/admin/{bound.slug}/", message)
