"""List pages over real HTTP: HTML, JSON, state round trips, bad input (LIST-1..10, SEC-3, UI-1..4)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app.admin.values import ascii_html


@pytest.fixture
async def admin(signed_in, seeded):
    return await signed_in("administrator")


async def test_bookings_list_shows_customer_names_sorted_newest_first(admin):
    resp = await admin.get("/admin/bookings/")
    html = await resp.text()
    assert resp.status == 200, html
    assert "<caption>50 shown &middot; 300 in total</caption>" in html
    # LIST-1: the FK cell shows the customer's name, linked to the customer.
    assert re.search(r'<a href="/admin/customers/\d+/">Customer \d+</a>', html)
    # LIST-2: the scheduled header is the active sort, descending.
    assert 'aria-sort="descending"><a class="k-sort" href="?o=scheduled_at">Scheduled</a>' in html
    assert "style=" not in html and "<script>" not in html  # UI-2 / CSP
    # LIST-5: the customer filter autocompletes against the customers' own lookup (EDIT-9).
    assert 'data-autocomplete="/admin/customers/lookup"' in html


async def test_json_format_returns_the_same_page(admin):
    resp = await admin.get("/admin/bookings/?format=json&status=cancelled")
    body = await resp.json()
    assert resp.status == 200
    assert set(body) >= {"rows", "next_cursor", "prev_cursor", "total", "total_is_estimate"}
    assert body["total"] == 60 and body["total_is_estimate"] is False
    assert len(body["rows"]) == 50 and {r["status"] for r in body["rows"]} == {"cancelled"}
    more = await (
        await admin.get(
            "/admin/bookings/",
            params={"status": "cancelled", "cursor": body["next_cursor"]},
            headers={"Accept": "application/json"},
        )
    ).json()
    assert len(more["rows"]) == 10 and more["next_cursor"] is None and more["prev_cursor"]


async def test_row_links_carry_the_list_state_to_the_edit_page(admin):
    resp = await admin.get("/admin/bookings/?status=cancelled&o=amount")
    html = await resp.text()
    href = re.search(r'<a class="k-row-link" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    back = parse_qs(urlsplit(href).query)["back"][0]
    assert parse_qs(back) == {"status": ["cancelled"], "o": ["amount"]}  # LIST-7


async def test_search_highlights_matches(admin):
    html = await (await admin.get("/admin/customers/?q=person7")).text()
    assert "<mark>person7</mark>@example.org" in html


BAD_QUERIES = [
    "nope=1",
    "status=maybe",
    "cursor=forged",
    "per_page=100000",
    "amount__gte=%27%20OR%201%3D1--",
    "q=" + "x" * 10_000,
    "q=%00",
    "scheduled_at=%3Cscript%3E",
    "o=amount&last=1&cursor=abc",
]


async def test_bad_list_parameters_answer_400_with_a_message(admin):
    for query in BAD_QUERIES:  # one signed-in session for all: Argon2 logins are slow
        resp = await admin.get(f"/admin/bookings/?{query}")
        text = await resp.text()
        assert resp.status == 400, (query, text[:300])
        assert "Traceback" not in text and "<script>" not in text


async def test_unknown_resources_are_404(admin):
    assert (await admin.get("/admin/nothing_here/")).status == 404


async def test_a_list_shows_the_filter_bar_of_its_own_query(signed_in: Any, seeded: Any) -> None:
    """The bar is kept per resource and query: each query's page shows its own selection."""
    s = await signed_in("administrator")
    for _ in range(2):  # drawn, then kept
        plain = await (await s.get("/admin/bookings/")).text()
        cancelled = await (await s.get("/admin/bookings/?status=cancelled")).text()
        searched = await (await s.get("/admin/bookings/?q=late")).text()
        assert 'value="cancelled" checked' in cancelled
        assert 'value="cancelled" checked' not in plain
        assert 'id="list-q" type="search" name="q" value="late"' in searched
        assert 'value="late"' not in plain


async def test_pages_of_ascii_data_are_sent_in_ascii(admin: Any) -> None:
    """Keel's own text on the busiest pages is ASCII (entities for "·", "…", "≈", "€"): one
    other character makes CPython keep and encode the whole page the slow way. What a
    browser shows is the same: the entities decode to the signs."""
    for path in (
        "/admin/bookings/",
        "/admin/bookings/?status=cancelled",
        "/admin/bookings/?q=late",
        "/admin/bookings/1/",
        "/admin/customers/",
    ):
        html = await (await admin.get(path)).text()
        assert html.isascii(), (path, sorted({c for c in html if not c.isascii()}))
    listed = await (await admin.get("/admin/bookings/")).text()
    assert "&#8364;" in listed and "€" in unescape(listed)  # the amounts, money:EUR
    assert "Search&hellip;" in listed and "Search…" in unescape(listed)


def test_ascii_html_writes_other_characters_as_references() -> None:
    assert ascii_html("plain &amp; <b>") == "plain &amp; <b>"
    assert ascii_html("€1,234.50 −€3 ≈ 5") == "&#8364;1,234.50 &#8722;&#8364;3 &#8776; 5"
    assert unescape(ascii_html("Zoë 😀")) == "Zoë 😀"
