"""Two-step sign-in pages: the code step after the password and the own-account set-up page.

Thin handlers over app/authority/mfa.py. With `mfa_policy = "off"` none of these routes exist
and the account pages do not mention the feature.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from app import audit
from app.authority import login, mfa, reauth, sessions
from app.errors import Invalid
from app.web import auth, csrf, keys, mfa_keys
from app.web.account import _after_login, _form, _redirect, _text, _throttle
from app.web.auth_middleware import now
from app.web.render import render

WRONG_CODE = "That code is not right, was used already, or this account cannot sign in now."
PAGE = "/account/two-step"


def ring(app: web.Application) -> mfa.KeyRing | None:
    """The key ring when the feature is on; None when `mfa_policy` is off."""
    return app.get(mfa_keys.MFA_RING)


def _ring(request: web.Request) -> mfa.KeyRing:
    found = ring(request.app)
    assert found is not None  # the routes exist only when the feature is on
    return found


def _policy(request: web.Request) -> mfa.Policy:
    return request.app[mfa_keys.MFA_POLICY]


# ---- the sign-in step (MFA-3) -------------------------------------------------------------


async def code_page(request: web.Request) -> web.StreamResponse:
    info = auth.session(request)
    if info is None or info.trust != "pending":
        raise web.HTTPSeeOther("/account")
    back = reauth.safe_return_to(request.query.get("return_to"), "")
    return render(request, "auth/mfa.html", {"error": None, "return_to": back})


async def code_submit(request: web.Request) -> web.StreamResponse:
    info = auth.session(request)
    if info is None or info.trust != "pending":
        raise web.HTTPSeeOther("/account")
    form = await _form(request)
    # The page asked for before signing in survives this step too (only a local path).
    back = reauth.safe_return_to(form.get("return_to"), "")
    try:
        code = _text(form, "code", "The code", 20)
    except Invalid as exc:
        ctx = {"error": exc.problem, "return_to": back}
        return render(request, "auth/mfa.html", ctx, status=400)
    config = request.app[keys.CONFIG]
    result = None
    async with request.app[keys.POOL].connection() as conn:
        current = await sessions.get(conn, info.id)
        if current is not None and code.strip():
            with contextlib.suppress(LookupError):
                result = await mfa.complete_sign_in(
                    conn, auth.audit_context(request), _ring(request), current=current,
                    code=code, absolute=config.session_absolute, now=now(request.app),
                    throttle=_throttle(request),
                )  # fmt: skip
    if result is None:
        # One answer for a wrong code, a used one and a locked account (LOGIN-1).
        ctx = {"error": WRONG_CODE, "return_to": back}
        return render(request, "auth/mfa.html", ctx, status=401)
    token, _new, _kind = result
    who = auth.principal(request)
    response = _redirect(_after_login(who is not None and who.enters_admin, back))
    csrf.set_session_cookie(response, request, token)
    return response


# ---- own account: set up, new backup codes, turn off (MFA-1, MFA-2) -------------------------


def _return_to(request: web.Request, posted: object = None) -> str:
    """The page a user held for set-up first asked for ("" if none): a safe local path, never
    this page itself, and never an admin page for an account that cannot open the admin."""
    who = auth.principal(request)
    back = reauth.safe_return_to(posted or request.query.get("return_to"), "")
    if not back or back == PAGE or back.startswith((PAGE + "/", PAGE + "?")):
        return ""
    return _after_login(who is not None and who.enters_admin, back)


async def _posted_return_to(request: web.Request) -> str:
    """`return_to` from a set-up form (a post without a form body simply has none)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _return_to(request)
    return _return_to(request, (await _form(request)).get("return_to"))


def _with_return(back: str) -> str:
    return PAGE + (f"?{urlencode({'return_to': back})}" if back else "")


async def _page(
    request: web.Request,
    *,
    back: str = "",
    secret: str | None = None,
    codes: list[str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        state = await mfa.state(conn, _ring(request), who.user_id)
    secret = secret or state.pending_secret
    qr = None
    if secret is not None and not state.enabled:
        issuer = request.app[keys.CONFIG].site_name
        qr = mfa.qr_svg(mfa.provisioning_uri(secret, who.email, issuer))
    ctx: dict[str, Any] = {
        "state": state,
        "required": _policy(request).requires(who.role),
        "secret": None if state.enabled else secret,
        "qr_svg": qr,
        "codes": codes,
        "error": error,
        "notice": None,
        "return_to": back,
    }
    return render(request, "account/two_step.html", ctx, status=status)


async def account_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, back=_return_to(request))


async def _wall(request: web.Request, back: str = "") -> None:
    """Every change to the second factor needs a recent password (and a code where one is set
    up); after re-auth the browser comes back to this page, whose forms are posts."""
    await auth.require_elevated(request, now=now(request.app), back=_with_return(back))


async def start_submit(request: web.Request) -> web.StreamResponse:
    back = await _posted_return_to(request)
    await _wall(request, back)
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        secret = await mfa.start_enrolment(conn, _ring(request), who.user_id)
    return await _page(request, secret=secret, back=back)


async def confirm_submit(request: web.Request) -> web.StreamResponse:
    back = await _posted_return_to(request)
    await _wall(request, back)
    who = auth.principal(request)
    assert who is not None
    form = await _form(request)
    try:
        code = _text(form, "code", "The code", 20)
        async with request.app[keys.POOL].connection() as conn:
            codes = await mfa.confirm_enrolment(
                conn, auth.audit_context(request), _ring(request), who.user_id, code,
                now=now(request.app),
            )  # fmt: skip
    except Invalid as exc:
        return await _page(request, error=exc.problem, status=400, back=back)
    return await _page(request, codes=codes, back=back)


async def regenerate_submit(request: web.Request) -> web.StreamResponse:
    await _wall(request)
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        codes = await mfa.regenerate_backup_codes(
            conn, auth.audit_context(request), _ring(request), who.user_id
        )
    return await _page(request, codes=codes)


async def disable_submit(request: web.Request) -> web.StreamResponse:
    await _wall(request)
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        await mfa.disable_own(conn, auth.audit_context(request), _policy(request), who)
    raise web.HTTPSeeOther(PAGE)


def reauth_asks_code(request: web.Request) -> bool:
    """Whether the re-auth page must ask for a code as well as the password."""
    who = auth.principal(request)
    return ring(request.app) is not None and who is not None and who.mfa_enabled


def _template_context(request: web.Request) -> dict[str, Any]:
    return {"mfa_feature": ring(request.app) is not None}


def _sign_in(app: web.Application, policy: mfa.Policy) -> login.SecondFactor:
    """What sign-in needs: how long a session owing a code lives, and the grace period check."""
    config = app[keys.CONFIG]

    async def overdue(
        conn: login.Conn, ctx: audit.Context, account: login.Account, at: datetime
    ) -> bool:
        return await mfa.enrolment_overdue(
            conn, ctx, policy, user_id=account.id, email=account.email, role=account.role,
            grace=config.mfa_grace_period, now=at,
        )  # fmt: skip

    return login.SecondFactor(pending_lifetime=config.mfa_pending_lifetime, overdue=overdue)


def setup(app: web.Application) -> None:
    config = app[keys.CONFIG]
    policy = mfa.Policy.parse(config.mfa_policy)
    app[mfa_keys.MFA_POLICY] = policy
    app[keys.RENDERER].context_hooks.append(_template_context)
    if not policy.enabled:
        return
    # The whole key ring: new enrolments under the signing key, older ones under theirs.
    app[mfa_keys.MFA_RING] = mfa.KeyRing.from_secret_keys(*(config.ring or (config.secret_key,)))
    app[mfa_keys.MFA_SIGN_IN] = _sign_in(app, policy)
    r = app.router
    r.add_get("/mfa", code_page, name="mfa")
    r.add_post("/mfa", code_submit)
    r.add_get(PAGE, account_page)
    r.add_post("/account/two-step/start", start_submit)
    r.add_post("/account/two-step/confirm", confirm_submit)
    r.add_post("/account/two-step/regenerate", regenerate_submit)
    r.add_post("/account/two-step/disable", disable_submit)
