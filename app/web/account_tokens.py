"""Own API tokens on the account area: make (after a password check), list with last use, revoke.

Thin: app/authority/tokens.py owns the rules and the transactions. The new token is shown on
the answer to the form that made it, once; it is never stored, so it cannot be shown again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.authority import tokens, users
from app.authority.principal import BYPASS_ROLE
from app.errors import Invalid, NotFound, PermissionDenied
from app.web import auth, keys
from app.web.auth_middleware import now
from app.web.render import render

DAY_CHOICES = (7, 30, 90, 366)
PATH = "/account/tokens"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "never"


async def _page(
    request: web.Request,
    *,
    new_token: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    who = auth.principal(request)
    assert who is not None
    at = now(request.app)
    administrator = who.at_least(BYPASS_ROLE)
    async with request.app[keys.POOL].connection() as conn:
        rows = await tokens.list_for_user(conn, who.user_id)
        held = await tokens.grantable(conn, who.user_id, who.role) if who.enters_admin else []
        others = await tokens.list_made_for_others(conn, who.user_id) if administrator else []
        owners = {}
        for t in others:
            if t.user_id not in owners:
                found = await users.find(conn, t.user_id)
                owners[t.user_id] = found.email if found else f"user {t.user_id}"
    chosen = set((form or {}).get("scope") or tokens.read_only_scope(held))
    ctx = {
        "page_title": "API tokens",
        "active_tab": "tokens",
        "can_have_tokens": who.enters_admin,
        "elevated": auth.is_elevated(auth.session(request), at),
        "new_token": new_token,
        "errors": errors or {},
        "name": (form or {}).get("name", ""),
        "days": str((form or {}).get("days") or tokens.DEFAULT_DAYS),
        "day_options": [(str(d), f"{d} days") for d in DAY_CHOICES],
        "permissions": [{"name": p, "checked": p in chosen} for p in held],
        "administrator": administrator,
        "for_email": (form or {}).get("for_email", ""),
        "rows": _rows(rows, at),
        "others": [
            {**r, "owner": owners[t.user_id]}
            for t, r in zip(others, _rows(others, at), strict=True)
        ],
    }
    return render(request, "account/tokens.html", ctx, status=status)


def _rows(found: list[tokens.ApiToken], at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": t.id,
            "name": t.name,
            "prefix": t.prefix,
            "scope": ", ".join(t.scope),
            "kind": "read-only" if t.read_only else "read and write",
            "state": t.state(at),
            "created": _when(t.created_at),
            "expires": _when(t.expires_at),
            "last_used": _when(t.last_used_at),
            "last_ip": t.last_used_ip or "",
        }
        for t in found
    ]


async def tokens_page(request: web.Request) -> web.Response:
    return await _page(request)


async def tokens_submit(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    assert who is not None
    form = await request.post()
    action = form.get("action")
    ctx = auth.audit_context(request)
    if action == "revoke":
        raw = form.get("token_id")
        if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 18:
            raise Invalid("Choose a token to revoke from the list.")
        async with request.app[keys.POOL].connection() as conn:
            try:
                await tokens.revoke(conn, ctx, who, int(raw), now=now(request.app))
            except NotFound:
                raise Invalid("Choose one of your tokens to revoke.") from None
        return web.Response(status=303, headers={"Location": PATH})
    if action != "create":
        raise Invalid("Choose one of the actions on the page.")
    # Minting a credential that outlives this session: the password again first.
    await auth.require_elevated(request, now=now(request.app))
    name = str(form.get("name", ""))[:200]
    for_email = str(form.get("for_email", "")).strip()[:320]
    raw_days = str(form.get("days", ""))
    scope = [str(v) for v in form.getall("scope", [])]
    values: dict[str, Any] = {
        "name": name,
        "days": raw_days,
        "scope": scope,
        "for_email": for_email,
    }
    days = int(raw_days) if raw_days.isdigit() and len(raw_days) < 5 else 0
    try:
        async with request.app[keys.POOL].connection() as conn:
            # An administrator may make a token for another account (a service account).
            owner = await users.get_by_email(conn, for_email) if for_email else None
            _made, token = await tokens.create(
                conn, ctx, who, owner_id=owner.id if owner else who.user_id, name=name,
                days=days, scope=scope, now=now(request.app),
            )  # fmt: skip
    except NotFound as exc:
        return await _page(request, errors={"for_email": exc.problem}, form=values, status=400)
    except PermissionDenied as exc:
        return await _page(request, errors={"for_email": exc.problem}, form=values, status=403)
    except Invalid as exc:
        errors = dict(exc.fields) or {"scope": exc.problem}
        return await _page(request, errors=errors, form=values, status=400)
    return await _page(request, new_token=token)


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, tokens_page)
    app.router.add_post(PATH, tokens_submit)
