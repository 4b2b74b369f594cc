"""Groups administration: list, create, edit with the permission grid, members, delete (AUTHZ-4, AUTHZ-7)."""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web

from app.authority import accounts, groups, permissions, users
from app.authority.principal import Principal
from app.errors import Conflict, Invalid, NotFound, PermissionDenied
from app.web import admin_users_forms as f
from app.web import keys
from app.web.admin_users_view import (
    crumbs,
    form_problem,
    manager,
    notices,
    permission_grid,
    refused,
)
from app.web.auth import audit_context
from app.web.render import render

NAME_MAX = 80
DESCRIPTION_MAX = 500


def setup(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/admin/groups/", list_page, name="groups_list"),
            web.get("/admin/groups/new", new_form),
            web.post("/admin/groups/new", create),
            web.get("/admin/groups/{id}/", edit_page, name="group_edit"),
            web.post("/admin/groups/{id}/", save),
            web.post("/admin/groups/{id}/members", members),
            web.get("/admin/groups/{id}/delete", delete_form),
            web.post("/admin/groups/{id}/delete", delete),
        ]
    )


async def list_page(request: web.Request) -> web.Response:
    await manager(request)
    async with request.app[keys.POOL].connection() as conn:
        rows = await groups.list_groups(conn)
    return render(
        request,
        "groups/list.html",
        {"rows": rows, "flashes": notices(request), "breadcrumbs": crumbs(("Groups", None))},
    )


def _new_context(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "breadcrumbs": crumbs(("Groups", "/admin/groups/"), ("New group", None)),
    }


async def new_form(request: web.Request) -> web.Response:
    await manager(request)
    return render(request, "groups/new.html", _new_context({"name": "", "description": ""}, {}))


async def create(request: web.Request) -> web.Response:
    actor = await manager(request)
    form = await f.read_form(request)
    values = {"name": f.raw(form, "name"), "description": f.raw(form, "description")}
    try:
        name = f.text(form, "name", "The name", max_len=NAME_MAX, required=True)
        description = f.text(form, "description", "The description", max_len=DESCRIPTION_MAX)
        async with request.app[keys.POOL].connection() as conn:
            group = await groups.create(
                conn, audit_context(request), actor, name, description=description
            )
    except PermissionDenied as exc:
        return refused(request, exc)
    except (Invalid, Conflict) as exc:
        problem, fields = form_problem(exc)
        ctx = _new_context(values, fields)
        ctx["form_errors"] = problem
        return render(
            request, "groups/new.html", ctx, status=409 if isinstance(exc, Conflict) else 400
        )
    raise web.HTTPSeeOther(f"/admin/groups/{group.id}/?done=group_created")


# ---- edit: name, description, permission grid, members -----------------------------------


async def _page_context(
    conn: psycopg.AsyncConnection[Any], group: groups.Group, held: list[str]
) -> dict[str, Any]:
    return {
        "group": group,
        "grid": permission_grid(permissions.all_permissions(), held),
        "members": await groups.members(conn, group.id),
        "breadcrumbs": crumbs(("Groups", "/admin/groups/"), (group.name, None)),
    }


async def _load(request: web.Request) -> tuple[Principal, int]:
    actor = await manager(request)
    return actor, f.path_id(request)


async def edit_page(request: web.Request) -> web.Response:
    _actor, group_id = await _load(request)
    async with request.app[keys.POOL].connection() as conn:
        group = await groups.get(conn, group_id)
        held = await groups.group_permissions(conn, group_id)
        ctx = await _page_context(conn, group, held)
    values = {"name": group.name, "description": group.description}
    return render(
        request,
        "groups/edit.html",
        {**ctx, "values": values, "errors": {}, "flashes": notices(request)},
    )


async def save(request: web.Request) -> web.Response:
    """Name and description, then the grid saved as a diff: only what changed is granted or
    revoked, each change one audit event through the groups service (AUTHZ-4, INV-3)."""
    actor, group_id = await _load(request)
    form = await f.read_form(request)
    pool = request.app[keys.POOL]
    async with pool.connection() as conn:
        group = await groups.get(conn, group_id)
        held = await groups.group_permissions(conn, group_id)
        ctx = await _page_context(conn, group, held)
    values = {"name": f.raw(form, "name"), "description": f.raw(form, "description")}
    try:
        chosen = f.many(form, "perms", "Permissions", ctx["grid"].names)
        name = f.text(form, "name", "The name", max_len=NAME_MAX, required=True)
        description = f.text(form, "description", "The description", max_len=DESCRIPTION_MAX)
        async with pool.connection() as conn:
            changed = await accounts.save_group(
                conn, audit_context(request), actor, group_id, name=name,
                description=description, permissions=chosen,
            )  # fmt: skip
    except PermissionDenied as exc:
        return refused(request, exc)
    except (Invalid, Conflict) as exc:
        problem, fields = form_problem(exc)
        checked = [p for p in form.getall("perms", []) if isinstance(p, str)]
        ctx["grid"] = permission_grid(permissions.all_permissions(), checked)
        return render(
            request,
            "groups/edit.html",
            {**ctx, "values": values, "errors": fields, "form_errors": problem},
            status=409 if isinstance(exc, Conflict) else 400,
        )
    done = "group_saved" if changed else "unchanged"
    raise web.HTTPSeeOther(f"/admin/groups/{group_id}/?done={done}")


async def members(request: web.Request) -> web.Response:
    """Add a member by email or remove one; membership changes what the member may do, so the
    rank guard applies to them (AUTHZ-3)."""
    actor, group_id = await _load(request)
    form = await f.read_form(request)
    op = f.choice(form, "op", "The member action", ["add", "remove"])
    try:
        async with request.app[keys.POOL].connection() as conn:
            group = await groups.get(conn, group_id)
            if op == "add":
                address = f.email(form)
                try:
                    user = await users.get_by_email(conn, address)
                except NotFound:
                    raise Invalid(
                        f"no user has the email {address}",
                        fields={"email": "no such user"},
                        fix="check the spelling, or create the user first",
                    ) from None
                user_id = user.id
            else:
                user_id = f.form_id(form, "user_id", "The member")
            ctx = audit_context(request)
            if op == "add":
                await groups.add_member(conn, ctx, actor, group.id, user_id)
            else:
                await groups.remove_member(conn, ctx, actor, group.id, user_id)
    except PermissionDenied as exc:
        return refused(request, exc)
    except Invalid as exc:
        async with request.app[keys.POOL].connection() as conn:
            held = await groups.group_permissions(conn, group_id)
            page = await _page_context(conn, group, held)
        problem, _fields = form_problem(exc)
        values = {"name": group.name, "description": group.description}
        return render(
            request,
            "groups/edit.html",
            {**page, "values": values, "errors": {}, "member_errors": problem,
             "member_email": f.raw(form, "email")},
            status=400,
        )  # fmt: skip
    key = "member_added" if op == "add" else "member_removed"
    raise web.HTTPSeeOther(f"/admin/groups/{group_id}/?done={key}#members")


# ---- delete -----------------------------------------------------------------------------


async def delete_form(request: web.Request) -> web.Response:
    _actor, group_id = await _load(request)
    async with request.app[keys.POOL].connection() as conn:
        group = await groups.get(conn, group_id)
    return render(
        request,
        "groups/delete.html",
        {
            "group": group,
            "breadcrumbs": crumbs(
                ("Groups", "/admin/groups/"),
                (group.name, f"/admin/groups/{group.id}/"),
                ("Delete", None),
            ),
        },
    )


async def delete(request: web.Request) -> web.Response:
    actor, group_id = await _load(request)
    try:
        async with request.app[keys.POOL].connection() as conn:
            await groups.delete(conn, audit_context(request), actor, group_id)
    except PermissionDenied as exc:
        return refused(request, exc)
    raise web.HTTPSeeOther("/admin/groups/?done=group_deleted")
