"""EDIT-9: FK autocomplete search: limited, JSON, needs `view` on the target resource."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.test_edit_support import execute, sign_in

URL = "/admin/customers/lookup"


@pytest.fixture
async def customers(database_url: str) -> None:
    await execute(
        database_url,
        "INSERT INTO customers (id, name, email, city, created_at)"
        " SELECT i, 'Customer ' || i, 'c' || i || '@x.test', 'Oslo', now()"
        " FROM generate_series(1, 120) i",
    )
    await execute(
        database_url,
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (500, 'Richard Adams', 'richard.adams@example.org', 'Rome', now())",
    )


async def test_search_by_name_email_or_key_with_a_limit(
    client: Any, database_url: str, secret_key: str, customers: None
) -> None:
    b = await sign_in(client, database_url, secret_key, role="staff", perms=("customers.view",))
    resp = await b.get(URL, params={"q": "adams"})
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == {"results": [{"id": "500", "label": "Richard Adams"}]}
    data = await (await b.get(URL, params={"q": "richard.adams@"})).json()
    assert [r["id"] for r in data["results"]] == ["500"]
    data = await (await b.get(URL, params={"q": "42"})).json()
    assert {"id": "42", "label": "Customer 42"} in data["results"]
    data = await (await b.get(URL, params={"q": "Customer"})).json()
    assert len(data["results"]) == 20  # never the whole table (the default limit)
    data = await (await b.get(URL, params={"q": "Customer", "limit": "5"})).json()
    assert len(data["results"]) == 5
    data = await (await b.get(URL, params={"q": "%"})).json()
    assert data["results"] == []  # LIKE wildcards are literal


async def test_needs_view_on_the_target_resource(
    client: Any, database_url: str, secret_key: str, customers: None
) -> None:
    """Booking editors pick a customer: that needs customers.view, not bookings.*."""
    b = await sign_in(
        client, database_url, secret_key, role="staff", perms=("bookings.view", "bookings.change")
    )
    resp = await b.get(URL, params={"q": "adams"}, headers={"Accept": "application/json"})
    assert resp.status == 403 and (await resp.json())["error"] == "Not allowed"
    resp = await b.get(URL, params={"q": "adams"})
    assert resp.status == 403 and "customers.view" in await resp.text()  # AUTHZ-8 names it


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 201},
        {"q": "a\x00b"},
        {"q": "a", "limit": "0"},
        {"q": "a", "limit": "51"},
        {"q": "a", "limit": "ten"},
        {"q": "a", "select": "*"},
    ],
)
async def test_bad_parameters_answer_400_json(
    client: Any, database_url: str, secret_key: str, params: dict[str, str]
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.get(URL, params=params)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "Bad request" and body["message"]


async def test_anonymous_lookup_is_refused(client: Any) -> None:
    resp = await client.get(URL, params={"q": "a"}, allow_redirects=False)
    assert resp.status == 303
