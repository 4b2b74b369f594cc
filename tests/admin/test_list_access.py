"""Who may open the list pages (AUTHZ-2, AUTHZ-8, LIST-11, LIST-12): the role ladder and `<slug>.view`."""

from __future__ import annotations

import pytest

LIST_URLS = ["/admin/bookings/", "/admin/bookings/?format=json", "/admin/bookings/export.csv"]


async def _grant(conn, user_id: int, perm: str) -> None:
    await conn.execute(
        "INSERT INTO keel_user_permissions (user_id, permission) VALUES (%s, %s)", (user_id, perm)
    )


@pytest.mark.parametrize(
    ("role", "perm", "allowed"),
    [
        ("user", None, False),
        ("staff", None, False),
        ("staff", "bookings.view", True),
        ("staff", "customers.view", False),
        ("supervisor", None, False),
        ("supervisor", "bookings.view", True),
        ("administrator", None, True),
        ("developer", None, True),
    ],
)
async def test_list_routes_follow_the_role_ladder_and_view_permission(
    signed_in, seeded, role, perm, allowed
):
    s = await signed_in(role)
    if perm:
        await _grant(seeded, s.user.id, perm)
    for url in LIST_URLS:
        resp = await s.get(url)
        body = await resp.read()
        if allowed:
            assert resp.status == 200, (url, body[:300])
        elif role == "user":
            assert resp.status in (302, 303, 403), url  # users never enter the admin
        else:
            assert resp.status == 403, (url, resp.status)
            assert b"bookings.view" in body, "AUTHZ-8: the page names what is missing"
            if "json" in url:  # scripts get it as JSON, with the request id to quote
                data = await resp.json()
                assert data["missing"] == "bookings.view" and data["request_id"]
    # The dashboard and global search are the admin's entry: staff and up.
    for url in ("/admin/", "/admin/search?q=person"):
        resp = await s.get(url)
        assert (resp.status == 200) == (role != "user"), (url, resp.status)


async def test_staff_see_only_resources_they_may_view(signed_in, seeded):
    s = await signed_in("staff")
    await _grant(seeded, s.user.id, "customers.view")
    dash = await (await s.get("/admin/")).text()
    assert 'href="/admin/customers/"' in dash and 'href="/admin/bookings/"' not in dash
    found = await (await s.get("/admin/search?q=person7")).text()
    assert "<mark>person7</mark>@example.org" in found and ">Bookings<" not in found


async def test_anonymous_visitors_are_sent_to_login(client, seeded):
    for url in ("/admin/", "/admin/bookings/", "/admin/search?q=x", "/admin/bookings/export.csv"):
        resp = await client.get(url, allow_redirects=False)
        assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login"), url
