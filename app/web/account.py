"""Sign-in, recovery, re-auth and own-account pages: thin handlers over the authority services."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from app import audit
from app.authority import login, reauth, recovery, sessions, sweeper, users
from app.authority.passwords import MAX_BYTES
from app.authority.principal import Principal
from app.authority.setup import HASHER, POLICY
from app.errors import Invalid
from app.web import auth, csrf, flash, forms, keys, metrics, mfa_keys
from app.web.auth_middleware import now, template_context
from app.web.render import render

# Notices shown after a redirect: a closed list, so no text from the URL reaches the page.
# Every other notice is the signed flash. Signing out sends Clear-Site-Data, which drops the
# flash cookie with the rest: these two travel in the address instead (fixed texts, no input).
NOTICES = {
    "signed_out": ("success", "You are signed out."),
    "signed_out_everywhere": ("success", "You are signed out on every device."),
}
LOGIN_FAILED = (
    "The email or password is not right, or this account cannot sign in at the moment. "
    "Check both and try again, or reset your password."
)
SETUP_OVERDUE = (
    "Your account must use two-step sign-in, and the time to set it up has passed. "
    "Ask an administrator to let you set it up."
)
EMAIL_MAX = 320


# ---- form reading (SEC-3) ----------------------------------------------------------------


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    """The one form reader, for web forms only: a JSON or plain-text body is not a sign-in."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPBadRequest(text="Send the form as a normal web form.")
    return await forms.read_form(request)


def _text(form: MultiDictProxy[Any], name: str, label: str, limit: int) -> str:
    """A text field: absent reads as empty; files, oversized values and NUL are refused."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise Invalid(f"{label} must be text.", fields={name: "must be text"})
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit * 4:
        raise Invalid(f"{label} is too long.", fields={name: "too long"})
    if "\x00" in value:
        raise Invalid(f"{label} contains characters that are not allowed.", fields={name: "bad"})
    return value


def _email(form: MultiDictProxy[Any]) -> str:
    value = _text(form, "email", "The email address", EMAIL_MAX).strip()
    if not value:
        raise Invalid("Enter your email address.", fields={"email": "required"})
    if not value.isprintable():
        raise Invalid("That is not an email address.", fields={"email": "not an address"})
    return value


def _password(form: MultiDictProxy[Any], name: str, label: str = "The password") -> str:
    value = _text(form, name, label, MAX_BYTES)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise Invalid(f"{label} is too long.", fields={name: "too long"})
    return value


def _notice(request: web.Request) -> dict[str, str] | None:
    found = NOTICES.get(request.query.get("notice", ""))
    return {"kind": found[0], "text": found[1]} if found else None


def landing(who: Principal) -> str:
    return "/admin/" if who.enters_admin else "/account"


def _after_login(role_enters_admin: bool, return_to: object) -> str:
    default = "/admin/" if role_enters_admin else "/account"
    target = reauth.safe_return_to(return_to, default)
    if not role_enters_admin and target.startswith("/admin"):
        return default
    return target


# How long every "forgot password" answer takes at least, whatever the address (REC-1).
FORGOT_FLOOR = 0.25


def _hasher(request: web.Request) -> Any:
    return request.app[HASHER]


def _throttle(request: web.Request) -> login.Throttle:
    return login.Throttle.from_config(request.app[keys.CONFIG])


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def _redirect(location: str) -> web.Response:
    """A 303 returned, not raised: raised redirects are re-made by the error middleware and
    would lose the cookies set on them."""
    return web.Response(status=303, headers={"Location": location})


def _signed_out(request: web.Request, location: str) -> web.Response:
    """SESS-8: the cookie is cleared and the browser told to drop cached pages and cookies."""
    response = _redirect(location)
    csrf.clear_session_cookie(response, request)
    response.headers["Clear-Site-Data"] = '"cache", "cookies"'
    return response


# ---- sign in and out (LOGIN, SESS-8) ----------------------------------------------------


@auth.public
async def login_page(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    if who is not None:
        raise web.HTTPSeeOther(_after_login(who.enters_admin, request.query.get("return_to")))
    return _login_form(request)


def _login_form(
    request: web.Request,
    error: str | None = None,
    status: int = 200,
    return_to: object = None,
    email: object = None,
) -> web.Response:
    back = reauth.safe_return_to(return_to or request.query.get("return_to"), "")
    # After a failure the address stays in the field (what the person typed, the same for
    # every cause, so it tells nothing about the account) and the cursor goes to the password.
    typed = email[:320] if isinstance(email, str) and email.isprintable() else ""
    ctx = {
        "return_to": back,
        "error": error,
        "notice": None if error else _notice(request),
        "email": typed,
    }
    return render(request, "auth/login.html", ctx, status=status)


@auth.public
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    posted_back = form.get("return_to")
    try:
        return_to = _text(form, "return_to", "The return address", 2000)
        email, password = _email(form), _password(form, "password")
    except Invalid as exc:
        return _login_form(request, exc.problem, 400, posted_back, form.get("email"))
    if not password:
        return _login_form(request, "Enter your password.", 400, return_to, form.get("email"))
    config = request.app[keys.CONFIG]
    info = auth.session(request)
    try:
        result = await login.login(
            request.app[keys.POOL].connection, auth.audit_context(request), _hasher(request),
            email=email, password=password, now=now(request.app),
            absolute=config.session_absolute, current=(info.id, info.user_id) if info else None,
            site_name=config.site_name, throttle=_throttle(request),
            second_factor=request.app.get(mfa_keys.MFA_SIGN_IN),
        )  # fmt: skip
    except login.RateLimited as exc:
        metrics.count_signin("failed")
        wait = int(exc.retry_after)
        message = f"Too many sign-in attempts from your network. Try again in {wait} seconds."
        response = _login_form(request, message, 429, return_to, form.get("email"))
        response.headers["Retry-After"] = str(wait)
        return response
    metrics.count_signin(
        "succeeded" if result.ok else "locked" if result.reason == "locked" else "failed"
    )
    if result.reason == "enrolment_overdue":
        # The password was right: say what the account needs (MFA-4).
        return _login_form(request, SETUP_OVERDUE, 403, return_to, form.get("email"))
    if not result.ok or result.account is None or result.token is None:
        # LOGIN-1: one answer for every cause.
        return _login_form(request, LOGIN_FAILED, 401, return_to, form.get("email"))
    if result.session is not None and result.session.trust == "pending":
        # MFA-3: the code before anything else; the page asked for waits for that step.
        back = reauth.safe_return_to(return_to, "")
        response = _redirect("/mfa?return_to=" + quote(back, safe="/") if back else "/mfa")
        csrf.set_session_cookie(response, request, result.token)
        return response
    account = result.account
    enters_admin = Principal(account.id, account.email, account.role, "").enters_admin
    target = (
        "/must-change-password"
        if account.must_change_password
        else _after_login(enters_admin, return_to)
    )
    response = _redirect(target)
    csrf.set_session_cookie(response, request, result.token)
    return response


@auth.public
async def logout(request: web.Request) -> web.StreamResponse:
    info = auth.session(request)
    if info is not None and not csrf.bound_to_session(request):
        raise web.HTTPForbidden(text=csrf.REFUSED)  # SEC-1: this session's token only
    if info is not None:
        async with request.app[keys.POOL].connection() as conn:
            await sessions.revoke(
                conn, auth.audit_context(request), reason="logout", session_id=info.id,
                now=now(request.app),
            )  # fmt: skip
    return _signed_out(request, "/login?notice=signed_out")


# ---- recovery (REC-1..3) ------------------------------------------------------------------


@auth.public
async def forgot_page(request: web.Request) -> web.StreamResponse:
    return render(request, "auth/forgot.html", {"error": None})


@auth.public
async def forgot_submit(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    try:
        email = _email(form)
    except Invalid as exc:
        return render(request, "auth/forgot.html", {"error": exc.problem}, status=400)
    config = request.app[keys.CONFIG]
    started = time.monotonic()
    async with request.app[keys.POOL].connection() as conn:
        await recovery.request_reset(
            conn, auth.audit_context(request), email=email, public_url=config.public_url,
            site_name=config.site_name, now=now(request.app),
        )  # fmt: skip
    # REC-1: the same redirect whatever happened, and after the same time: a known address
    # does more work (token, mail, audit) than an unknown one, so every answer waits for a
    # floor well above either. Sleeping costs no CPU.
    await asyncio.sleep(max(0.0, FORGOT_FLOOR - (time.monotonic() - started)))
    raise web.HTTPSeeOther("/forgot/sent")


@auth.public
async def forgot_sent(request: web.Request) -> web.StreamResponse:
    return render(request, "auth/sent.html")


def _invalid_link(request: web.Request) -> web.Response:
    return render(request, "auth/invalid_link.html", status=410)


@auth.public
async def reset_page(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    async with request.app[keys.POOL].connection() as conn:
        pending = await recovery.peek(conn, token, now=now(request.app))
    if pending is None:
        return _invalid_link(request)
    return render(request, "auth/reset.html", {"errors": {}, "error": None})


@auth.public
async def reset_submit(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await _form(request)
    try:
        password = _password(form, "password", "The new password")
        confirm = _password(form, "confirm", "The repeated password")
        if password != confirm:
            msg = "The two passwords do not match; type the same password twice."
            raise Invalid(msg, fields={"confirm": msg})
    except Invalid as exc:
        ctx = {"errors": exc.fields, "error": exc.problem}
        return render(request, "auth/reset.html", ctx, status=400)
    async with request.app[keys.POOL].connection() as conn:
        try:
            await recovery.consume(
                conn, auth.audit_context(request), _hasher(request), token=token,
                new_password=password, policy=request.app[POLICY], now=now(request.app),
                throttle=_throttle(request),
            )  # fmt: skip
        except recovery.LinkInvalid:
            return _invalid_link(request)
        except Invalid as exc:
            ctx = {"errors": exc.fields, "error": exc.problem}
            return render(request, "auth/reset.html", ctx, status=400)
    # REC-2: nobody is signed in; the user signs in with the new password.
    raise flash.see_other(request, "/login", "Your password was changed. Sign in with the new one.")


# ---- forced change (LOGIN-7), password change (REC-4), re-auth (REAUTH) --------------------


async def must_change_page(request: web.Request) -> web.StreamResponse:
    ctx: dict[str, object] = {"errors": {}, "error": None, "rules": request.app[POLICY].rules()}
    return render(request, "auth/must_change.html", ctx)


async def _change(request: web.Request, *, forced: bool) -> Invalid | None:
    who = auth.principal(request)
    assert who is not None
    form = await _form(request)
    try:
        old = "" if forced else _password(form, "old_password", "The current password")
        new = _password(form, "new_password", "The new password")
        confirm = _password(form, "confirm", "The repeated password")
        if not forced and not old:
            raise Invalid("Enter your current password.", fields={"old_password": "required"})
        async with request.app[keys.POOL].connection() as conn:
            await recovery.change_password(
                conn, auth.audit_context(request), _hasher(request), user_id=who.user_id,
                session_id=who.session_id, old_password=old, new_password=new, confirm=confirm,
                policy=request.app[POLICY], forced=forced, now=now(request.app),
                throttle=_throttle(request),
            )  # fmt: skip
    except Invalid as exc:
        return exc
    return None


async def must_change_submit(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    assert who is not None
    if not who.must_change_password:
        raise web.HTTPSeeOther(landing(who))
    problem = await _change(request, forced=True)
    if problem is not None:
        ctx = {
            "errors": problem.fields,
            "error": problem.problem,
            "rules": request.app[POLICY].rules(),
        }
        return render(request, "auth/must_change.html", ctx, status=400)
    raise flash.see_other(request, landing(who), "Your new password is set.")


async def password_page(request: web.Request) -> web.StreamResponse:
    ctx = {
        "errors": {},
        "error": None,
        "notice": _notice(request),
        "rules": request.app[POLICY].rules(),
    }
    return render(request, "account/password.html", ctx)


async def password_submit(request: web.Request) -> web.StreamResponse:
    problem = await _change(request, forced=False)
    if problem is not None:
        ctx = {
            "errors": problem.fields,
            "error": problem.problem,
            "notice": None,
            "rules": request.app[POLICY].rules(),
        }
        return render(request, "account/password.html", ctx, status=400)
    raise flash.see_other(
        request, "/account/password", "Your password was changed. Your other sessions ended."
    )


def _back(request: web.Request, value: object) -> str:
    who = auth.principal(request)
    return reauth.safe_return_to(value, landing(who) if who else reauth.DEFAULT_RETURN)


def _asks_code(request: web.Request) -> bool:
    """Re-auth asks for a second-factor code too when the user set one up (REAUTH-1)."""
    who = auth.principal(request)
    return mfa_keys.MFA_RING in request.app and who is not None and who.mfa_enabled


async def reauth_page(request: web.Request) -> web.StreamResponse:
    return_to = _back(request, request.query.get("return_to"))
    ctx = {"return_to": return_to, "error": None, "ask_code": _asks_code(request)}
    return render(request, "auth/reauth.html", ctx)


async def reauth_submit(request: web.Request) -> web.StreamResponse:
    info = auth.session(request)
    assert info is not None
    form = await _form(request)
    try:
        password = _password(form, "password")
        code = _text(form, "code", "The code", 20)
        return_to = _back(request, _text(form, "return_to", "The return address", 2000))
    except Invalid as exc:
        ctx = {
            "return_to": _back(request, None),
            "error": exc.problem,
            "ask_code": _asks_code(request),
        }
        return render(request, "auth/reauth.html", ctx, status=400)
    config = request.app[keys.CONFIG]
    async with request.app[keys.POOL].connection() as conn:
        current = await sessions.get(conn, info.id)
        result = None
        if current is not None and password:
            with contextlib.suppress(LookupError):
                result = await reauth.elevate(
                    conn, auth.audit_context(request), _hasher(request), current=current,
                    password=password, window=config.reauth_window, now=now(request.app),
                    throttle=_throttle(request), code=code,
                    ring=request.app.get(mfa_keys.MFA_RING),
                )  # fmt: skip
    if result is None:
        asks = _asks_code(request)
        error = "That password or code is not right." if asks else "That password is not right."
        ctx = {"return_to": return_to, "error": error, "ask_code": asks}
        return render(request, "auth/reauth.html", ctx, status=401)
    token, _new = result
    response = _redirect(return_to)
    csrf.set_session_cookie(response, request, token)
    return response


# ---- own account (SESS-7) ---------------------------------------------------------------


async def account_page(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        user = await users.get(conn, who.user_id)
        groups = await users.group_names(conn, who.user_id)
        live = await sessions.list_for_user(
            conn, who.user_id, now(request.app), idle=request.app[keys.CONFIG].session_idle
        )
    ctx = {
        "account": user,
        "groups": groups,
        "session_count": len(live),
        "password_changed": _when(user.password_changed_at),
        "last_login": _when(user.last_login_at),
        "member_since": _when(user.created_at),
        "notice": _notice(request),
    }
    return render(request, "account/index.html", ctx)


_UA_BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
                ("Safari/", "Safari"), ("curl/", "curl"), ("Python", "a script"))  # fmt: skip
_UA_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"),
               ("iPad", "iPadOS"), ("Mac OS X", "macOS"), ("Linux", "Linux"))  # fmt: skip


def device(user_agent: str | None) -> str:
    """A short, human description of a user agent ("Firefox on Linux")."""
    ua = user_agent or ""
    browser = next((name for key, name in _UA_BROWSERS if key in ua), None)
    system = next((name for key, name in _UA_SYSTEMS if key in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (re.sub(r"\s+", " ", ua)[:60] or "Unknown device")


async def sessions_page(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    assert who is not None
    async with request.app[keys.POOL].connection() as conn:
        live = await sessions.list_for_user(
            conn, who.user_id, now(request.app), idle=request.app[keys.CONFIG].session_idle
        )
    rows = [
        {
            "id": s.id,
            "device": device(s.user_agent),
            "ip": s.ip or "—",
            "created": _when(s.created_at),
            "last_seen": _when(s.last_seen_at),
            "current": s.id == who.session_id,
        }
        for s in live
    ]
    rows.sort(key=lambda r: not r["current"])
    return render(request, "account/sessions.html", {"rows": rows, "notice": _notice(request)})


SESSION_ACTIONS = ("revoke", "revoke_others", "revoke_all")


async def sessions_submit(request: web.Request) -> web.StreamResponse:
    who = auth.principal(request)
    assert who is not None and who.session_id is not None
    form = await _form(request)
    action = form.get("action")
    if action not in SESSION_ACTIONS:
        raise web.HTTPBadRequest(text="Choose one of the session actions on the page.")
    ctx: audit.Context = auth.audit_context(request)
    at = now(request.app)
    async with request.app[keys.POOL].connection() as conn:
        if action == "revoke":
            raw = form.get("session_id")
            target = int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 19 else None
            found = await sessions.get(conn, target) if target is not None else None
            if found is None or found.user_id != who.user_id or found.id == who.session_id:
                raise web.HTTPBadRequest(
                    text="That session cannot be ended here. To end this session, sign out."
                )
            await sessions.revoke(conn, ctx, reason="user_requested", session_id=found.id, now=at)
            raise flash.see_other(request, "/account/sessions", "The session was ended.")
        if action == "revoke_others":
            await sessions.revoke(
                conn, ctx, reason="user_requested", user_id=who.user_id,
                except_session_id=who.session_id, now=at,
            )  # fmt: skip
            raise flash.see_other(request, "/account/sessions", "Your other sessions were ended.")
        await sessions.revoke(conn, ctx, reason="user_requested", user_id=who.user_id, now=at)
    return _signed_out(request, "/login?notice=signed_out_everywhere")


# ---- wiring -------------------------------------------------------------------------------


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """SESS-9: one sweeper per process; SKIP LOCKED lets every host run one."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        sweeper.run_forever(app[keys.POOL].connection, stop, idle=app[keys.CONFIG].session_idle),
        name="keel-sweeper",
    )
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def setup(app: web.Application) -> None:
    config = app[keys.CONFIG]
    app[csrf.CSRF_KEY] = csrf.derive_key(config.secret_key)
    app[csrf.CSRF_KEYS] = tuple(csrf.derive_key(k) for k in config.ring)
    app[auth.AUDIT_KEY] = audit.derive_key(config.secret_key)
    app[keys.RENDERER].context_hooks.append(template_context)
    r = app.router
    r.add_get("/login", login_page, name="login")
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout, name="logout")
    r.add_get("/forgot", forgot_page, name="forgot")
    r.add_post("/forgot", forgot_submit)
    r.add_get("/forgot/sent", forgot_sent)
    r.add_get("/reset/{token}", reset_page)
    r.add_post("/reset/{token}", reset_submit)
    r.add_get("/must-change-password", must_change_page)
    r.add_post("/must-change-password", must_change_submit)
    r.add_get("/reauth", reauth_page, name="reauth")
    r.add_post("/reauth", reauth_submit)
    r.add_get("/account", account_page, name="account")
    r.add_get("/account/sessions", sessions_page)
    r.add_post("/account/sessions", sessions_submit)
    r.add_get("/account/password", password_page)
    r.add_post("/account/password", password_submit)
    app.cleanup_ctx.append(_sweeper)
