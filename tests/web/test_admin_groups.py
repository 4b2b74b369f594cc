"""Groups administration: list, create, permission grid saved as a diff, members, delete (AUTHZ-4/5/7)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from aiohttp import FormData

pytestmark = pytest.mark.asyncio


async def group_id(database_url: str, name: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT id FROM keel_groups WHERE name = %s", (name,))
        row = await cur.fetchone()
    assert row, f"no group {name}"
    return int(row[0])


async def events(database_url: str, *types: str) -> list[tuple[str, dict[str, Any]]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT event_type, metadata FROM keel_audit WHERE event_type = ANY(%s) ORDER BY id",
            (list(types),),
        )
        return [(t, m) for t, m in await cur.fetchall()]


def checked(page: str) -> set[str]:
    return set(re.findall(r'name="perms" value="([^"]+)"[^>]*checked', page))


@pytest.mark.parametrize("role", ["staff", "supervisor"])
async def test_groups_pages_need_administrator(signed_in, database_url, role):
    s = await signed_in(role)
    gid = await group_id(database_url, "viewer")
    for path in ("/admin/groups/", "/admin/groups/new", f"/admin/groups/{gid}/"):
        resp = await s.get(path)
        assert resp.status == 403 and "administrator" in await resp.text()
    resp = await s.post(f"/admin/groups/{gid}/delete")
    assert resp.status == 403


async def test_list_shows_member_and_permission_counts(signed_in, make_user, database_url):
    s = await signed_in("administrator")
    await make_user("staff", groups=["viewer"])
    page = await (await s.get("/admin/groups/")).text()
    gid = await group_id(database_url, "viewer")
    row = re.search(rf'href="/admin/groups/{gid}/">viewer</a>.*?</tr>', page, re.S).group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "5"]  # 1 member, 5 views


async def test_create_then_grid_saves_only_the_difference(signed_in, database_url):
    s = await signed_in("administrator")
    resp = await s.post("/admin/groups/new", {"name": "support", "description": "Front desk"})
    assert resp.status == 303
    url = resp.headers["Location"] + "edit"
    page = await (await s.get(url)).text()
    assert "support" in page and 'name="perms"' in page
    resp = await s.post(url, {"name": "support", "description": "Front desk",
                               "perms": ["customers.view", "bookings.view", "bookings.confirm"]})  # fmt: skip
    assert resp.status == 303
    assert checked(await (await s.get(url)).text()) == {
        "customers.view", "bookings.view", "bookings.confirm",
    }  # fmt: skip
    resp = await s.post(url, {"name": "support", "description": "Front desk",
                               "perms": ["customers.view", "customers.change"]})  # fmt: skip
    assert resp.status == 303
    granted = await events(database_url, "permission_granted", "permission_revoked")
    # Only the changes: first grant of three, then one grant and one revocation of two.
    assert [(t, m["permissions"]) for t, m in granted[-3:]] == [
        ("permission_granted", ["bookings.confirm", "bookings.view", "customers.view"]),
        ("permission_granted", ["customers.change"]),
        ("permission_revoked", ["bookings.confirm", "bookings.view"]),
    ]
    resp = await s.post(url, {"name": "support", "description": "Front desk",
                               "perms": ["customers.view", "customers.change"]})  # fmt: skip
    assert resp.headers["Location"] == url.removesuffix("edit")


async def test_group_permission_change_applies_to_members_on_their_next_request(
    signed_in, database_url
):
    """AUTHZ-5: no stale cache anywhere between the grid and the member's next request."""
    admin = await signed_in("administrator")
    resp = await admin.post("/admin/groups/new", {"name": "desk"})
    url = resp.headers["Location"].split("?")[0]
    staff = await signed_in("staff")
    resp = await admin.post(f"{url}members", {"op": "add", "email": staff.user.email.upper()})
    assert resp.status == 303
    assert (await staff.get("/admin/customers/")).status == 403
    assert (
        await admin.post(f"{url}edit", {"name": "desk", "perms": "customers.view"})
    ).status == 303
    assert (await staff.get("/admin/customers/")).status == 200
    assert (await admin.post(f"{url}edit", {"name": "desk"})).status == 303
    assert (await staff.get("/admin/customers/")).status == 403


async def test_members_are_added_by_email_and_removed(signed_in, make_user, database_url):
    admin = await signed_in("administrator")
    member, _ = await make_user("staff", email="member@example.com")
    gid = await group_id(database_url, "editor")
    url = f"/admin/groups/{gid}/members"
    resp = await admin.post(url, {"op": "add", "email": "member@example.com"})
    assert resp.status == 303
    page = await (await admin.get(f"/admin/groups/{gid}/")).text()
    assert "member@example.com" in page
    resp = await admin.post(url, {"op": "add", "email": "nobody@example.com"})
    assert resp.status == 400 and "No user has the email" in await resp.text()
    resp = await admin.post(url, {"op": "remove", "user_id": str(member.id)})
    assert resp.status == 303
    page = await (await admin.get(f"/admin/groups/{gid}/")).text()
    assert "member@example.com" not in page
    types = [t for t, _ in await events(database_url, "group_updated")]
    assert types.count("group_updated") >= 2


async def test_adding_an_equal_rank_member_is_refused_by_the_rank_guard(
    signed_in, make_user, database_url
):
    admin = await signed_in("administrator")
    peer, _ = await make_user("administrator", email="peer@example.com")
    gid = await group_id(database_url, "editor")
    resp = await admin.post(f"/admin/groups/{gid}/members", {"op": "add", "email": peer.email})
    assert resp.status == 403 and "not below yours" in await resp.text()


async def test_delete_asks_then_removes_and_members_lose_the_permissions(signed_in, database_url):
    admin = await signed_in("administrator")
    staff = await signed_in("staff", groups=["viewer"])
    gid = await group_id(database_url, "viewer")
    assert (await staff.get("/admin/customers/")).status == 200
    page = await (await admin.get(f"/admin/groups/{gid}/delete")).text()
    assert "Delete the group viewer?" in page and 'name="csrf_token"' in page
    resp = await admin.post(f"/admin/groups/{gid}/delete")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/groups/"
    assert (await admin.get(f"/admin/groups/{gid}/")).status == 404
    assert (await staff.get("/admin/customers/")).status == 403
    assert await events(database_url, "group_deleted")


# ---- bad input (SEC-3): 400 or 413 with a message, never 500 ------------------------------


async def test_create_refuses_bad_names_with_400(signed_in):
    s = await signed_in("administrator")
    for form in (
        {},
        {"name": ""},
        {"name": "x" * 81},
        {"name": "<script>alert(1)</script>"},
        {"name": "a\x00b"},
        {"name": "'; DROP TABLE keel_groups; --"},
        {"name": "ok", "description": "d" * 501},
        {"name": "ok", "description": "line\nbreak"},
    ):
        resp = await s.post("/admin/groups/new", form)
        assert resp.status == 400, form
        page = await resp.text()
        assert "<script>alert(1)</script>" not in page  # echoed escaped, if at all
    resp = await s.post("/admin/groups/new", {"name": "Viewer"})
    assert resp.status == 409 and "already exists" in await resp.text()


async def test_grid_and_members_refuse_hostile_values_with_400(signed_in, database_url):
    s = await signed_in("administrator")
    gid = await group_id(database_url, "editor")
    for perms in ("customers.fly", "x' OR '1'='1", "<b>customers.view</b>", "customers.view\x00"):
        resp = await s.post(f"/admin/groups/{gid}/edit", {"name": "editor", "perms": perms})
        assert resp.status == 400, perms
        assert "not one of the offered values" in await resp.text()
    for form in (
        {},
        {"op": "fly"},
        {"op": "add"},
        {"op": "add", "email": "not an email"},
        {"op": "add", "email": "a@b.c" + "x" * 400},
        {"op": "remove"},
        {"op": "remove", "user_id": "1; DROP TABLE keel_users"},
    ):
        resp = await s.post(f"/admin/groups/{gid}/members", form)
        assert resp.status == 400, form


async def test_oversized_and_file_bodies_are_refused_without_a_500(signed_in, database_url):
    s = await signed_in("administrator")
    gid = await group_id(database_url, "editor")
    resp = await s.post(f"/admin/groups/{gid}/edit", {"name": "editor", "perms": "x" * (10 << 20)})
    assert resp.status == 413
    data = FormData()
    data.add_field("csrf_token", s.csrf)
    data.add_field("name", b"editor", filename="name.txt", content_type="text/plain")
    resp = await s.client.post("/admin/groups/new", data=data, allow_redirects=False)
    assert resp.status == 400 and "must be text" in await resp.text()


async def test_unknown_or_malformed_group_ids_are_404(signed_in):
    s = await signed_in("administrator")
    for path in ("/admin/groups/999999/", "/admin/groups/abc/", "/admin/groups/0/delete"):
        assert (await s.get(path)).status == 404, path
    assert (await s.post("/admin/groups/999999/delete")).status == 404


async def test_name_and_description_are_editable(signed_in, database_url):
    s = await signed_in("administrator")
    gid = await group_id(database_url, "editor")
    page = await (await s.get(f"/admin/groups/{gid}/edit")).text()
    name_input = re.search(r'<input[^>]*name="name"[^>]*>', page).group(0)
    assert "readonly" not in name_input
    resp = await s.post(f"/admin/groups/{gid}/edit", {"name": "writers", "description": "Copy"})
    assert resp.status == 303
    assert await group_id(database_url, "writers") == gid
    assert await events(database_url, "group_updated")


async def test_rename_records_from_and_to_and_refuses_taken_or_bad_names(signed_in, database_url):
    """AUTHZ-4/INV-3: one group_updated event with the diff; a taken name (any case) is a 409
    form error, a hostile one a 400, and neither changes anything."""
    s = await signed_in("administrator")
    gid = await group_id(database_url, "editor")
    resp = await s.post(
        f"/admin/groups/{gid}/edit", {"name": "Editors", "description": "Edits data"}
    )
    assert resp.status == 303
    [(_, meta)] = await events(database_url, "group_updated")
    assert meta["changes"]["name"] == {"from": "editor", "to": "Editors"}
    assert meta["changes"]["description"]["to"] == "Edits data"
    taken = await s.post(f"/admin/groups/{gid}/edit", {"name": "VIEWER", "description": ""})
    assert taken.status == 409 and "already exists" in await taken.text()
    for bad in ("<script>x</script>", "a\x00b", "x" * 81):
        resp = await s.post(f"/admin/groups/{gid}/edit", {"name": bad, "description": ""})
        assert resp.status == 400, bad
    assert await group_id(database_url, "Editors") == gid
    assert len(await events(database_url, "group_updated")) == 1


async def test_the_grid_names_resources_and_actions_as_the_pages_do(signed_in, database_url):
    """Rows read "Bookings", boxes "View Bookings", custom actions their declared label."""
    s = await signed_in("administrator")
    gid = await group_id(database_url, "viewer")
    page = await (await s.get(f"/admin/groups/{gid}/edit")).text()
    assert re.search(r'<th scope="row">Bookings <span[^>]*>bookings</span></th>', page)
    assert 'aria-label="View Bookings"' in page
    assert re.search(r'value="bookings\.confirm"[^>]*> Set status to confirmed</label>', page)
