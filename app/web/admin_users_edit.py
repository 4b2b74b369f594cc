"""Users administration: the edit page (profile, role, active, groups, direct permissions) and delete."""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web

from app.authority import accounts, groups, guards, permissions, users
from app.authority.principal import ROLES, Principal
from app.errors import Conflict, Invalid, PermissionDenied
from app.web import admin_users_forms as f
from app.web import keys
from app.web.admin_users_view import (
    assignable_roles,
    crumbs,
    form_problem,
    manager,
    permission_grid,
    refused,
)
from app.web.auth import audit_context, require_elevated
from app.web.render import render

# The profile fields of the edit form, with their labels and bounds (AUTHZ-1).
PROFILE = (
    ("full_name", "Full name", 200),
    ("display_name", "Display name", 100),
    ("job_title", "Job title", 200),
    ("locale", "Locale", 35),
    ("timezone", "Time zone", 64),
)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/admin/users/{id}/edit", edit_form),
        web.post("/admin/users/{id}/edit", save),
        web.get("/admin/users/{id}/delete", delete_form),
        web.post("/admin/users/{id}/delete", delete),
    ]


async def _load(request: web.Request) -> users.User:
    user_id = f.path_id(request)
    async with request.app[keys.POOL].connection() as conn:
        return await users.get(conn, user_id)


async def _target(request: web.Request) -> tuple[Principal, users.User]:
    actor = await manager(request)
    return actor, await _load(request)


async def _edit_context(
    conn: psycopg.AsyncConnection[Any], actor: Principal, target: users.User, held: list[str]
) -> dict[str, Any]:
    all_groups = await groups.list_groups(conn)
    return {
        "target": target,
        "roles": assignable_roles(actor),
        "groups": [g.name for g in all_groups],
        "grid": permission_grid(permissions.all_permissions(), held),
        "profile_fields": PROFILE,
        "is_self": actor.user_id == target.id,
        "breadcrumbs": crumbs(
            ("Users", "/admin/users/"),
            (target.email, f"/admin/users/{target.id}/"),
            ("Edit", None),
        ),
    }


def _rank_refusal(
    request: web.Request, actor: Principal, target: users.User
) -> web.Response | None:
    """AUTHZ-3 guard 2 up front, so a form for someone out of reach is refused as such (403)
    rather than failing on a role it does not offer (400). One's own profile stays editable."""
    if actor.user_id == target.id:
        return None
    try:
        guards.check_rank(actor, target)
    except PermissionDenied as exc:
        return refused(request, exc)
    return None


async def edit_form(request: web.Request) -> web.Response:
    actor, target = await _target(request)
    if (refusal := _rank_refusal(request, actor, target)) is not None:
        return refusal
    async with request.app[keys.POOL].connection() as conn:
        held = await permissions.direct_permissions(conn, target.id)
        ctx = await _edit_context(conn, actor, target, held)
        member_of = await users.group_names(conn, target.id)
    values = {
        "email": target.email,
        "role": target.role,
        "is_active": target.is_active,
        "groups": member_of,
        **{name: getattr(target, name) for name, _, _ in PROFILE},
    }
    return render(request, "users/edit.html", {**ctx, "values": values, "errors": {}})


def _parse(form: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = {
        name: f.text(form, name, label, max_len=limit) for name, label, limit in PROFILE
    }
    parsed["email"] = f.email(form)
    # The whole ladder is valid input: a role above the actor's own is refused by the
    # role-ceiling guard (403, its own message), not as an unknown value (AUTHZ-3 guard 3).
    parsed["role"] = f.choice(form, "role", "The role", list(ROLES))
    parsed["is_active"] = f.boolean(form, "is_active")
    parsed["groups"] = f.many(form, "groups", "Groups", ctx["groups"])
    parsed["perms"] = f.many(form, "perms", "Permissions", ctx["grid"].names)
    return parsed


async def save(request: web.Request) -> web.Response:
    actor, target = await _target(request)
    if (refusal := _rank_refusal(request, actor, target)) is not None:
        return refusal
    form = await f.read_form(request)
    pool = request.app[keys.POOL]
    async with pool.connection() as conn:
        held = await permissions.direct_permissions(conn, target.id)
        ctx = await _edit_context(conn, actor, target, held)
    values: dict[str, Any] = {name: f.raw(form, name) for name, _, _ in PROFILE}
    values.update(
        email=f.raw(form, "email"),
        role=f.raw(form, "role"),
        is_active=form.get("is_active") is not None,
        groups=[g for g in form.getall("groups", []) if isinstance(g, str)],
    )
    try:
        parsed = _parse(form, ctx)
        if parsed["role"] != target.role or parsed["is_active"] != target.is_active:
            _check_guards(actor, target, parsed)  # a refusal needs no password first
            await require_elevated(request)  # REAUTH-1: role changes and deactivation
        wanted = accounts.UserEdit(
            profile={name: parsed[name] for name in ("email", *(n for n, _, _ in PROFILE))},
            role=parsed["role"],
            is_active=parsed["is_active"],
            groups=parsed["groups"],
            permissions=parsed["perms"],
        )
        async with pool.connection() as conn:
            # One transaction in the service: a refusal by any guard changes nothing.
            changed = await accounts.save_user(
                conn, audit_context(request), actor, target.id, wanted
            )
    except PermissionDenied as exc:
        return refused(request, exc)
    except (Invalid, Conflict) as exc:
        problem, fields = form_problem(exc)
        held_now = [p for p in form.getall("perms", []) if isinstance(p, str)]
        ctx["grid"] = permission_grid(permissions.all_permissions(), held_now or held)
        return render(
            request,
            "users/edit.html",
            {**ctx, "values": values, "errors": fields, "form_errors": problem},
            status=400 if isinstance(exc, Invalid) else 409,
        )
    done = "saved" if changed else "unchanged"
    raise web.HTTPSeeOther(f"/admin/users/{target.id}/?done={done}")


def _check_guards(actor: Principal, target: users.User, parsed: dict[str, Any]) -> None:
    """AUTHZ-3 guards 1–3, in their fixed order, before the re-auth wall; the services check all
    four again inside the transaction that makes the change."""
    new_role = parsed["role"] if parsed["role"] != target.role else None
    deactivate = target.is_active and not parsed["is_active"]
    guards.check_self(actor, target, new_role=new_role, deactivate=deactivate)
    guards.check_rank(actor, target)
    guards.check_role_ceiling(actor, new_role)


# ---- delete (EDIT-5 style confirmation; REAUTH-1) ----------------------------------------


async def _deletable(request: web.Request, actor: Principal) -> users.User:
    target = await _load(request)
    guards.check_self(actor, target, delete=True)
    guards.check_rank(actor, target)
    await require_elevated(request)  # after the guards: a refusal needs no password first
    return target


async def delete_form(request: web.Request) -> web.Response:
    actor = await manager(request)
    try:
        target = await _deletable(request, actor)
    except PermissionDenied as exc:
        return refused(request, exc)
    return render(
        request,
        "users/delete.html",
        {
            "target": target,
            "breadcrumbs": crumbs(
                ("Users", "/admin/users/"),
                (target.email, f"/admin/users/{target.id}/"),
                ("Delete", None),
            ),
        },
    )


async def delete(request: web.Request) -> web.Response:
    actor = await manager(request)
    try:
        target = await _deletable(request, actor)
        async with request.app[keys.POOL].connection() as conn:
            await users.delete(conn, audit_context(request), actor, target.id)
    except PermissionDenied as exc:
        return refused(request, exc)
    raise web.HTTPSeeOther("/admin/users/?done=deleted")
