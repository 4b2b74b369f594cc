"""Invitations (AUTHZ-9): the administrators' invite form and list of open invitations, and the
public page where an invitee chooses a password. Thin handlers over app/authority/invitations.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from app.authority import groups, invitations
from app.authority.passwords import MAX_BYTES
from app.authority.principal import ROLES, Principal
from app.authority.roles import MANAGER_ROLE
from app.authority.setup import HASHER, POLICY
from app.errors import Conflict, Invalid
from app.web import auth, csrf, flash, keys, mfa_keys
from app.web.auth_middleware import now
from app.web.render import render

BASE = "/admin/invitations/"
EMAIL_MAX = 320


def setup(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(BASE, list_page, name="invitations"),
            web.get(BASE + "new", new_form),
            web.post(BASE + "new", create),
            web.post(BASE + "{id}/resend", resend),
            web.post(BASE + "{id}/revoke", revoke),
            web.get("/invite/{token}", accept_page),
            web.post("/invite/{token}", accept_submit),
        ]
    )


# ---- form reading -------------------------------------------------------------------------


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPBadRequest(text="Send the form as a normal web form.")
    try:
        return await request.post()
    except ValueError:
        raise web.HTTPBadRequest(text="The form data could not be read.") from None


def _text(form: MultiDictProxy[Any], name: str, label: str, limit: int) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise Invalid(f"{label} must be text.", fields={name: "must be text"})
    if len(value) > limit or "\x00" in value:
        raise Invalid(f"{label} is too long or holds characters that are not allowed.",
                      fields={name: "too long or not allowed"})  # fmt: skip
    return value


def _path_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


def _assignable(actor: Principal) -> list[str]:
    """Roles at or below the inviter's own: nobody hands out more than they hold (AUTHZ-3)."""
    return [role for role, rank in ROLES.items() if rank <= actor.rank]


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


# ---- administrators' pages -----------------------------------------------------------------


def _crumbs(*items: tuple[str, str | None]) -> list[dict[str, Any]]:
    base = [{"label": "Admin", "url": "/admin/"}, {"label": "Users", "url": "/admin/users/"}]
    return base + [{"label": label, "url": url} for label, url in items]


async def list_page(request: web.Request) -> web.Response:
    await auth.require(request, role=MANAGER_ROLE)
    async with request.app[keys.POOL].connection() as conn:
        rows = await invitations.list_pending(conn)
    at = now(request.app)
    return render(
        request,
        "admin/invitations.html",
        {
            "rows": [(inv, inv.state(at)) for inv in rows],
            "breadcrumbs": _crumbs(("Invitations", None)),
        },
    )


async def _form_context(request: web.Request, actor: Principal) -> dict[str, Any]:
    async with request.app[keys.POOL].connection() as conn:
        all_groups = await groups.list_groups(conn)
    config = request.app[keys.CONFIG]
    return {
        "roles": _assignable(actor),
        "groups": [g.name for g in all_groups],
        "expires_in": invitations.duration_text(config.invitation_ttl),
        "public_url_missing": not config.public_url,
        "breadcrumbs": _crumbs(("Invitations", BASE), ("Invite", None)),
    }


async def new_form(request: web.Request) -> web.Response:
    actor = await auth.require(request, role=MANAGER_ROLE)
    ctx = await _form_context(request, actor)
    values = {"email": "", "role": "user", "groups": []}
    return render(request, "admin/invitation_new.html", {**ctx, "values": values, "errors": {}})


async def create(request: web.Request) -> web.StreamResponse:
    actor = await auth.require(request, role=MANAGER_ROLE)
    form = await _form(request)
    ctx = await _form_context(request, actor)
    chosen = [g for g in form.getall("groups", []) if isinstance(g, str)]
    values: dict[str, Any] = {"email": form.get("email", ""), "role": form.get("role", ""),
                              "groups": chosen}  # fmt: skip
    config = request.app[keys.CONFIG]
    try:
        email = _text(form, "email", "The email address", EMAIL_MAX).strip()
        if not email:
            raise Invalid("Enter the address to invite.", fields={"email": "required"})
        role = _text(form, "role", "The role", 40)
        if role not in ROLES:
            raise Invalid("Choose a role from the list.", fields={"role": "choose one"})
        unknown = sorted(set(chosen) - set(ctx["groups"]))
        if unknown:
            raise Invalid("Choose groups from the list.", fields={"groups": "unknown group"})
        async with request.app[keys.POOL].connection() as conn:
            invitation = await invitations.invite(
                conn, auth.audit_context(request), actor, email=email, role=role,
                groups=chosen, public_url=config.public_url, site_name=config.site_name,
                ttl=config.invitation_ttl, now=now(request.app),
            )  # fmt: skip
    except (Invalid, Conflict) as exc:
        message = _sentence(exc.problem) + (f" {_sentence(exc.fix)}" if exc.fix else "")
        fields = dict(exc.fields) if isinstance(exc, Invalid) else {}
        return render(
            request,
            "admin/invitation_new.html",
            {**ctx, "values": values, "errors": fields, "form_errors": [message]},
            status=400 if isinstance(exc, Invalid) else 409,
        )
    raise flash.see_other(request, BASE, f"Invitation sent to {invitation.email}.")


async def resend(request: web.Request) -> web.StreamResponse:
    actor = await auth.require(request, role=MANAGER_ROLE)
    invitation_id = _path_id(request)
    config = request.app[keys.CONFIG]
    try:
        async with request.app[keys.POOL].connection() as conn:
            invitation = await invitations.resend(
                conn, auth.audit_context(request), actor, invitation_id,
                public_url=config.public_url, site_name=config.site_name,
                ttl=config.invitation_ttl, now=now(request.app),
            )  # fmt: skip
    except (Invalid, Conflict) as exc:
        raise flash.see_other(request, BASE, _sentence(exc.problem), "warning") from None
    text = f"A new link was sent to {invitation.email}; the previous one no longer works."
    raise flash.see_other(request, BASE, text)


async def revoke(request: web.Request) -> web.StreamResponse:
    actor = await auth.require(request, role=MANAGER_ROLE)
    invitation_id = _path_id(request)
    try:
        async with request.app[keys.POOL].connection() as conn:
            invitation = await invitations.revoke(
                conn, auth.audit_context(request), actor, invitation_id, now=now(request.app)
            )
    except Conflict as exc:
        raise flash.see_other(request, BASE, _sentence(exc.problem), "warning") from None
    raise flash.see_other(request, BASE, f"The invitation to {invitation.email} was withdrawn.")


# ---- the invitee's page (public) -----------------------------------------------------------


def _invalid_link(request: web.Request) -> web.Response:
    """One page for an unknown, expired, used, resent or withdrawn link."""
    return render(request, "auth/invitation_invalid.html", status=410)


def _accept_form(
    request: web.Request, email: str, errors: dict[str, str], error: str | None, status: int = 200
) -> web.Response:
    ctx = {"email": email, "errors": errors, "error": error, "rules": request.app[POLICY].rules()}
    return render(request, "auth/invitation.html", ctx, status=status)


@auth.public
async def accept_page(request: web.Request) -> web.StreamResponse:
    async with request.app[keys.POOL].connection() as conn:
        pending = await invitations.peek(conn, request.match_info["token"], now=now(request.app))
    if pending is None:
        return _invalid_link(request)
    return _accept_form(request, pending.email, {}, None)


@auth.public
async def accept_submit(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await _form(request)
    try:
        password = _text(form, "password", "The password", MAX_BYTES)
        confirm = _text(form, "confirm", "The repeated password", MAX_BYTES)
        if password != confirm:
            msg = "The two passwords do not match; type the same password twice."
            raise Invalid(msg, fields={"confirm": msg})
        config = request.app[keys.CONFIG]
        async with request.app[keys.POOL].connection() as conn:
            accepted = await invitations.accept(
                conn, auth.audit_context(request), request.app[HASHER], token=token,
                password=password, policy=request.app[POLICY], absolute=config.session_absolute,
                now=now(request.app),
            )  # fmt: skip
    except invitations.LinkInvalid:
        return _invalid_link(request)
    except Invalid as exc:
        # Every post is counted against the guessing limit first (in the service), so the
        # owner is looked up only to show the form again.
        async with request.app[keys.POOL].connection() as conn:
            pending = await invitations.peek(conn, token, now=now(request.app))
        if pending is None:
            return _invalid_link(request)
        return _accept_form(request, pending.email, dict(exc.fields), exc.problem, status=400)
    # Signed in; a second factor the policy requires for this role is set up next (MFA-4).
    who = Principal(accepted.user_id, accepted.email, accepted.role, "")
    if request.app[mfa_keys.MFA_POLICY].requires(accepted.role):
        target = "/account/two-step"
    else:
        target = "/admin/" if who.enters_admin else "/account"
    response = web.Response(status=303, headers={"Location": target})
    csrf.set_session_cookie(response, request, accepted.session_token)
    flash.flash(response, request, "Welcome: your password is set and you are signed in.")
    return response
