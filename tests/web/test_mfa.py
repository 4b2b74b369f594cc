"""Two-step sign-in over real HTTP: enrolment, the code step, replay across two app instances,
re-auth with a code, the policy with its grace period, and `off` hiding it all."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import psycopg
import pyotp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from app import audit
from app.authority import mfa
from app.authority.setup import TEST_HASHER_COST
from app.config import Config
from app.web import keys
from app.web.app import build_app
from tests.helpers import CHEAP_HASHING
from tests.web.conftest import MakeUser, login_form, page_token

_SECRET = re.compile(r'id="k-mfa-secret">([A-Z2-7]+)<')
_CODES = re.compile(r"<code>([A-Z2-9]{4}-[A-Z2-9]{4})</code>")


async def _client(config: Config) -> TestClient:
    app = build_app(config)
    app[TEST_HASHER_COST] = CHEAP_HASHING
    c = TestClient(TestServer(app))
    await c.start_server()
    return c


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[Config], Awaitable[TestClient]]]:
    made: list[TestClient] = []

    async def make(config: Config) -> TestClient:
        c = await _client(config)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def _post(c: TestClient, path: str, data: dict[str, str], html: str) -> ClientResponse:
    return await c.post(path, data={"csrf_token": page_token(html), **data}, allow_redirects=False)


async def _sign_in(c: TestClient, email: str, password: str) -> ClientResponse:
    token = await login_form(c)
    return await c.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )


async def _reauth(c: TestClient, password: str, code: str | None = None) -> ClientResponse:
    page = await (await c.get("/reauth?return_to=/account/two-step")).text()
    data = {"password": password, "return_to": "/account/two-step"}
    if code is not None:
        data["code"] = code
    return await _post(c, "/reauth", data, page)


async def _enrol(c: TestClient, password: str) -> tuple[str, list[str]]:
    page = await (await c.get("/account/two-step")).text()
    resp = await _post(c, "/account/two-step/start", {}, page)
    # Behind the re-auth wall, which sends the browser back to this page.
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/reauth?return_to=/account/two-step"
    resp = await _reauth(c, password)
    assert resp.status == 303 and resp.headers["Location"] == "/account/two-step"
    page = await (await c.get("/account/two-step")).text()
    resp = await _post(c, "/account/two-step/start", {}, page)
    html = await resp.text()
    assert resp.status == 200, html
    assert "<svg" in html and "data:" not in html  # drawn inline: the CSP refuses data: URLs
    m = _SECRET.search(html)
    assert m, html
    secret = m.group(1)
    resp = await _post(c, "/account/two-step/confirm", {"code": pyotp.TOTP(secret).now()}, html)
    html = await resp.text()
    codes = _CODES.findall(html)
    assert resp.status == 200 and len(codes) == 10, html
    return secret, codes


async def test_enrol_then_sign_in_with_a_code_once_also_on_a_second_instance(
    config: Config, clients: Any, make_user: MakeUser, database_url: str
) -> None:
    user, password = await make_user("staff")
    a = await clients(config)
    assert (await _sign_in(a, user.email, password)).status == 303
    secret, _codes = await _enrol(a, password)

    b1, b2 = await clients(config), await clients(config)  # two instances, one database
    resp = await _sign_in(b1, user.email, password)
    assert resp.status == 303 and resp.headers["Location"] == "/mfa"
    # Pending: only the code page, logout and static files.
    assert (await b1.get("/admin/", allow_redirects=False)).headers["Location"] == "/mfa"
    assert (await b1.get("/account", allow_redirects=False)).headers["Location"] == "/mfa"
    # The next step's code (inside the ±1 step window): enrolment used the current one.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    page = await (await b1.get("/mfa")).text()
    resp = await _post(b1, "/mfa", {"code": code}, page)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/"
    assert (await b1.get("/admin/", allow_redirects=False)).status == 200

    # The same code on the other instance: refused.
    assert (await _sign_in(b2, user.email, password)).status == 303
    page = await (await b2.get("/mfa")).text()
    resp = await _post(b2, "/mfa", {"code": code}, page)
    assert resp.status == 401
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT trust FROM keel_sessions WHERE user_id = %s AND revoked_at IS NULL ORDER BY id",
            (user.id,),
        )
        trusts = [r[0] for r in await cur.fetchall()]
    assert trusts.count("mfa_verified") == 1 and "pending" in trusts


async def test_backup_code_once_and_reauth_asks_for_a_code(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    user, password = await make_user("administrator")
    a = await clients(config)
    await _sign_in(a, user.email, password)
    _secret, codes = await _enrol(a, password)
    b = await clients(config)
    await _sign_in(b, user.email, password)
    page = await (await b.get("/mfa")).text()
    assert (await _post(b, "/mfa", {"code": codes[0].lower()}, page)).status == 303
    c = await clients(config)
    await _sign_in(c, user.email, password)
    page = await (await c.get("/mfa")).text()
    assert (await _post(c, "/mfa", {"code": codes[0]}, page)).status == 401

    # Re-auth on the verified session asks for a code too; the password alone is refused.
    page = await (await b.get("/reauth?return_to=/account")).text()
    assert 'name="code"' in page
    resp = await _post(b, "/reauth", {"password": password, "return_to": "/account"}, page)
    assert resp.status == 401
    resp = await _post(
        b, "/reauth", {"password": password, "code": codes[1], "return_to": "/account"}, page
    )
    assert resp.status == 303
    # Elevated: new backup codes replace the old ones.
    page = await (await b.get("/account/two-step")).text()
    resp = await _post(b, "/account/two-step/regenerate", {}, page)
    assert len(_CODES.findall(await resp.text())) == 10


async def test_policy_required_holds_an_unenrolled_user_on_set_up(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    strict = replace(config, mfa_policy="required:administrator")
    user, password = await make_user("administrator")
    staff, staff_password = await make_user("staff")
    c = await clients(strict)
    assert (await _sign_in(c, user.email, password)).status == 303
    for path in (
        "/admin/", "/admin/users/", "/admin/bookings/?format=json", "/admin/bookings/export.csv",
        "/admin/bookings/export.jsonl", "/account", "/account/sessions",
    ):  # fmt: skip
        resp = await c.get(path, allow_redirects=False)
        # Held, with the page asked for kept for after the set-up.
        assert resp.status == 303, path
        assert resp.headers["Location"] == "/account/two-step?return_to=" + quote(path, safe="/")
    page = await (await c.get("/account/two-step")).text()
    assert "requires two-step sign-in" in page
    resp = await _post(c, "/admin/users/new", {"email": "x@example.com"}, page)
    assert resp.status == 303 and resp.headers["Location"] == "/account/two-step"
    _secret, _codes = await _enrol(c, password)
    assert (await c.get("/admin/", allow_redirects=False)).status == 200
    # Required: it cannot be turned off by the user.
    page = await (await c.get("/account/two-step")).text()
    assert "/account/two-step/disable" not in page
    # Staff are not listed: not held.
    s = await clients(strict)
    await _sign_in(s, staff.email, staff_password)
    assert (await s.get("/admin/", allow_redirects=False)).status == 200


async def test_grace_period_runs_out(
    config: Config, clients: Any, make_user: MakeUser, database_url: str
) -> None:
    strict = replace(config, mfa_policy="required", mfa_grace_period=3600.0)
    user, password = await make_user("staff")
    c = await clients(strict)
    assert (await _sign_in(c, user.email, password)).status == 303
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE keel_users SET mfa_required_since = now() - interval '2 hours' WHERE id = %s",
            (user.id,),
        )
    d = await clients(strict)
    resp = await _sign_in(d, user.email, password)
    assert resp.status == 403
    assert "time to set it up has passed" in await resp.text()


async def test_off_hides_the_feature(
    config: Config, clients: Any, make_user: MakeUser, database_url: str
) -> None:
    """With `off` nothing mentions it and nothing asks for a code, also for a user who had set
    it up while it was on."""
    off = replace(config, mfa_policy="off")
    user, password = await make_user("staff")
    ring = mfa.KeyRing.from_secret_keys(config.secret_key)
    ctx = audit.Context(audit_key=audit.derive_key(config.secret_key))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        secret = await mfa.start_enrolment(conn, ring, user.id)
        await mfa.confirm_enrolment(conn, ctx, ring, user.id, pyotp.TOTP(secret).now())
    c = await clients(off)
    resp = await _sign_in(c, user.email, password)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/"  # password only
    for path in ("/account/two-step", "/mfa"):
        assert (await c.get(path, allow_redirects=False)).status == 404, path
    assert "Two-step" not in await (await c.get("/account")).text()
    assert 'name="code"' not in await (await c.get("/reauth?return_to=/account")).text()
    # An administrator's view of that user names neither the factor nor the action to turn it off.
    admin, admin_password = await make_user("administrator")
    a = await clients(off)
    assert (await _sign_in(a, admin.email, admin_password)).status == 303
    profile = await (await a.get(f"/admin/users/{user.id}/")).text()
    assert user.email in profile
    assert "Second factor" not in profile and "Turn off two-step" not in profile


async def test_an_administrator_turns_off_someones_two_step_sign_in(
    config: Config, clients: Any, make_user: MakeUser, signed_in: Any
) -> None:
    user, password = await make_user("staff")
    a = await clients(config)
    await _sign_in(a, user.email, password)
    await _enrol(a, password)
    admin = await signed_in("administrator")
    profile = await (await admin.get(f"/admin/users/{user.id}/")).text()
    assert f"/admin/users/{user.id}/mfa-off" in profile
    # Behind the re-auth wall.
    resp = await admin.post(f"/admin/users/{user.id}/mfa-off", {"reason": "lost their phone"})
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth")
    page = await (await admin.get("/reauth?return_to=/admin/")).text()
    assert 'name="code"' not in page  # this administrator has no second factor
    resp = await admin.post("/reauth", {"password": admin.password, "return_to": "/admin/"})
    assert resp.status == 303
    resp = await admin.post(f"/admin/users/{user.id}/mfa-off", {"reason": "lost their phone"})
    assert resp.status == 303 and resp.headers["Location"].endswith("/")
    # The user's session ended; the password alone signs in again.
    assert (await a.get("/account", allow_redirects=False)).status == 303
    b = await clients(config)
    resp = await _sign_in(b, user.email, password)
    assert resp.headers["Location"] == "/admin/"


async def _audit(database_url: str, user_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT event_type, outcome, metadata FROM keel_audit WHERE target_resource = 'users'"
            " AND target_id = %s ORDER BY id",
            (str(user_id),),
        )
        return [(t, o, m) for t, o, m in await cur.fetchall()]


async def test_every_change_to_the_second_factor_is_behind_the_reauth_wall(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    """Starting and confirming set-up, new backup codes and turning it off all need a recent
    password, and a code as well once one is set up; the wall sends the browser back to the
    set-up page (the forms are posts)."""
    user, password = await make_user("staff")
    a = await clients(config)
    await _sign_in(a, user.email, password)
    secret, codes = await _enrol(a, password)  # asserts the wall on "start"

    # A confirmation from a session that has not re-authenticated is sent to the wall too.
    other, other_password = await make_user("staff")
    b = await clients(config)
    await _sign_in(b, other.email, other_password)
    resp = await _reauth(b, other_password)
    assert resp.status == 303
    page = await (await b.get("/account/two-step")).text()
    html = await (await _post(b, "/account/two-step/start", {}, page)).text()
    pending = _SECRET.search(html)
    assert pending
    c = await clients(config)
    await _sign_in(c, other.email, other_password)
    page = await (await c.get("/account/two-step")).text()
    assert pending.group(1) in page  # the set-up waiting for its code shows here too
    resp = await _post(
        c, "/account/two-step/confirm", {"code": pyotp.TOTP(pending.group(1)).now()}, page
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/reauth?return_to=/account/two-step"

    # With the second factor on: new codes and turning it off need password + code.
    d = await clients(config)
    await _sign_in(d, user.email, password)
    page = await (await d.get("/mfa")).text()
    assert (await _post(d, "/mfa", {"code": codes[0]}, page)).status == 303
    for action in ("regenerate", "disable"):
        page = await (await d.get("/account/two-step")).text()
        resp = await _post(d, f"/account/two-step/{action}", {}, page)
        assert resp.status == 303, action
        assert resp.headers["Location"] == "/reauth?return_to=/account/two-step", action
    assert (await _reauth(d, password)).status == 401  # the password alone is not enough
    resp = await _reauth(d, password, codes[1])
    assert resp.status == 303 and resp.headers["Location"] == "/account/two-step"
    page = await (await d.get("/account/two-step")).text()
    resp = await _post(d, "/account/two-step/regenerate", {}, page)
    assert len(_CODES.findall(await resp.text())) == 10
    page = await (await d.get("/account/two-step")).text()
    resp = await _post(d, "/account/two-step/disable", {}, page)
    assert resp.status == 303 and resp.headers["Location"] == "/account/two-step"
    assert "Two-step sign-in is off" in await (await d.get("/account/two-step")).text()
    assert secret  # the enrolment above was real


async def test_a_held_user_reaches_reauth_and_comes_back_to_set_up(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    """Held on the set-up page by the policy, the user must still pass the re-auth wall to set
    it up: the re-auth page is open to them and leads back; everything else stays shut."""
    strict = replace(config, mfa_policy="required")
    user, password = await make_user("administrator")
    c = await clients(strict)
    await _sign_in(c, user.email, password)
    page = await (await c.get("/account/two-step")).text()
    resp = await _post(c, "/account/two-step/start", {}, page)
    assert resp.headers["Location"] == "/reauth?return_to=/account/two-step"
    resp = await c.get(resp.headers["Location"], allow_redirects=False)
    assert resp.status == 200  # not sent back to the set-up page: no loop
    resp = await _reauth(c, password)
    assert resp.status == 303 and resp.headers["Location"] == "/account/two-step"
    # Re-auth opens nothing else: a return address elsewhere still lands on the hold.
    page = await (await c.get("/reauth?return_to=/admin/users/")).text()
    resp = await _post(c, "/reauth", {"password": password, "return_to": "/admin/users/"}, page)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users/"
    resp = await c.get("/admin/users/", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/account/two-step?return_to=/admin/users/"
    page = await (await c.get("/account/two-step")).text()
    resp = await _post(c, "/account/two-step/start", {}, page)
    html = await resp.text()
    assert resp.status == 200 and _SECRET.search(html), html
    m = _SECRET.search(html)
    assert m
    resp = await _post(c, "/account/two-step/confirm", {"code": pyotp.TOTP(m.group(1)).now()}, html)
    assert len(_CODES.findall(await resp.text())) == 10
    assert (await c.get("/admin/users/", allow_redirects=False)).status == 200


async def test_the_page_asked_for_survives_the_password_and_the_code(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    user, password = await make_user("administrator")
    a = await clients(config)
    await _sign_in(a, user.email, password)
    secret, _codes = await _enrol(a, password)
    wanted = "/admin/bookings/?status=cancelled&o=amount"

    b = await clients(config)
    resp = await b.get(wanted, allow_redirects=False)
    assert resp.status == 303
    login_url = resp.headers["Location"]
    assert login_url.startswith("/login?return_to=")
    html = await (await b.get(login_url)).text()
    assert 'name="return_to" value="/admin/bookings/?status=cancelled&amp;o=amount"' in html
    data = {"email": user.email, "password": password, "return_to": wanted}
    resp = await _post(b, "/login", data, html)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/mfa?return_to=")
    html = await (await b.get(resp.headers["Location"])).text()
    assert 'name="return_to" value="/admin/bookings/?status=cancelled&amp;o=amount"' in html
    # A wrong code keeps it on the page.
    resp = await _post(b, "/mfa", {"code": "000000", "return_to": wanted}, html)
    assert resp.status == 401
    html = await resp.text()
    assert 'name="return_to" value="/admin/bookings/?status=cancelled&amp;o=amount"' in html
    code = pyotp.TOTP(secret).at(time.time() + 30)
    resp = await _post(b, "/mfa", {"code": code, "return_to": wanted}, html)
    assert resp.status == 303 and resp.headers["Location"] == wanted
    assert (await b.get(wanted, allow_redirects=False)).status == 200

    # An address elsewhere is ignored at both steps.
    for evil in ("https://evil.example/admin/", "//evil.example/admin/", "/admin/../../x"):
        c = await clients(config)
        html = await (await c.get("/login")).text()
        data = {"email": user.email, "password": password, "return_to": evil}
        resp = await _post(c, "/login", data, html)
        assert resp.status == 303 and resp.headers["Location"] == "/mfa", evil
        html = await (await c.get("/mfa?return_to=" + evil)).text()
        assert "evil" not in html and 'name="return_to"' not in html
        code = pyotp.TOTP(secret).at(time.time() + 30)
        await _reset_step(c, user.id)
        resp = await _post(c, "/mfa", {"code": code, "return_to": evil}, html)
        assert resp.status == 303 and resp.headers["Location"] == "/admin/", evil


async def test_after_the_set_up_the_held_user_goes_on_to_the_page_asked_for(
    config: Config, clients: Any, make_user: MakeUser
) -> None:
    strict = replace(config, mfa_policy="required")
    user, password = await make_user("administrator")
    wanted = "/admin/bookings/?status=cancelled&o=amount"
    c = await clients(strict)
    html = await (await c.get("/login?return_to=" + quote(wanted, safe="/"))).text()
    resp = await _post(
        c, "/login", {"email": user.email, "password": password, "return_to": wanted}, html
    )
    assert resp.status == 303 and resp.headers["Location"] == wanted
    resp = await c.get(wanted, allow_redirects=False)
    held = resp.headers["Location"]
    assert held == "/account/two-step?return_to=" + quote(wanted, safe="/")
    page = await (await c.get(held)).text()
    field = 'name="return_to" value="/admin/bookings/?status=cancelled&amp;o=amount"'
    assert field in page
    # A return address elsewhere, or the set-up page itself, is not offered.
    for evil in ("https://evil.example/admin/", "//evil.example/admin/", "/account/two-step"):
        other = await (await c.get("/account/two-step?return_to=" + quote(evil))).text()
        assert "Set up two-step sign-in" in other
        assert 'name="return_to"' not in other and "evil" not in other, evil
    # The re-auth wall in between sends the browser back to the set-up page with it.
    resp = await _post(c, "/account/two-step/start", {"return_to": wanted}, page)
    reauth_url = resp.headers["Location"]
    assert reauth_url.startswith("/reauth?return_to=")
    page = await (await c.get(reauth_url)).text()
    back = re.search(r'name="return_to" value="([^"]+)"', page)
    assert back, page
    back_to = back.group(1).replace("&amp;", "&")
    resp = await _post(c, "/reauth", {"password": password, "return_to": back_to}, page)
    assert resp.status == 303
    page = await (await c.get(resp.headers["Location"])).text()
    assert field in page
    resp = await _post(c, "/account/two-step/start", {"return_to": wanted}, page)
    html = await resp.text()
    assert field in html
    m = _SECRET.search(html)
    assert m, html
    code = pyotp.TOTP(m.group(1)).now()
    resp = await _post(c, "/account/two-step/confirm", {"code": code, "return_to": wanted}, html)
    html = await resp.text()
    assert len(_CODES.findall(html)) == 10
    # The codes are shown once; the way on leads to the page first asked for.
    assert 'href="/admin/bookings/?status=cancelled&amp;o=amount"' in html
    assert (await c.get(wanted, allow_redirects=False)).status == 200


async def _reset_step(c: TestClient, user_id: int) -> None:
    """Lets the same authenticator code be used again (replay is tested elsewhere)."""
    url = c.server.app[keys.CONFIG].database_url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE keel_users SET mfa_last_step = NULL WHERE id = %s", (user_id,))


async def test_every_step_is_audited(
    config: Config, clients: Any, make_user: MakeUser, database_url: str
) -> None:
    """Set up, a failed code, a backup code, new backup codes, turning it off, and the policy
    sending a user to set up at sign-in and, after the grace period, refusing them."""
    user, password = await make_user("staff")
    a = await clients(config)
    await _sign_in(a, user.email, password)
    _secret, codes = await _enrol(a, password)
    b = await clients(config)
    await _sign_in(b, user.email, password)
    page = await (await b.get("/mfa")).text()
    assert (await _post(b, "/mfa", {"code": "000000"}, page)).status == 401
    assert (await _post(b, "/mfa", {"code": codes[0]}, page)).status == 303
    assert (await _reauth(b, password, codes[1])).status == 303
    page = await (await b.get("/account/two-step")).text()
    await _post(b, "/account/two-step/regenerate", {}, page)
    page = await (await b.get("/account/two-step")).text()
    await _post(b, "/account/two-step/disable", {}, page)
    rows = await _audit(database_url, user.id)
    seen = [
        (t, m.get("reason") or m.get("kind")) for t, _o, m in rows if t != "sessions_revoked_self"
    ]
    for wanted in (
        ("mfa_enabled", None),
        ("login_failed", "wrong_code"),
        ("mfa_code_consumed", "backup_code"),
        ("backup_codes_regenerated", None),
        ("mfa_disabled", None),
    ):
        assert wanted in seen, (wanted, seen)
    assert not any("code" in str(m).lower() and codes[0] in str(m) for _t, _o, m in rows)

    strict = replace(config, mfa_policy="required", mfa_grace_period=3600.0)
    held, held_password = await make_user("staff")
    c = await clients(strict)
    assert (await _sign_in(c, held.email, held_password)).status == 303
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE keel_users SET mfa_required_since = now() - interval '2 hours' WHERE id = %s",
            (held.id,),
        )
    d = await clients(strict)
    assert (await _sign_in(d, held.email, held_password)).status == 403
    enforced = [(o, m["action"]) for t, o, m in await _audit(database_url, held.id)
                if t == "mfa_policy_enforced"]  # fmt: skip
    assert enforced == [("success", "sent_to_setup"), ("denied", "refused_setup_overdue")]
