"""EDIT-8: bulk actions on selected ids or all matching rows; delete behind re-auth (REAUTH-1)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.admin.test_edit_support import execute, one, sign_in

BASE = "/admin/bookings/bulk"


@pytest.fixture
async def bookings(database_url: str) -> None:
    await execute(
        database_url,
        "INSERT INTO customers (id, name, email, city, created_at) VALUES"
        " (1, 'A', 'a@x.test', 'Oslo', now()), (2, 'B', 'b@x.test', 'Rome', now())",
    )
    await execute(
        database_url,
        "INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, created_at)"
        " SELECT i, 1 + i % 2, CASE WHEN i <= 6 THEN 'pending' ELSE 'cancelled' END, 10,"
        " now(), now() FROM generate_series(1, 10) i",
    )


async def statuses(database_url: str) -> dict[int, str]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT id, status FROM bookings ORDER BY id")
        return dict(await cur.fetchall())


async def test_declared_action_on_selected_ids_is_one_change_and_one_event(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/confirm", [("ids", "1"), ("ids", "2"), ("ids", "3")])
    assert resp.status == 303 and resp.headers["Location"] == "/admin/bookings/"
    s = await statuses(database_url)
    assert [i for i, v in s.items() if v == "confirmed"] == [1, 2, 3]
    events = await one(
        database_url,
        "SELECT array_agg(metadata->'ids') FROM keel_audit WHERE event_type = 'bulk_action'",
    )
    assert events == [["1", "2", "3"]]
    listed = await (await b.get("/admin/bookings/")).text()
    assert "3 bookings:" in listed, "the list says how many rows the action changed"


async def test_action_marked_confirm_asks_first(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """Action `cancel` is declared confirm=True: the first POST shows a confirmation page."""
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/cancel", [("ids", "1"), ("ids", "2")])
    assert resp.status == 200
    page = await resp.text()
    assert "2 bookings record(s)" in page and 'name="confirmed" value="1"' in page
    assert (await statuses(database_url))[1] == "pending"
    resp = await b.post(f"{BASE}/cancel", [("ids", "1"), ("ids", "2"), ("confirmed", "1")])
    assert resp.status == 303
    assert (await statuses(database_url))[1] == "cancelled"


async def test_all_matching_the_filter_uses_the_list_query(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/confirm", {"all": "1", "status": "pending", "customer": "1"})
    # `customer` is not a filter name the list knows: the list's allow-list refuses it (SEC-3).
    assert resp.status == 400
    resp = await b.post(f"{BASE}/confirm", {"all": "1", "status": "pending", "customer_id": "2"})
    assert resp.status == 303
    s = await statuses(database_url)
    assert [i for i, v in s.items() if v == "confirmed"] == [1, 3, 5]  # pending and customer 2


async def test_the_list_pages_form_shape_is_understood(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """The list posts `query` (its state) and `all_matching=1`; after the action it comes back."""
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(
        f"{BASE}/confirm", {"all_matching": "1", "query": "status=pending&customer_id=1&o=-amount"}
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin/bookings/?status=pending&customer_id=1&o=-amount"
    s = await statuses(database_url)
    assert [i for i, v in s.items() if v == "confirmed"] == [2, 4, 6]
    resp = await b.post(f"{BASE}/confirm", [("ids", "7"), ("query", "status=cancelled")])
    assert resp.headers["Location"] == "/admin/bookings/?status=cancelled"
    assert (await statuses(database_url))[7] == "confirmed"  # only the ticked row


async def test_bulk_delete_is_behind_the_reauth_wall(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/delete", [("ids", "1"), ("ids", "2")])
    assert resp.status == 303
    back = resp.headers["Location"]
    assert urlsplit(back).path == f"{BASE}/delete" and parse_qsl(urlsplit(back).query) == [
        ("ids", "1"), ("ids", "2")
    ]  # fmt: skip
    resp = await b.get(back)
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth?return_to=")
    assert await one(database_url, "SELECT count(*) FROM bookings") == 10


async def test_elevated_bulk_delete_confirms_then_deletes(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key, elevated=True)
    resp = await b.get(f"{BASE}/delete", params=[("ids", "1"), ("ids", "2")])
    assert resp.status == 200
    page = await resp.text()
    assert "delete 2 bookings" in page and "Ids: 1, 2" in page
    resp = await b.post(f"{BASE}/delete", [("ids", "1"), ("ids", "2"), ("confirmed", "1")])
    assert resp.status == 303
    assert await one(database_url, "SELECT count(*) FROM bookings") == 8
    meta = await one(
        database_url, "SELECT metadata FROM keel_audit WHERE event_type = 'bulk_action'"
    )
    assert meta["action"] == "delete" and meta["ids"] == ["1", "2"]


async def test_partial_failure_rolls_back_and_says_why(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """Deleting customers where one still has bookings: nothing is deleted, the page says why."""
    await execute(
        database_url,
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (3, 'C', 'c@x.test', 'Oslo', now())",
    )
    b = await sign_in(client, database_url, secret_key, elevated=True)
    page = await (
        await b.get("/admin/customers/bulk/delete", params=[("ids", "1"), ("ids", "3")])
    ).text()
    assert "cannot run on this selection" in page and "bookings" in page  # shown before trying
    resp = await b.post(
        "/admin/customers/bulk/delete", [("ids", "1"), ("ids", "3"), ("confirmed", "1")]
    )
    assert resp.status == 409 and "Nothing was changed" in await resp.text()
    assert await one(database_url, "SELECT count(*) FROM customers") == 3
    assert (
        await one(database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'bulk_action'")
        == 0
    )


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ([("ids", "abc")], 400, "not valid"),
        ([("ids", "1; DELETE FROM bookings")], 400, "not valid"),
        ([("ids", "99999999999999999999")], 400, "not valid"),
        ([("ids", "1"), ("status", "pending")], 400, "Unknown parameter"),
        ([("all", "1"), ("status", "<script>")], 400, "status"),
        ([("all", "1"), ("q", "x" * 5000)], 400, "q"),
    ],
)
async def test_bad_selections_answer_400(
    client: Any,
    database_url: str,
    secret_key: str,
    bookings: None,
    data: list[tuple[str, str]],
    status: int,
    text: str,
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/confirm", data)
    assert resp.status == status
    assert text in await resp.text()
    assert (await statuses(database_url))[1] == "pending"


async def test_nothing_selected_returns_to_the_list_with_a_message(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """No row ticked: the list again, with its filters, and a message saying what to do."""
    b = await sign_in(client, database_url, secret_key)
    for path, data in (
        (f"{BASE}/confirm", [("query", "status=pending&o=amount")]),
        (f"{BASE}/cancel", [("query", "status=pending&o=amount")]),
        (f"{BASE}/delete", [("query", "status=pending&o=amount")]),
    ):
        resp = await b.post(path, data)
        assert resp.status == 303, (path, resp.status)
        assert resp.headers["Location"] == "/admin/bookings/?status=pending&o=amount"
        listed = await (await b.get(resp.headers["Location"])).text()
        assert "Select at least one booking first: nothing was changed." in listed
    resp = await b.get(f"{BASE}/cancel?back=status%3Dpending")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/bookings/?status=pending"
    assert (await statuses(database_url))[1] == "pending"


async def test_unknown_action_is_404(client: Any, database_url: str, secret_key: str) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/drop_table", [("ids", "1")])
    assert resp.status == 404


async def test_oversized_selections_are_refused(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """More ids than a form may carry → 413; more matching rows than one action may touch → 400."""
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(f"{BASE}/confirm", [("ids", str(i)) for i in range(1, 1_002)])
    assert resp.status == 413 and "form fields" in await resp.text()
    await execute(
        database_url,
        "INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, created_at)"
        " SELECT i, 1, 'pending', 1, now(), now() FROM generate_series(11, 10010) i",
    )
    resp = await b.post(f"{BASE}/confirm", {"all": "1", "status": "pending"})
    assert resp.status == 400 and "too many for one bulk action" in await resp.text()
    assert await one(database_url, "SELECT count(*) FROM bookings WHERE status = 'confirmed'") == 0


def flash_links(page: str) -> list[tuple[str, str]]:
    import re

    box = re.search(r'<span class="k-flash-links">(.*?)</span>', page)
    assert box, "the flash links the changed records"
    return re.findall(r'<a href="([^"]+)">([^<]+)</a>', box.group(1))


async def test_the_flash_links_each_changed_record(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key)
    ids = [("ids", "2"), ("ids", "4"), ("ids", "5")]
    resp = await b.post(f"{BASE}/cancel", [*ids, ("confirmed", "1")])
    assert resp.status == 303
    page = await (await b.get(resp.headers["Location"])).text()
    assert "Cancel: 3 bookings:" in page
    assert flash_links(page) == [
        ("/admin/bookings/2/", "Booking 2"),
        ("/admin/bookings/4/", "Booking 4"),
        ("/admin/bookings/5/", "Booking 5"),
    ]
    # The message is read once.
    assert "k-flash-links" not in await (await b.get("/admin/bookings/")).text()


async def test_many_changed_records_link_the_first_few_and_the_rest_as_the_list(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post(
        f"{BASE}/cancel", {"all_matching": "1", "query": "status=pending", "confirmed": "1"}
    )
    assert resp.status == 303
    page = await (await b.get(resp.headers["Location"])).text()
    assert "6 bookings:" in page  # as many as fit: each linked
    assert flash_links(page) == [(f"/admin/bookings/{i}/", f"Booking {i}") for i in range(1, 7)]
    resp = await b.post(f"{BASE}/confirm", {"all_matching": "1", "query": "status=cancelled"})
    page = await (await b.get(resp.headers["Location"])).text()
    assert "10 bookings:" in page
    links = flash_links(page)
    assert links[:5] == [(f"/admin/bookings/{i}/", f"Booking {i}") for i in range(1, 6)]
    assert links[5:] == [("/admin/bookings/?status=cancelled", "and 5 more")]


async def test_a_deletion_links_nothing(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    b = await sign_in(client, database_url, secret_key, elevated=True)
    resp = await b.post(f"{BASE}/delete", [("ids", "1"), ("confirmed", "1")])
    page = await (await b.get(resp.headers["Location"])).text()
    assert "Deleted 1 booking." in page and "k-flash-links" not in page


async def test_the_list_asks_no_question_of_its_own_before_the_confirmation_page(
    client: Any, database_url: str, secret_key: str, bookings: None
) -> None:
    """One confirmation: the confirmation page, not a browser dialog before it as well."""
    b = await sign_in(client, database_url, secret_key)
    page = await (await b.get("/admin/bookings/")).text()
    bar = page[page.index('class="k-bulkbar"') :]
    bar = bar[: bar.index("</div>")]
    assert "/bulk/cancel" in bar and "data-confirm" not in bar
