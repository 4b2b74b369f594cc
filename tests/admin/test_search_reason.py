"""Global search says why each row matched: the field and its text with the match marked."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from app.admin import lookup, search_reason
from app.admin.listing import Page
from app.admin.resources import BoundResource


async def test_each_hit_names_the_field_and_marks_the_match(signed_in: Any, seeded: Any) -> None:
    admin = await signed_in("administrator")
    html = await (await admin.get("/admin/search?q=person12")).text()
    assert '<th scope="col">Why it matched</th>' in html
    # Customers: own field, value selected with the row.
    assert '<td class="k-search-why">Email: <mark>person12</mark>@example.org</td>' in html
    # Bookings match through the customer's email: the related field is named.
    assert "Customer email: contains <mark>person12</mark>" in html


async def test_a_value_with_html_is_shown_as_text(
    signed_in: Any, seeded: psycopg.AsyncConnection[Any]
) -> None:
    await seeded.execute(
        "UPDATE customers SET name = %s WHERE id = 3",
        ('<img src=x onerror="alert(1)"> Zebulon & Co',),
    )
    admin = await signed_in("administrator")
    html = await (await admin.get("/admin/search?q=zebulon")).text()
    assert "<img src=x" not in html
    assert (
        '<td class="k-search-why">Name: &lt;img src=x onerror=&#34;alert(1)&#34;&gt;'
        " <mark>Zebulon</mark> &amp; Co</td>"
    ) in html


async def test_a_long_value_shows_the_part_around_the_match(
    signed_in: Any, seeded: psycopg.AsyncConnection[Any]
) -> None:
    await seeded.execute(
        "UPDATE customers SET name = %s WHERE id = 4", ("a" * 200 + " needle " + "b" * 200,)
    )
    admin = await signed_in("administrator")
    html = await (await admin.get("/admin/search?q=needle")).text()
    assert "Name: …" + "a" * 29 + " <mark>needle</mark> " + "b" * 29 + "…</td>" in html


async def test_an_exact_key_match_says_id(bound: dict[str, BoundResource]) -> None:
    """Where the key is a search field, a row found by its key says "ID 12", not a substring."""
    customers = bound["customers"]
    keyed = dataclasses.replace(
        customers, resource=dataclasses.replace(customers.resource, search_fields=("id", "name"))
    )
    page = Page(["id", "name"], [(12, "Customer 12"), (5, "Customer 12 b")])
    why = search_reason.reasons(keyed, page, ("12",))
    assert why == ["<mark>ID 12</mark>", "Name: Customer <mark>12</mark> b"]


async def test_the_palette_says_when_a_record_is_offered_for_its_key(
    signed_in: Any, seeded: Any
) -> None:
    admin = await signed_in("administrator")
    found = await (await admin.get("/admin/palette?q=12")).json()
    exact = {r["url"]: r["hint"] for r in found["results"] if r["exact"]}
    assert exact["/admin/customers/12/"] == "ID 12 · Customers"
    assert exact["/admin/bookings/12/"] == "ID 12 · Bookings"
    assert all(not r["hint"].startswith("ID ") for r in found["results"] if not r["exact"])


def _sections(html: str) -> list[tuple[str, str]]:
    """(section title, first row) of each search section, in page order."""
    out = []
    for part in html.split('<section class="k-panel"')[1:]:
        title = part.split('class="k-section-title"', 1)[1].split(">", 1)[1].split("<", 1)[0]
        body = part.split("<tbody>", 1)[1] if "<tbody>" in part else ""
        out.append((title, body.split("</tr>", 1)[0]))
    return out


async def test_a_typed_key_offers_that_record_first_even_where_the_key_is_not_searched(
    signed_in: Any, seeded: psycopg.AsyncConnection[Any]
) -> None:
    # Customers search name and email only; neither says 7 any more.
    await seeded.execute(
        "UPDATE customers SET name = 'Zed', email = 'zed@example.org' WHERE id = 7"
    )
    admin = await signed_in("administrator")
    for q in ("7", "ID 7", "id:7", "#7"):
        resp = await admin.get("/admin/search", params={"q": q})
        assert resp.status == 200, q
        sections = _sections(await resp.text())
        by_title = dict(sections)
        assert "/admin/customers/7/" in by_title["Customers"], q
        assert '<td class="k-search-why"><mark>ID 7</mark></td>' in by_title["Customers"], q
        assert "/admin/bookings/7/" in by_title["Bookings"], q
        # Sections holding the record the key names come before the others.
        exact = [t for t, row in sections if "<mark>ID 7</mark>" in row]
        assert [t for t, _r in sections[: len(exact)]] == exact and len(exact) >= 2, q


async def test_a_key_found_by_its_words_too_is_listed_once(
    signed_in: Any, seeded: psycopg.AsyncConnection[Any]
) -> None:
    admin = await signed_in("administrator")
    html = await (await admin.get("/admin/search?q=120")).text()
    part = html.split('id="search-', 1)[1]
    bookings = next(p for p in part.split("</section>") if ">Bookings</h2>" in p)
    # Booking 120's notes say "late arrival window 120": the key's row, once, saying ID.
    assert bookings.count('href="/admin/bookings/120/') == 1
    assert "<mark>ID 120</mark>" in bookings.split("<tbody>", 1)[1].split("</tr>", 1)[0]


async def test_a_key_beyond_the_column_range_is_no_error(signed_in: Any, seeded: Any) -> None:
    admin = await signed_in("administrator")
    for q in ("ID 99999999999", "9223372036854775808", "ID 0"):
        resp = await admin.get("/admin/search", params={"q": q})
        assert resp.status == 200, q
        assert "unavailable" not in await resp.text(), q


async def test_the_palette_reads_a_typed_key_as_global_search_does(
    signed_in: Any, seeded: psycopg.AsyncConnection[Any]
) -> None:
    await seeded.execute(
        "UPDATE customers SET name = 'Zed', email = 'zed@example.org' WHERE id = 7"
    )
    admin = await signed_in("administrator")
    for q in ("ID 7", "#7"):
        found = (await (await admin.get("/admin/palette", params={"q": q})).json())["results"]
        exact = [r["url"] for r in found if r["exact"]]
        assert "/admin/customers/7/" in exact and "/admin/bookings/7/" in exact, q
        assert found[0]["exact"], q  # the named record before pages and other records


def test_what_reads_as_a_typed_key() -> None:
    for text, key in (
        ("123", "123"), (" ID 123 ", "123"), ("id:123", "123"), ("Id #123", "123"), ("#123", "123"),
        ("0B1E3F1A-51C4-4C2B-9F45-0A8E7C6D5B4A", "0b1e3f1a-51c4-4c2b-9f45-0a8e7c6d5b4a"),
        ("ID", None), ("12 3", None), ("ID 12a", None), ("idea 12", None), ("", None),
    ):  # fmt: skip
        assert lookup.typed_key(text) == key, text


async def test_a_key_value_fits_the_key_column(bound: dict[str, BoundResource]) -> None:
    customers = bound["customers"]  # serial: a 4-byte integer key
    assert lookup.key_value(customers, "7") == 7
    assert lookup.key_value(customers, str(2**31 - 1)) == 2**31 - 1
    assert lookup.key_value(customers, str(2**31)) is None  # out of range: no query error
    assert lookup.key_value(customers, "0b1e3f1a-51c4-4c2b-9f45-0a8e7c6d5b4a") is None
