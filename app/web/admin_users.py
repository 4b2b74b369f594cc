"""Users administration: list, create and profile pages; routes of the whole users area (AUTHZ-7)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app import audit
from app.authority import groups, guards, passwords, permissions, sessions, users
from app.authority.principal import ROLES, Principal
from app.authority.roles import MANAGER_ROLE
from app.authority.setup import HASHER, POLICY
from app.errors import Conflict, Invalid, PermissionDenied
from app.web import admin_users_actions, admin_users_edit, keys
from app.web import admin_users_forms as f
from app.web.admin_users_view import (
    assignable_roles,
    crumbs,
    form_problem,
    has_template,
    manager,
    notices,
    refused,
)
from app.web.auth import add_nav_provider, audit_context
from app.web.render import render

PAGE_SIZE = 50
ACTIVE_FILTER = {"": None, "yes": True, "no": False}


def setup(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/admin/users/", list_page, name="users_list"),
            web.get("/admin/users/new", new_form),
            web.post("/admin/users/new", create_user),
            web.get("/admin/users/{id}/", profile, name="user_profile"),
            *admin_users_edit.routes(),
            *admin_users_actions.routes(),
        ]
    )
    add_nav_provider(app, nav_items)


async def nav_items(request: web.Request, who: Principal) -> list[dict[str, Any]]:
    """Sidebar entries for users and groups, shown to those who may open them (AUTHZ-7)."""
    if not who.at_least(MANAGER_ROLE):
        return []
    entries = (("Users", "/admin/users/", "user"), ("Groups", "/admin/groups/", "users"))
    return [
        {
            "label": label,
            "url": url,
            "icon": icon,
            "section": "Administration",
            "active": request.path.startswith(url),
        }
        for label, url, icon in entries
    ]


# ---- list -------------------------------------------------------------------------------


def _encode_after(user: users.User) -> str:
    return base64.urlsafe_b64encode(f"{user.id}:{user.email}".encode()).decode().rstrip("=")


def _decode_after(raw: str) -> tuple[str, int] | None:
    """The (email, id) keyset position of an opaque cursor; forged ones are a 400 (SEC-3)."""
    if not raw:
        return None
    bad = Invalid("the page link is damaged", fix="go back to the first page of the list")
    if len(raw) > 600:
        raise bad
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    raw_id, _, email = text.partition(":")
    if not raw_id.isdigit() or not email or len(raw_id) > 18 or not email.isprintable():
        raise bad
    return email, int(raw_id)


async def list_page(request: web.Request) -> web.Response:
    await manager(request)
    q = f.query_text(request, "q", "The search", max_len=100)
    role = (
        f.choice(request.query, "role", "The role filter", ["", *ROLES])
        if ("role" in request.query)
        else ""
    )
    active = (
        f.choice(request.query, "active", "The active filter", list(ACTIVE_FILTER))
        if ("active" in request.query)
        else ""
    )
    after = _decode_after(f.query_text(request, "after", "The page cursor", max_len=600))
    async with request.app[keys.POOL].connection() as conn:
        rows = await users.list_users(
            conn,
            role=role or None,
            active=ACTIVE_FILTER[active],
            search=q or None,
            limit=PAGE_SIZE + 1,
            after=after,
        )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    base = {k: v for k, v in {"q": q, "role": role, "active": active}.items() if v}
    next_url = None
    if more:
        next_url = str(request.rel_url.with_query({**base, "after": _encode_after(rows[-1])}))
    first_url = str(request.rel_url.with_query(base)) if after else None
    return render(
        request,
        "users/list.html",
        {
            "rows": rows,
            "q": q,
            "role": role,
            "active": active,
            "roles": list(ROLES),
            "filtered": bool(base),
            "next_url": next_url,
            "first_url": first_url,
            "now": datetime.now(UTC),
            "flashes": notices(request),
            "breadcrumbs": crumbs(("Users", None)),
        },
    )


# ---- create -----------------------------------------------------------------------------


async def _create_context(request: web.Request, actor: Principal) -> dict[str, Any]:
    async with request.app[keys.POOL].connection() as conn:
        all_groups = await groups.list_groups(conn)
    return {
        "roles": assignable_roles(actor),
        "groups": [g.name for g in all_groups],
        "min_length": request.app[keys.CONFIG].password_min_length,
        "breadcrumbs": crumbs(("Users", "/admin/users/"), ("New user", None)),
    }


async def new_form(request: web.Request) -> web.Response:
    actor = await manager(request)
    ctx = await _create_context(request, actor)
    values = {"role": "user", "password_mode": "onetime", "groups": []}
    return render(request, "users/new.html", {**ctx, "values": values, "errors": {}})


async def create_user(request: web.Request) -> web.Response:
    actor = await manager(request)
    form = await f.read_form(request)
    ctx = await _create_context(request, actor)
    values: dict[str, Any] = {
        name: f.raw(form, name) for name in ("email", "full_name", "display_name", "role")
    }
    values["password_mode"] = f.raw(form, "password_mode", "onetime")
    values["groups"] = [g for g in form.getall("groups", []) if isinstance(g, str)]
    try:
        email = f.email(form)
        profile = {
            "full_name": f.text(form, "full_name", "Full name", max_len=200),
            "display_name": f.text(form, "display_name", "Display name", max_len=100),
        }
        # The whole ladder is valid input; a role above the actor's own is the role-ceiling
        # guard's refusal (AUTHZ-3 guard 3, a 403 with its own message), not a bad value.
        role = f.choice(form, "role", "The role", list(ROLES))
        guards.check_role_ceiling(actor, role)  # before Argon2: a refusal costs no hash
        chosen = f.many(form, "groups", "Groups", ctx["groups"])
        mode = f.choice(form, "password_mode", "The password choice", ["onetime", "set"])
        one_time = passwords.generate() if mode == "onetime" else None
        if one_time is not None:
            password_hash = await request.app[HASHER].hash(one_time)
        else:
            password_hash = await _chosen_password(request, form, email)
        async with request.app[keys.POOL].connection() as conn:
            user = await users.create(
                conn,
                audit_context(request),
                actor,
                email=email,
                role=role,
                password_hash=password_hash,
                must_change_password=one_time is not None,
                profile=profile,
                groups=chosen,
            )
    except PermissionDenied as exc:
        return refused(request, exc)
    except (Invalid, Conflict) as exc:
        problem, fields = form_problem(exc)
        status = 400 if isinstance(exc, Invalid) else 409
        return render(
            request,
            "users/new.html",
            {**ctx, "values": values, "errors": fields, "form_errors": problem},
            status=status,
        )
    if one_time is None:
        raise web.HTTPSeeOther(f"/admin/users/{user.id}/?done=created")
    # REC-5/OPS-8 style: the one-time password is shown once, on this response only.
    return render(
        request,
        "users/one_time.html",
        {
            "target": user,
            "password": one_time,
            "heading": "User created",
            "breadcrumbs": crumbs(("Users", "/admin/users/"), (user.email, None)),
        },
    )


async def _chosen_password(request: web.Request, form: Any, email: str) -> str:
    password = form.get("password", "")
    if not isinstance(password, str) or password != form.get("password_confirm", ""):
        raise Invalid(
            "the two passwords differ",
            fields={"password_confirm": "type the same password twice"},
        )
    return await passwords.hash_new(request.app[HASHER], request.app[POLICY], password, email=email)


# ---- profile ----------------------------------------------------------------------------


async def profile(request: web.Request) -> web.Response:
    actor = await manager(request)
    user_id = f.path_id(request)
    config = request.app[keys.CONFIG]
    show_activity = has_template(request, "audit/_activity.html")
    async with request.app[keys.POOL].connection() as conn:
        target = await users.get(conn, user_id)
        effective = await permissions.effective_permissions(conn, user_id)
        member_of = await users.group_names(conn, user_id)
        live = await sessions.list_for_user(conn, user_id, idle=config.session_idle)
        activity = await audit.user_activity(conn, user_id, 20) if show_activity else []
    now = datetime.now(UTC)
    return render(
        request,
        "users/profile.html",
        {
            "target": target,
            "effective": sorted(effective.items()),
            "member_of": member_of,
            "sessions": live,
            "activity": activity,
            "show_activity": show_activity,
            "may_act": actor.user_id != target.id and actor.rank > ROLES[target.role],
            "is_self": actor.user_id == target.id,
            "locked": target.is_locked(now),
            "now": now,
            "flashes": notices(request),
            "breadcrumbs": crumbs(("Users", "/admin/users/"), (target.email, None)),
        },
    )
