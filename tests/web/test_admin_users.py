"""Users administration pages: list, create, profile, edit, delete (AUTHZ-3, AUTHZ-5, AUTHZ-7, AUTHZ-8)."""

from __future__ import annotations

import html
import re
from typing import Any

import psycopg
import pytest

from app.authority import guards, users
from app.authority.principal import Principal
from app.errors import PermissionDenied

pytestmark = pytest.mark.asyncio


async def elevate(s: Any) -> None:
    """Pass the re-auth wall (REAUTH-1) with the user's own password."""
    resp = await s.post("/reauth", {"password": s.password, "return_to": "/admin/"})
    assert resp.status == 303, await resp.text()


def edit_form(user: users.User, **changes: Any) -> dict[str, Any]:
    """The edit form as the page would submit it for `user`, with `changes` applied."""
    form: dict[str, Any] = {
        "email": user.email,
        "full_name": user.full_name,
        "display_name": user.display_name,
        "job_title": user.job_title,
        "locale": user.locale,
        "timezone": user.timezone,
        "role": user.role,
    }
    if user.is_active:
        form["is_active"] = "on"
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


async def audit_types(database_url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT event_type FROM keel_audit ORDER BY id")
        return [r[0] for r in await cur.fetchall()]


# ---- who may enter (AUTHZ-7, AUTHZ-8) -----------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "supervisor"])
async def test_users_pages_refuse_below_administrator_naming_the_role(signed_in, role):
    s = await signed_in(role)
    for path in ("/admin/users/", "/admin/users/new", f"/admin/users/{s.user.id}/"):
        resp = await s.get(path)
        assert resp.status == 403, path
        assert "administrator" in await resp.text()  # AUTHZ-8: the 403 names the role


async def test_users_list_needs_a_signed_in_user(client):
    resp = await client.get("/admin/users/", allow_redirects=False)
    assert resp.status in (302, 303)
    assert resp.headers["Location"].startswith("/login")


# ---- list ---------------------------------------------------------------------------------


async def test_list_searches_filters_and_links_to_profiles(signed_in, make_user):
    s = await signed_in("administrator")
    alice, _ = await make_user("staff", email="alice@example.com", full_name="Alice Liddell")
    await make_user("user", email="bob@example.com", active=False)
    page = await (await s.get("/admin/users/")).text()
    assert "alice@example.com" in page and "bob@example.com" in page
    assert f'href="/admin/users/{alice.id}/"' in page
    page = await (await s.get("/admin/users/?q=Liddell")).text()
    assert "alice@example.com" in page and "bob@example.com" not in page
    page = await (await s.get("/admin/users/?role=user&status=inactive")).text()
    assert "bob@example.com" in page and "alice@example.com" not in page
    page = await (await s.get("/admin/users/?q=nobody-here")).text()
    assert "No users match" in page


async def test_list_pages_with_a_cursor(signed_in, make_user, monkeypatch):
    from app.admin.builtin import users as admin_users

    monkeypatch.setattr(admin_users, "PAGE_SIZE", 2)  # a small page instead of 51 users
    s = await signed_in("administrator", email="zz-admin@example.com")
    for n in (0, 1, 2):
        await make_user("user", email=f"a{n}@example.com")

    def shown(page: str) -> list[str]:
        return re.findall(r'class="k-row-link" href="/admin/users/\d+/">([^<]+)<', page)

    first = await (await s.get("/admin/users/?q=a")).text()
    assert shown(first) == ["a0@example.com", "a1@example.com"]
    cursor = re.search(r'href="(/admin/users/\?[^"]*cursor=[^"]+)"', first)
    assert cursor, "no next-page link"
    second = await (await s.get(cursor.group(1).replace("&amp;", "&"))).text()
    assert shown(second) == ["a2@example.com", "zz-admin@example.com"]


@pytest.mark.parametrize(
    "query",
    [
        "?role=emperor",
        "?status=maybe",
        "?last_sign_in=someday",
        "?last_sign_in__gte=yesterday",
        "?cursor=!!!not-a-cursor",
        "?cursor=" + "A" * 700,
        "?q=" + "x" * 101,
        "?q=%00",
        "?q=%27%3B%20DROP%20TABLE%20keel_users%3B--",
    ],
)
async def test_list_answers_bad_parameters_with_400(signed_in, query):
    s = await signed_in("administrator")
    resp = await s.get("/admin/users/" + query)
    if "DROP" in query:  # a hostile search is just a search that finds nothing
        assert resp.status == 200
        assert "No users match" in await resp.text()
    else:
        assert resp.status == 400, query
        assert "DROP" not in await resp.text()


# ---- create -------------------------------------------------------------------------------


async def test_create_with_one_time_password_shows_it_once(signed_in, client):
    s = await signed_in("administrator")
    resp = await s.post(
        "/admin/users/new",
        {"email": "New.Person@Example.com", "full_name": "New Person", "role": "staff",
         "groups": "editor", "password_mode": "onetime"},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    password = re.search(r'id="one-time-password">([^<]+)<', page).group(1)
    assert "new.person@example.com" in page
    # The new user signs in with it and is held on the change page (LOGIN-7).
    from tests.web.conftest import sign_in

    resp = await sign_in(client, "new.person@example.com", password)
    assert resp.status == 303
    resp = await client.get("/admin/", allow_redirects=False)
    assert resp.headers.get("Location", "").startswith("/must-change-password")
    listing = await (await s.get("/admin/users/?q=new.person")).text()
    assert password not in listing


async def test_create_with_a_chosen_password_checks_the_policy(signed_in, database_url):
    s = await signed_in("administrator")
    form = {"email": "carol@example.com", "role": "user", "password_mode": "set"}
    resp = await s.post(
        "/admin/users/new", {**form, "password": "short", "password_confirm": "short"}
    )
    assert resp.status == 400
    assert "at least 12" in await resp.text()  # LOGIN-6: the message names the rule
    good = "violet tractor mango 88"
    resp = await s.post("/admin/users/new", {**form, "password": good, "password_confirm": "other"})
    assert resp.status == 400
    assert "differ" in await resp.text()
    resp = await s.post("/admin/users/new", {**form, "password": good, "password_confirm": good})
    assert resp.status == 303
    assert re.fullmatch(r"/admin/users/\d+/", resp.headers["Location"])
    assert "user_created" in await audit_types(database_url)


async def test_create_refuses_a_duplicate_email_with_409(signed_in, make_user):
    s = await signed_in("administrator")
    await make_user("user", email="dup@example.com")
    resp = await s.post(
        "/admin/users/new", {"email": "DUP@example.com", "role": "user", "password_mode": "onetime"}
    )
    assert resp.status == 409
    assert "already exists" in await resp.text()


def ceiling_message(actor_role: str, role: str) -> str:
    """The role-ceiling guard's own words, as the CLI and the services say them (AUTHZ-3)."""
    who = Principal(1, "a@example.com", actor_role, "A")
    with pytest.raises(PermissionDenied) as err:
        guards.check_role_ceiling(who, role)
    return html.escape(err.value.problem, quote=False)


async def test_create_offers_only_roles_up_to_ones_own_and_the_guard_refuses_more(
    signed_in, database_url
):
    s = await signed_in("administrator")
    page = await (await s.get("/admin/users/new")).text()
    assert 'value="administrator"' in page and 'value="developer"' not in page
    # A crafted form naming a real role above one's own reaches AUTHZ-3 guard 3: its 403 page
    # with its own message (naming the role), not a 400 for an unoffered value.
    resp = await s.post(
        "/admin/users/new",
        {"email": "x@example.com", "role": "developer", "password_mode": "onetime"},
    )
    assert resp.status == 403
    body = await resp.text()
    assert ceiling_message("administrator", "developer") in body
    assert "offered values" not in body
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert await users.find_id_by_email(conn, "x@example.com") is None
    # A role that is not on the ladder at all is still bad input.
    resp = await s.post(
        "/admin/users/new", {"email": "x@example.com", "role": "king", "password_mode": "onetime"}
    )
    assert resp.status == 400


# ---- profile ------------------------------------------------------------------------------


async def test_profile_shows_permissions_with_their_source_and_sessions(
    signed_in, make_user, database_url
):
    s = await signed_in("administrator")
    member = await signed_in("staff", groups=["viewer"])
    await s.post(
        f"/admin/users/{member.user.id}/edit",
        edit_form(member.user, groups="viewer", perms="customers.change"),
    )
    page = await (await s.get(f"/admin/users/{member.user.id}/")).text()
    assert re.search(r"customers\.view</td><td>via viewer", page)
    assert re.search(r"customers\.change</td><td>direct", page)
    assert "Sessions" in page and "127.0.0.1" in page  # the member's live session
    assert "Recent activity" in page


async def test_profile_of_unknown_or_malformed_id_is_404(signed_in):
    s = await signed_in("administrator")
    assert (await s.get("/admin/users/999999/")).status == 404
    assert (await s.get("/admin/users/abc/")).status == 404
    assert (await s.get("/admin/users/99999999999999999999999/")).status == 404


# ---- edit: profile, role, active, groups, direct permissions ------------------------------


async def test_edit_profile_fields_are_saved_and_audited(signed_in, make_user, database_url):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    resp = await s.post(
        f"/admin/users/{target.id}/edit",
        edit_form(target, full_name="Dana Scully", job_title="Agent", timezone="Europe/Paris"),
    )
    assert resp.status == 303
    assert resp.headers["Location"] == f"/admin/users/{target.id}/"
    page = await (await s.get(resp.headers["Location"])).text()
    assert "Dana Scully" in page and "Changes saved." in page
    assert "user_updated" in await audit_types(database_url)


async def test_role_change_needs_reauth_and_applies_on_the_next_request(signed_in):
    admin = await signed_in("administrator")
    staff = await signed_in("staff")
    assert (await staff.get("/admin/")).status == 200
    form = edit_form(staff.user, role="user")
    resp = await admin.post(f"/admin/users/{staff.user.id}/edit", form)
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth")  # REAUTH-1
    await elevate(admin)
    resp = await admin.post(f"/admin/users/{staff.user.id}/edit", form)
    assert resp.status == 303 and resp.headers["Location"] == f"/admin/users/{staff.user.id}/"
    # AUTHZ-5: the demotion revoked the sessions; the next request is asked to sign in.
    resp = await staff.get("/admin/")
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")


async def test_deactivation_ends_the_users_sessions_at_once(signed_in):
    admin = await signed_in("administrator")
    staff = await signed_in("staff")
    await elevate(admin)
    resp = await admin.post(
        f"/admin/users/{staff.user.id}/edit", edit_form(staff.user, is_active=None)
    )
    assert resp.status == 303
    resp = await staff.get("/admin/")
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")


async def test_direct_permission_change_applies_on_the_next_request(signed_in):
    """AUTHZ-5: no stale cache; grant and revoke through the page take effect at once."""
    admin = await signed_in("administrator")
    staff = await signed_in("staff")
    assert (await staff.get("/admin/customers/")).status == 403
    url = f"/admin/users/{staff.user.id}/edit"
    assert (await admin.post(url, edit_form(staff.user, perms="customers.view"))).status == 303
    assert (await staff.get("/admin/customers/")).status == 200
    assert (await admin.post(url, edit_form(staff.user))).status == 303
    assert (await staff.get("/admin/customers/")).status == 403


async def test_guard_messages_are_403_pages_naming_the_rule(signed_in, make_user, database_url):
    """AUTHZ-3: each guard has its own message, shown as a 403 inside the page chrome."""
    admin = await signed_in("administrator")
    await elevate(admin)
    # 1. no self-demotion
    resp = await admin.post(
        f"/admin/users/{admin.user.id}/edit", edit_form(admin.user, role="staff")
    )
    assert resp.status == 403
    assert "cannot lower your own role" in await resp.text()
    # 1. no self-deactivation
    resp = await admin.post(
        f"/admin/users/{admin.user.id}/edit", edit_form(admin.user, is_active=None)
    )
    assert resp.status == 403
    assert "cannot deactivate your own account" in await resp.text()
    # 2. no action on equal rank
    peer, _ = await make_user("administrator")
    resp = await admin.get(f"/admin/users/{peer.id}/edit")
    assert resp.status == 403
    assert "is not below yours" in await resp.text()
    dev, _ = await make_user("developer")
    resp = await admin.post(f"/admin/users/{dev.id}/edit", edit_form(dev, full_name="X"))
    assert resp.status == 403  # refused for the rank, not for the role it does not offer
    assert "is not below yours" in await resp.text()
    # 3. no role above one's own: the picker does not offer it, and a crafted form gets the
    # guard's own 403 (the same words as the CLI), with nothing changed.
    target, _ = await make_user("staff")
    page = await (await admin.get(f"/admin/users/{target.id}/edit")).text()
    assert 'value="administrator"' in page and 'value="developer"' not in page
    resp = await admin.post(f"/admin/users/{target.id}/edit", edit_form(target, role="developer"))
    assert resp.status == 403
    assert ceiling_message("administrator", "developer") in await resp.text()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert (await users.get(conn, target.id)).role == "staff"


async def test_role_ceiling_is_refused_before_the_reauth_wall(signed_in, make_user):
    """Guard 3 needs no password first: the refusal comes before the re-auth wall, like delete."""
    admin = await signed_in("administrator")
    target, _ = await make_user("user")
    resp = await admin.post(f"/admin/users/{target.id}/edit", edit_form(target, role="developer"))
    assert resp.status == 403
    assert ceiling_message("administrator", "developer") in await resp.text()
    # Roles up to one's own still go through the wall.
    resp = await admin.post(f"/admin/users/{target.id}/edit", edit_form(target, role="staff"))
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth")


async def test_orphan_guard_keeps_the_last_administrator(signed_in):
    dev = await signed_in("developer")
    admin = await signed_in("administrator")
    await elevate(dev)
    resp = await dev.post(f"/admin/users/{admin.user.id}/edit", edit_form(admin.user, role="staff"))
    assert resp.status == 403
    assert "last active administrator" in await resp.text()
    # The refused form changed nothing, not even the fields that passed (one transaction).
    async_page = await (await dev.get(f"/admin/users/{admin.user.id}/")).text()
    assert "Administrator" in async_page


async def test_a_refused_edit_changes_nothing(signed_in, make_user, database_url):
    dev = await signed_in("developer")
    admin = await signed_in("administrator")
    await elevate(dev)
    form = edit_form(admin.user, role="staff", full_name="Should Not Stick")
    assert (await dev.post(f"/admin/users/{admin.user.id}/edit", form)).status == 403
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        after = await users.get(conn, admin.user.id)
    assert after.full_name == admin.user.full_name and after.role == "administrator"


# ---- delete -------------------------------------------------------------------------------


async def test_delete_confirms_behind_the_wall_then_removes(signed_in, make_user, database_url):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    resp = await admin.get(f"/admin/users/{target.id}/delete")
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth")
    await elevate(admin)
    page = await (await admin.get(f"/admin/users/{target.id}/delete")).text()
    assert target.email in page and 'name="csrf_token"' in page
    resp = await admin.post(f"/admin/users/{target.id}/delete")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users/"
    assert (await admin.get(f"/admin/users/{target.id}/")).status == 404
    assert "user_deleted" in await audit_types(database_url)


async def test_delete_refuses_self_and_equal_rank(signed_in, make_user):
    admin = await signed_in("administrator")
    peer, _ = await make_user("administrator")
    resp = await admin.post(f"/admin/users/{admin.user.id}/delete")
    assert resp.status == 403 and "cannot delete your own account" in await resp.text()
    resp = await admin.post(f"/admin/users/{peer.id}/delete")
    assert resp.status == 403 and "not below yours" in await resp.text()


async def test_delete_without_csrf_token_is_refused(signed_in, make_user):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(admin)
    resp = await admin.client.post(f"/admin/users/{target.id}/delete", allow_redirects=False)
    assert resp.status == 403  # SEC-1
    assert (await admin.get(f"/admin/users/{target.id}/")).status == 200


async def test_administrators_edit_their_own_profile_fields(signed_in):
    admin = await signed_in("administrator")
    resp = await admin.post(
        f"/admin/users/{admin.user.id}/edit", edit_form(admin.user, display_name="Boss")
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/admin/users/{admin.user.id}/"
    page = await (await admin.get(f"/admin/users/{admin.user.id}/")).text()
    assert "Boss" in page and "your account page" in page
