"""Sign-in, sign-out, held users and own-account pages over real HTTP (SESS, LOGIN, REC-4, AUTHZ-2)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.web import auth
from tests.helpers import cheap_app
from tests.web.conftest import login_form, page_token, sign_in


async def _db(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall()) if cur.description else []


async def test_anonymous_visitors_are_sent_to_login_with_the_page_to_return_to(client) -> None:
    """Deny by default: only @public routes answer without a session."""
    for path, back in (("/account", "/account"), ("/admin/users/?q=a", "/admin/users/?q=a")):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303
        location = urlsplit(resp.headers["Location"])
        assert location.path == "/login" and parse_qs(location.query)["return_to"] == [back]
    for path in ("/login", "/forgot", "/forgot/sent", "/", "/healthz"):
        assert (await client.get(path, allow_redirects=False)).status == 200, path


async def test_sign_in_sets_a_strict_http_only_cookie(client, make_user) -> None:
    """SESS-2 on plain HTTP: no Secure, no __Host- prefix, and every page warns about it."""
    user, password = await make_user("staff")
    page = await (await client.get("/login")).text()
    assert "This connection is not secure" in page
    resp = await sign_in(client, user.email, password)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/"
    cookie = resp.cookies["keel_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"] and not cookie["max-age"]
    assert len(cookie.value) == 43


async def test_over_https_behind_a_trusted_proxy_the_cookie_is_host_prefixed_and_secure(
    config, make_user, aiohttp_client
) -> None:
    """SESS-2: `__Host-keel_session; Secure; HttpOnly; SameSite=Strict; Path=/` (and HSTS)."""
    https = config.with_values(trusted_proxies=("127.0.0.0/8",))
    client = await aiohttp_client(cheap_app(https))
    user, password = await make_user("staff")
    xfp = {"X-Forwarded-Proto": "https"}
    page = await client.get("/login", headers=xfp)
    pre = page.cookies["__Host-keel_csrf"]
    assert pre["secure"] and "This connection is not secure" not in await page.text()
    resp = await client.post(
        "/login",
        data={
            "email": user.email,
            "password": password,
            "csrf_token": page_token(await page.text()),
        },
        headers={**xfp, "Cookie": f"__Host-keel_csrf={pre.value}"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    cookie = resp.cookies["__Host-keel_session"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/" and not cookie["domain"]
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_where_sign_in_lands_depends_on_role_and_a_safe_return_to(client, make_user) -> None:
    """REAUTH-2 rules apply to return_to; `user` accounts land on their account page."""
    staff, pw = await make_user("staff")
    plain, pw2 = await make_user("user")
    cases = [
        (staff.email, pw, "/admin/users/", "/admin/users/"),
        (staff.email, pw, "//evil.example.com/", "/admin/"),
        (staff.email, pw, "https://evil.example.com/admin/", "/admin/"),
        (plain.email, pw2, "/admin/users/", "/account"),
        (plain.email, pw2, "/account/sessions", "/account/sessions"),
    ]
    for email, password, back, landing in cases:
        c = TestClient(client.server)
        token = await login_form(c)
        resp = await c.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token, "return_to": back},
            allow_redirects=False,
        )
        assert resp.headers["Location"] == landing, (email, back)
        await c.session.close()


async def test_user_role_may_use_only_its_own_account_pages(signed_in) -> None:
    """AUTHZ-2, AUTHZ-8: the 403 names the role needed, inside the page chrome."""
    s = await signed_in("user")
    resp = await s.get("/admin/")
    assert resp.status == 403
    body = await resp.text()
    assert "staff" in body and "Your account may use only its own account pages" in body
    assert 'class="k-sidebar"' in body and 'href="/account/sessions"' in body
    refused = await s.post("/admin/users/new", {"email": "x@example.com"})
    assert refused.status == 403 and 'class="k-sidebar"' in await refused.text()
    for path in ("/account", "/account/sessions", "/account/password"):
        assert (await s.get(path)).status == 200, path


async def test_signed_in_pages_are_not_cached_and_show_the_account_menu(signed_in) -> None:
    """SEC-2: Cache-Control no-store on authenticated pages; UI: user menu + sidebar."""
    s = await signed_in("staff", full_name="Ada Lovelace")
    resp = await s.get("/account")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.text()
    assert "Ada Lovelace" in body and s.user.email in body
    assert 'href="/account/sessions"' in body and 'action="/logout"' in body
    assert "<script>" not in body and " style=" not in body


async def test_logout_is_post_only_revokes_and_clears_site_data(signed_in, database_url) -> None:
    """SESS-8."""
    s = await signed_in("staff")
    old_cookie, old_csrf = s.cookie, s.csrf
    assert (await s.get("/logout")).status == 405
    resp = await s.post("/logout")
    assert resp.status == 303 and resp.headers["Location"] == "/login?notice=signed_out"
    assert resp.headers["Clear-Site-Data"] == '"cache", "cookies"'
    assert resp.cookies["keel_session"].value == ""
    page = await (await s.get("/login?notice=signed_out")).text()
    assert "You are signed out." in page
    replay = await s.client.get(
        "/account", headers={"Cookie": f"keel_session={old_cookie}"}, allow_redirects=False
    )
    assert replay.status == 303 and replay.headers["Location"].startswith("/login")
    rows = await _db(
        database_url,
        "SELECT revoked_reason FROM keel_sessions WHERE user_id = %s",
        s.user.id,
    )
    assert rows == [("logout",)]
    events = await _db(
        database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'session_logout'"
    )
    assert events == [(1,)]
    assert old_csrf  # the old token is bound to a dead session: see test_csrf


async def test_idle_sessions_end_and_their_cookie_is_cleared(signed_in, database_url) -> None:
    """SESS-3: enforced by the server on the next request."""
    s = await signed_in("staff")
    # Move the session 31 minutes into the past instead of sleeping.
    await _db(
        database_url,
        "UPDATE keel_sessions SET last_seen_at = last_seen_at - interval '31 minutes',"
        " created_at = created_at - interval '31 minutes' WHERE user_id = %s RETURNING id",
        s.user.id,
    )
    resp = await s.get("/account")
    assert resp.status == 303 and resp.headers["Location"] == "/login?return_to=/account"
    assert resp.cookies["keel_session"].value == ""


async def test_deactivation_ends_access_on_the_next_request(signed_in, database_url) -> None:
    """AUTHZ-5: the user row is read on every request, nothing is cached."""
    s = await signed_in("staff")
    assert (await s.get("/account")).status == 200
    await _db(
        database_url,
        "UPDATE keel_users SET is_active = false WHERE id = %s RETURNING id",
        s.user.id,
    )
    assert (await s.get("/account")).status == 303


async def test_must_change_password_users_are_held_until_done(signed_in) -> None:
    """LOGIN-7."""
    s = await signed_in("staff", must_change=True)
    resp = await s.get("/admin/")
    assert resp.status == 303 and resp.headers["Location"] == "/must-change-password"
    assert (await s.get("/account")).headers["Location"] == "/must-change-password"
    page = await s.get("/must-change-password")
    assert page.status == 200 and "temporary password" in await page.text()
    bad = await s.post("/must-change-password", {"new_password": "x" * 20, "confirm": "y" * 20})
    assert bad.status == 400 and "do not match" in await bad.text()
    same = await s.post(
        "/must-change-password", {"new_password": s.password, "confirm": s.password}
    )
    assert same.status == 400 and "different from the temporary one" in await same.text()
    new = "a lovely fresh passphrase"
    done = await s.post("/must-change-password", {"new_password": new, "confirm": new})
    assert done.status == 303 and done.headers["Location"].startswith("/admin/")
    assert (await s.get("/account")).status == 200


async def test_sessions_page_lists_marks_and_ends_sessions(signed_in, client, database_url) -> None:
    """SESS-7: list, current marked, end one (not the current), end all others, everywhere."""
    s = await signed_in("staff")
    other = TestClient(client.server)
    assert (await sign_in(other, s.user.email, s.password)).status == 303
    third = TestClient(client.server)
    assert (await sign_in(third, s.user.email, s.password)).status == 303
    page = await (await s.get("/account/sessions")).text()
    assert page.count("This session") == 1 and page.count('name="session_id"') == 2
    ids = [int(x) for x in re.findall(r'name="session_id" value="(\d+)"', page)]
    mine = await _db(
        database_url,
        "SELECT id FROM keel_sessions WHERE user_id = %s AND revoked_at IS NULL ORDER BY id",
        s.user.id,
    )
    current = next(i for (i,) in mine if i not in ids)
    refused = await s.post("/account/sessions", {"action": "revoke", "session_id": str(current)})
    assert refused.status == 400 and "sign out" in await refused.text()
    for bad in ({"action": "explode"}, {"action": "revoke", "session_id": "1 OR 1=1"}, {}):
        assert (await s.post("/account/sessions", bad)).status == 400
    ended = await s.post("/account/sessions", {"action": "revoke", "session_id": str(ids[0])})
    assert ended.status == 303 and ended.headers["Location"] == "/account/sessions"
    assert "The session was ended." in await (await s.get("/account/sessions")).text()
    assert (await s.post("/account/sessions", {"action": "revoke_others"})).status == 303
    for c in (other, third):
        assert (await c.get("/account", allow_redirects=False)).status == 303
        await c.session.close()
    assert (await s.get("/account")).status == 200
    bye = await s.post("/account/sessions", {"action": "revoke_all"})
    assert bye.status == 303 and bye.headers["Clear-Site-Data"] == '"cache", "cookies"'
    assert (await s.get("/account")).status == 303


async def test_a_user_cannot_end_someone_elses_session(signed_in, database_url) -> None:
    a = await signed_in("staff")
    b = await signed_in("staff")
    [(b_session,)] = await _db(
        database_url, "SELECT id FROM keel_sessions WHERE user_id = %s", b.user.id
    )
    resp = await a.post("/account/sessions", {"action": "revoke", "session_id": str(b_session)})
    assert resp.status == 400
    assert (await b.get("/account")).status == 200


async def test_password_change_page_needs_the_old_password(signed_in, client) -> None:
    """REC-4: old password, new twice; the other sessions end, this one stays."""
    s = await signed_in("staff")
    other = TestClient(client.server)
    await sign_in(other, s.user.email, s.password)
    new = "another sturdy passphrase"
    wrong = await s.post(
        "/account/password", {"old_password": "nope", "new_password": new, "confirm": new}
    )
    assert wrong.status == 400 and "current password is not right" in await wrong.text()
    assert 'class="k-sidebar"' in await wrong.text(), "a re-shown form keeps the page chrome"
    short = await s.post(
        "/account/password", {"old_password": s.password, "new_password": "tiny", "confirm": "tiny"}
    )
    assert short.status == 400 and "Too short" in await short.text()
    ok = await s.post(
        "/account/password", {"old_password": s.password, "new_password": new, "confirm": new}
    )
    assert ok.status == 303
    assert "Your password was changed" in await (await s.get(ok.headers["Location"])).text()
    assert (await other.get("/account", allow_redirects=False)).status == 303
    await other.session.close()
    assert (await s.get("/account")).status == 200


# ---- the re-auth wall (REAUTH-1) through the contract other features use -------------------


async def _danger(request: web.Request) -> web.Response:
    await auth.require(request)
    await auth.require_elevated(request)
    return web.Response(text="dangerous thing done")


async def test_the_reauth_wall_elevates_with_a_new_token(
    config, aiohttp_client, make_user, database_url
) -> None:
    app = cheap_app(config)
    app.router.add_get("/admin/_danger", _danger)
    client = await aiohttp_client(app)
    user, password = await make_user("administrator")
    await sign_in(client, user.email, password)
    wall = await client.get("/admin/_danger", allow_redirects=False)
    assert wall.status == 303 and wall.headers["Location"] == "/reauth?return_to=/admin/_danger"
    page = await client.get(wall.headers["Location"])
    body = await page.text()
    assert page.status == 200 and 'value="/admin/_danger"' in body
    token = page_token(body)
    before = client.session.cookie_jar.filter_cookies(client.make_url("/"))["keel_session"].value
    bad = await client.post(
        "/reauth", data={"password": "nope", "return_to": "/admin/_danger", "csrf_token": token}
    )
    assert bad.status == 401 and "not right" in await bad.text()
    good = await client.post(
        "/reauth",
        data={"password": password, "return_to": "/admin/_danger", "csrf_token": token},
        allow_redirects=False,
    )
    assert good.status == 303 and good.headers["Location"] == "/admin/_danger"
    assert good.cookies["keel_session"].value != before
    assert await (await client.get("/admin/_danger")).text() == "dangerous thing done"
    rows = await _db(
        database_url,
        "SELECT trust, parent_id IS NOT NULL FROM keel_sessions WHERE revoked_at IS NULL",
    )
    assert rows == [("elevated", True)]
    sneaky = await client.post(
        "/reauth",
        data={
            "password": password,
            "return_to": "//evil.example.com/",
            "csrf_token": page_token(await (await client.get("/reauth")).text()),
        },
        allow_redirects=False,
    )
    assert sneaky.headers["Location"] == "/admin/"


# ---- the contract other features code against (app/web/auth.py) ------------------------------


async def _perm_page(request: web.Request) -> web.Response:
    who = await auth.require(request, perm="customers.view")
    ctx = auth.audit_context(request)
    assert ctx.actor_id == who.user_id and ctx.session_id == who.session_id
    return web.Response(text=f"hello {who.role}")


async def _role_page(request: web.Request) -> web.Response:
    await auth.require(request, role="administrator")
    return web.Response(text="admins only")


@auth.public
async def _open_page(request: web.Request) -> web.Response:
    return web.Response(text=f"open to {auth.principal(request)}")


async def test_require_names_what_is_missing_and_public_needs_nobody(
    config, aiohttp_client, make_user
) -> None:
    """AUTHZ-2, AUTHZ-8: permission and role guards; administrators bypass permissions."""
    app = cheap_app(config)
    app.router.add_get("/admin/_perm", _perm_page)
    app.router.add_get("/admin/_role", _role_page)
    app.router.add_get("/_open", _open_page)
    client = await aiohttp_client(app)
    assert await (await client.get("/_open")).text() == "open to None"
    staff, pw = await make_user("staff")
    await sign_in(client, staff.email, pw)
    denied = await client.get("/admin/_perm")
    assert denied.status == 403 and "customers.view" in await denied.text()
    role = await client.get("/admin/_role")
    assert role.status == 403 and "administrator" in await role.text()
    admin = TestClient(client.server)
    boss, pw2 = await make_user("administrator")
    await sign_in(admin, boss.email, pw2)
    assert await (await admin.get("/admin/_perm")).text() == "hello administrator"
    assert await (await admin.get("/admin/_role")).text() == "admins only"
    await admin.session.close()


async def test_password_forms_state_the_rules_the_policy_applies(signed_in, config) -> None:
    """The forced change and the own-password page say every rule before the first refusal,
    with this installation's minimum length and site name."""
    held = await signed_in("staff", must_change=True)
    forced = await (await held.get("/must-change-password")).text()
    for text in (f"At least {config.password_min_length} characters", "commonly used", "@"):
        assert text in forced, text
    assert config.site_name in forced
    free = await signed_in("staff")
    own = await (await free.get("/account/password")).text()
    assert f"At least {config.password_min_length} characters" in own
    assert "commonly used" in own and "12 characters; no other rules" not in own
