"""Dashboard (LIST-11), global search (LIST-12) and saved filters (LIST-8) over real HTTP."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
async def admin(signed_in, seeded):
    return await signed_in("administrator")


async def test_dashboard_shows_counts_new_this_week_events_and_a_sparkline(admin, seeded):
    await seeded.execute(
        "INSERT INTO customers (name, email, city, created_at) VALUES ('New One', 'n@example.org', 'Oslo', now())"
    )
    html = await (await admin.get("/admin/")).text()
    assert "Bookings" in html and "300" in html
    assert "1 new this week" in html  # customers has created_at (LIST-11)
    assert '<svg class="k-sparkline"' in html
    assert "Recent events" in html and "login" in html.lower()


async def test_a_failing_widget_does_not_take_the_page_down(admin, seeded):
    await seeded.execute("ALTER TABLE customers RENAME TO customers_gone")
    resp = await admin.get("/admin/")
    html = await resp.text()
    assert resp.status == 200
    assert "unavailable" in html and "Bookings" in html


async def test_global_search_finds_rows_in_every_resource(admin):
    html = await (await admin.get("/admin/search?q=person12")).text()
    assert "<mark>person12</mark>@example.org" in html
    assert (
        'href="/admin/customers/?q=person12"' in html
        and 'href="/admin/bookings/?q=person12"' in html
    )
    assert (await admin.get("/admin/search?q=" + "x" * 5000)).status == 400


async def test_saved_filters_are_private_and_reopen_the_query(admin, signed_in):
    resp = await admin.post(
        "/admin/bookings/saved-filters", {"name": "Cancelled", "query": "status=cancelled&o=amount"}
    )
    assert resp.status == 303 and "status=cancelled" in resp.headers["Location"]
    html = await (await admin.get("/admin/bookings/")).text()
    link = re.search(r'<a href="(/admin/bookings/\?[^"]+)">Cancelled</a>', html)
    assert link and "status=cancelled" in link.group(1)
    other = await signed_in("administrator")
    assert ">Cancelled</a>" not in await (await other.get("/admin/bookings/")).text()
    fid = re.search(r"/saved-filters/(\d+)/delete", html).group(1)
    assert (await other.post(f"/admin/bookings/saved-filters/{fid}/delete")).status == 303
    assert ">Cancelled</a>" in await (await admin.get("/admin/bookings/")).text()  # not theirs
    await admin.post(f"/admin/bookings/saved-filters/{fid}/delete")
    assert ">Cancelled</a>" not in await (await admin.get("/admin/bookings/")).text()


async def test_saving_bad_filters_answers_400(admin):
    for data in (
        {"name": "", "query": "status=cancelled"},
        {"name": "x" * 81, "query": "status=cancelled"},
        {"name": "evil", "query": "status=%27%20OR%201=1"},
        {"name": "big", "query": "q=" + "x" * 3000},
        {"name": "ctl\x00", "query": "status=cancelled"},
    ):
        resp = await admin.post("/admin/bookings/saved-filters", data)
        assert resp.status == 400, (data["name"][:10], resp.status)
    assert (await admin.post("/admin/bookings/saved-filters/abc/delete")).status in (400, 404)
