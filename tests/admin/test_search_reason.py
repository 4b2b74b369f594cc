"""Global search says why each row matched: the field and its text with the match marked."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from app.admin import search_reason
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
