"""Issue 3 acceptance: every route of the built-in pages, requested as every role, is allowed
exactly for the roles the requirements allow (the URL map, AUTHZ-2, AUTHZ-7, SESS-7, SESS-8, REC-1..4, REAUTH).
Every method is requested: each GET, and each POST with a valid CSRF token, so the POST
handlers' own guards are checked too, not only the pages that show their forms.

The routes come from the app's own router, so a new route without an expectation here fails the
test. Resource routes (`/admin/{resource}/…`) are covered by the admin engineers' matrices.
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from aiohttp import ClientResponse

from app.audit import Context, derive_key
from app.authority import invitations, recovery
from app.web import csrf
from tests.web.conftest import login_form

pytestmark = pytest.mark.asyncio

ROLES = ("anonymous", "user", "staff", "supervisor", "administrator", "developer")
EVERYONE = frozenset(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}
STAFF_UP = frozenset({"staff", "supervisor", "administrator", "developer"})  # AUTHZ-2
ADMIN_UP = frozenset({"administrator", "developer"})  # AUTHZ-7

# canonical path → (roles allowed, methods registered, reason). Targets of {id} are a
# `user`-role account and the `viewer` group, both below every administrator.
EXPECTED: dict[str, tuple[frozenset[str], frozenset[str], str]] = {
    "/": (EVERYONE, frozenset({"GET"}), "URL map: public status page"),
    "/healthz": (EVERYONE, frozenset({"GET"}), "OPS-2 no authentication"),
    "/metrics": (EVERYONE, frozenset({"GET"}), "no sign-in; metrics_allow addresses only"),
    "/readyz": (EVERYONE, frozenset({"GET"}), "OPS-2 no authentication"),
    "/static/{name}": (EVERYONE, frozenset({"GET"}), "URL map: assets"),
    "/static/site/{path}": (EVERYONE, frozenset({"GET"}), "the site's own static files"),
    "/login": (EVERYONE, frozenset({"GET", "POST"}), "UI-6 public sign-in"),
    "/logout": (EVERYONE, frozenset({"POST"}), "SESS-8 signing out is never refused"),
    "/forgot": (EVERYONE, frozenset({"GET", "POST"}), "REC-1 self-service"),
    "/forgot/sent": (EVERYONE, frozenset({"GET"}), "REC-1 same page for every outcome"),
    "/reset/{token}": (EVERYONE, frozenset({"GET", "POST"}), "REC-2 the link page"),
    "/must-change-password": (SIGNED_IN, frozenset({"GET", "POST"}), "LOGIN-7"),
    "/reauth": (SIGNED_IN, frozenset({"GET", "POST"}), "REAUTH-1"),
    "/account": (SIGNED_IN, frozenset({"GET"}), "AUTHZ-2 own account"),
    "/account/sessions": (SIGNED_IN, frozenset({"GET", "POST"}), "SESS-7"),
    "/account/password": (SIGNED_IN, frozenset({"GET", "POST"}), "REC-4"),
    "/account/tokens": (SIGNED_IN, frozenset({"GET", "POST"}), "own API tokens"),
    "/admin/api/": (STAFF_UP, frozenset({"GET"}), "the API described, inside the admin"),
    "/admin/api/openapi.json": (STAFF_UP, frozenset({"GET"}), "the API's OpenAPI document"),
    "/mfa": (SIGNED_IN, frozenset({"GET", "POST"}), "MFA-3 the code step (others sent on)"),
    "/account/two-step": (SIGNED_IN, frozenset({"GET"}), "MFA-1 own second factor"),
    "/account/two-step/start": (SIGNED_IN, frozenset({"POST"}), "MFA-1"),
    "/account/two-step/confirm": (SIGNED_IN, frozenset({"POST"}), "MFA-1"),
    "/account/two-step/regenerate": (SIGNED_IN, frozenset({"POST"}), "MFA-2, REAUTH-1"),
    "/account/two-step/disable": (SIGNED_IN, frozenset({"POST"}), "MFA-4, REAUTH-1"),
    "/admin/users/{id}/mfa-off": (ADMIN_UP, frozenset({"GET", "POST"}), "R4-1 from the web"),
    "/admin/": (STAFF_UP, frozenset({"GET"}), "AUTHZ-2 staff and up enter the admin"),
    "/admin/search": (STAFF_UP, frozenset({"GET"}), "LIST-12 inside the admin"),
    "/admin/palette": (STAFF_UP, frozenset({"GET"}), "the Ctrl-K palette, inside the admin"),
    "/admin/audit/": (ADMIN_UP, frozenset({"GET"}), "AUDIT-8 administrators"),
    "/admin/audit/{id}/": (ADMIN_UP, frozenset({"GET"}), "AUDIT-8 one event, its chain hashes"),
    "/admin/audit/saved-filters": (ADMIN_UP, frozenset({"POST"}), "LIST-8 one's own saved view"),
    "/admin/audit/saved-filters/{filter_id}/delete": (
        ADMIN_UP,
        frozenset({"POST"}),
        "LIST-8 only one's own",
    ),
    "/admin/users/saved-filters": (ADMIN_UP, frozenset({"POST"}), "LIST-8 one's own saved view"),
    "/admin/users/saved-filters/{filter_id}/delete": (
        ADMIN_UP,
        frozenset({"POST"}),
        "LIST-8 only one's own",
    ),
    "/admin/users/": (ADMIN_UP, frozenset({"GET"}), "AUTHZ-7"),
    "/admin/users/new": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7"),
    "/admin/users/{id}/": (ADMIN_UP, frozenset({"GET"}), "AUTHZ-7"),
    "/admin/users/{id}/edit": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-3/7"),
    "/admin/users/{id}/delete": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7, REAUTH-1"),
    "/admin/users/{id}/reset-link": (ADMIN_UP, frozenset({"GET", "POST"}), "REC-5"),
    "/admin/users/{id}/temporary-password": (ADMIN_UP, frozenset({"GET", "POST"}), "REC-5"),
    "/admin/users/{id}/lock": (ADMIN_UP, frozenset({"GET", "POST"}), "REC-5"),
    "/admin/users/{id}/unlock": (ADMIN_UP, frozenset({"GET", "POST"}), "REC-5"),
    "/admin/users/{id}/sessions/revoke": (ADMIN_UP, frozenset({"GET", "POST"}), "REC-5"),
    "/admin/groups/": (ADMIN_UP, frozenset({"GET"}), "AUTHZ-7"),
    "/admin/groups/new": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7"),
    "/admin/groups/{id}/": (ADMIN_UP, frozenset({"GET"}), "AUTHZ-7"),
    "/admin/groups/{id}/edit": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7"),
    "/admin/groups/{id}/members": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7"),
    "/admin/groups/{id}/delete": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-7"),
    "/admin/invitations/": (ADMIN_UP, frozenset({"GET"}), "AUTHZ-9 open invitations"),
    "/admin/invitations/new": (ADMIN_UP, frozenset({"GET", "POST"}), "AUTHZ-9, AUTHZ-3 ceiling"),
    "/admin/invitations/{id}/resend": (ADMIN_UP, frozenset({"POST"}), "AUTHZ-9"),
    "/admin/invitations/{id}/revoke": (ADMIN_UP, frozenset({"POST"}), "AUTHZ-9"),
    "/invite/{token}": (EVERYONE, frozenset({"GET", "POST"}), "AUTHZ-9 the invitee's link page"),
}
# The resource engineers' own matrices (tests/admin/test_route_matrix.py, test_api_matrix.py).
OUT_OF_SCOPE = ("/admin/{resource}", "/admin/api/{resource}")


def registered(app: Any) -> dict[str, set[str]]:
    """canonical path → methods, from the router itself (HEAD is added with every GET)."""
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(OUT_OF_SCOPE):
            continue
        routes.setdefault(path, set()).add(route.method)
    return routes


def outcome(resp: ClientResponse) -> bool | None:
    """GET: True = allowed, False = refused (403; 401 from the API; or the login wall), None =
    neither (a failure)."""
    location = resp.headers.get("Location", "")
    api_401 = resp.status == 401 and resp.url.path.startswith("/admin/api/")
    if (
        resp.status == 403
        or api_401
        or (resp.status in (302, 303) and location.startswith("/login?return_to="))
    ):
        return False
    if 200 <= resp.status < 400:
        return True
    return None


# A POST that got past the route guard may still be refused as input: the forms here are
# posted (nearly) empty so nothing is changed, and the answer is the handler's own — a
# redirect, a page, 400 for the missing fields, 401 for a failed sign-in or re-auth.
POST_HANDLED = frozenset({400, 401, 409})


def post_outcome(resp: ClientResponse) -> bool | None:
    """POST: True = the handler answered, False = refused (403, or the login wall), None =
    neither (a 404, 405, 413, 5xx … is a failure of the test or of the app)."""
    verdict = outcome(resp)
    if verdict is None and resp.status in POST_HANDLED:
        return True
    return verdict


async def test_every_route_allows_exactly_the_roles_the_spec_allows(
    client, signed_in, make_user, database_url, config
):
    """Every method of every route: each GET, and each POST with a valid CSRF token (so a
    refusal is the route guard's, never SEC-1's), as anonymous and as each of the five roles."""
    app = client.server.app
    routes = registered(app)
    assert set(routes) == set(EXPECTED), (
        "routes without an expectation: "
        f"{sorted(set(routes) - set(EXPECTED))}; expectations without a route: "
        f"{sorted(set(EXPECTED) - set(routes))}"
    )
    for path, methods in routes.items():
        assert methods == set(EXPECTED[path][1]), (path, methods)

    target, _ = await make_user("user", email="target@example.com")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        token = await recovery.issue_token(conn, user_id=target.id, ttl_seconds=3600, kind="reset")
        # One group per role: an allowed POST /admin/groups/{id}/delete really deletes it.
        group_ids = {}
        for role in ROLES:
            cur = await conn.execute(
                "INSERT INTO keel_groups (name) VALUES (%s) RETURNING id", (f"matrix-{role}",)
            )
            group_ids[role] = (await cur.fetchone())[0]
        # One invitation per role: an allowed resend then revoke really acts on it; and one
        # link for /invite/{token} (posted empty, it stays good: the password is refused).
        cli = Context(audit_key=derive_key(config.secret_key), os_actor="ops@host")
        invitation_ids = {}
        for role in ROLES:
            inv = await invitations.invite(
                conn, cli, None, email=f"invited-{role}@example.com", role="user",
                public_url=config.public_url, ttl=config.invitation_ttl,
            )  # fmt: skip
            invitation_ids[role] = inv.id
        invite_token = secrets.token_urlsafe(32)
        await conn.execute(
            "UPDATE keel_invitations SET token_hash = %s WHERE id = %s",
            (recovery.token_hash(invite_token), invitation_ids["anonymous"]),
        )
    anon_csrf = await login_form(client)

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT max(id) FROM keel_audit")
        event_id = (await cur.fetchone())[0]

    def concrete(path: str, role: str) -> str:
        if path.startswith("/admin/audit/"):
            path = path.replace("{id}", str(event_id))
        if path.startswith("/admin/groups/"):
            path = path.replace("{id}", str(group_ids[role]))
        if path.startswith("/admin/invitations/"):
            path = path.replace("{id}", str(invitation_ids[role]))
        if path.startswith("/invite/"):
            path = path.replace("{token}", invite_token)
        return (
            path.replace("{id}", str(target.id))
            .replace("{token}", token)
            .replace("{name}", "keel.css")
            .replace("{filter_id}", "1")
            .replace("{path}", "service-desk.svg")
        )

    # Forms that reach the handler without changing anything it would need later; every
    # other POST goes with no fields at all. /logout goes last, as it ends the session.
    post_forms = {
        "/admin/groups/{id}/members": {"op": "remove", "user_id": str(target.id)},
        "/admin/users/saved-filters": {"name": "Matrix", "query": "role=user"},
        "/admin/audit/saved-filters": {"name": "Matrix", "query": "event=login_failed"},
    }
    order = sorted(EXPECTED, key=lambda p: p == "/logout")
    actual: dict[tuple[str, str], set[str]] = {
        (path, method): set() for path in EXPECTED for method in EXPECTED[path][1]
    }
    problems: list[str] = []
    for role in ROLES:
        who = None if role == "anonymous" else await signed_in(role)
        for path in order:
            url = concrete(path, role)
            for method in sorted(EXPECTED[path][1]):  # GET before POST
                if method == "GET":
                    resp = await (who.get(url) if who else client.get(url, allow_redirects=False))
                    verdict = outcome(resp)
                else:
                    form = post_forms.get(path, {})
                    if who:
                        resp = await who.post(url, form)
                    else:
                        data = {"csrf_token": anon_csrf, **form}
                        resp = await client.post(url, data=data, allow_redirects=False)
                    verdict = post_outcome(resp)
                    if resp.status == 403 and csrf.REFUSED in await resp.text():
                        problems.append(f"{role} POST {path}: refused by the CSRF check")
                if verdict is None:
                    problems.append(f"{role} {method} {path}: status {resp.status}")
                elif verdict:
                    actual[(path, method)].add(role)
    assert not problems, problems
    assert {m for _p, m in actual} == {"GET", "POST"}
    wrong = {
        f"{method} {path}": {"allowed": sorted(actual[(path, method)]),
                             "spec": sorted(EXPECTED[path][0]), "why": EXPECTED[path][2]}
        for path, method in actual
        if actual[(path, method)] != set(EXPECTED[path][0])
    }  # fmt: skip
    assert not wrong, wrong


async def test_a_session_owing_its_second_factor_reaches_only_the_code_page(
    client, make_user, database_url, config
):
    """A pending session (password right, code not yet given) reaches the code page, sign-out
    and static files; every other route that needs a sign-in sends it to the code page."""
    import pyotp

    from app import audit
    from app.authority import mfa

    user, password = await make_user("developer")
    ring = mfa.KeyRing.from_secret_keys(config.secret_key)
    ctx = audit.Context(audit_key=audit.derive_key(config.secret_key))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        secret = await mfa.start_enrolment(conn, ring, user.id)
        await mfa.confirm_enrolment(conn, ctx, ring, user.id, pyotp.TOTP(secret).now())
    token = await login_form(client)
    resp = await client.post(
        "/login",
        data={"email": user.email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/mfa"
    cookie = next(m.value for m in client.session.cookie_jar if m.key == "keel_session")
    form = {"csrf_token": csrf.token_for_cookie(config.secret_key, cookie)}
    reached = set()
    for path, (roles, methods, _why) in EXPECTED.items():
        if roles == EVERYONE and path not in ("/logout",):
            continue  # public pages: reachable without any session anyway
        url = (
            path.replace("{id}", str(user.id))
            .replace("{filter_id}", "1")
            .replace("{name}", "keel.css")
        )
        for method in sorted(methods):
            if path == "/logout":
                continue  # checked last: it ends the session
            if method == "GET":
                resp = await client.get(url, allow_redirects=False)
            else:
                resp = await client.post(url, data=form, allow_redirects=False)
            if resp.headers.get("Location") != "/mfa":
                reached.add((method, path))
    assert reached == {("GET", "/mfa"), ("POST", "/mfa")}, reached
    assert (await client.get("/static/keel.css")).status == 200
    assert (await client.get("/admin/bookings/", allow_redirects=False)).headers[
        "Location"
    ] == "/mfa"
    resp = await client.post("/logout", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")


async def test_a_session_held_for_set_up_reaches_only_set_up_reauth_and_sign_out(make_user, config):
    """Under `mfa_policy = "required"` a user without a second factor reaches the set-up pages,
    the re-auth wall they need to use them, and sign-out; everything else sends them to set-up."""
    from dataclasses import replace

    from aiohttp.test_utils import TestClient, TestServer

    from app.authority.setup import TEST_HASHER_COST
    from app.web.app import build_app
    from tests.helpers import CHEAP_HASHING

    app = build_app(replace(config, mfa_policy="required"))
    app[TEST_HASHER_COST] = CHEAP_HASHING
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        user, password = await make_user("developer")
        token = await login_form(client)
        resp = await client.post(
            "/login",
            data={"email": user.email, "password": password, "csrf_token": token},
            allow_redirects=False,
        )
        assert resp.status == 303
        cookie = next(m.value for m in client.session.cookie_jar if m.key == "keel_session")
        form = {"csrf_token": csrf.token_for_cookie(config.secret_key, cookie)}
        reached = set()
        for path, (roles, methods, _why) in EXPECTED.items():
            if roles == EVERYONE:
                continue  # public pages, and sign-out (checked last: it ends the session)
            url = path.replace("{id}", str(user.id)).replace("{filter_id}", "1")
            for method in sorted(methods):
                if method == "GET":
                    resp = await client.get(url, allow_redirects=False)
                else:
                    resp = await client.post(url, data=form, allow_redirects=False)
                # Held: sent to the set-up page (with the page asked for, for a GET).
                if resp.headers.get("Location", "").partition("?")[0] != "/account/two-step":
                    reached.add((method, path))
        assert reached == {
            ("GET", "/account/two-step"), ("POST", "/account/two-step/start"),
            ("POST", "/account/two-step/confirm"), ("POST", "/account/two-step/regenerate"),
            ("POST", "/account/two-step/disable"), ("GET", "/reauth"), ("POST", "/reauth"),
        }, reached  # fmt: skip
        assert (await client.get("/admin/bookings/export.csv", allow_redirects=False)).headers[
            "Location"
        ] == "/account/two-step?return_to=/admin/bookings/export.csv"
        resp = await client.post("/logout", data=form, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    finally:
        await client.close()
