"""A record's page reads its row with the session lookup, and a list page sends its questions
in the lookup's pipeline (app/web/prefetch.py).

One statement answers "whose session is this" and "what is record 7", so the page costs one
round trip; a list's page, total and saved views go with the lookup in one pipeline. What the tests hold it to: the page shows what it showed before; the row is used
only after the permission check, only by its own request and only when the handler asks for
the same statement; a session that is not live gets no row; a statement that fails leaves
the request exactly where it would have been without it."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from app.web import prefetch
from tests.admin.test_edit_support import Browser, execute, sign_in

pytestmark = pytest.mark.asyncio

NOTE = "late arrival window 10"  # booking 10's notes in the seed


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each `take` found its row already read (True) or the handler had to ask."""
    seen: list[bool] = []
    real = prefetch.take

    def spy(request: Any, statement: prefetch.Statement) -> Any:
        rows = real(request, statement)
        seen.append(rows is not None)
        return rows

    monkeypatch.setattr(prefetch, "take", spy)
    return seen


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each list page found its questions already answered (True) or asked them."""
    seen: list[bool] = []
    real = prefetch.take_batch

    def spy(request: Any) -> Any:
        taken = real(request)
        seen.append(taken is not None)
        return taken

    monkeypatch.setattr(prefetch, "take_batch", spy)
    return seen


@pytest.fixture
async def admin(client: Any, database_url: str, secret_key: str, seeded: Any) -> Browser:
    return await sign_in(client, database_url, secret_key, role="administrator")


async def test_a_record_page_shows_the_row_read_with_the_session(
    client: Any, database_url: str, secret_key: str, seeded: Any, taken: list[bool]
) -> None:
    admin = await sign_in(client, database_url, secret_key, role="administrator")
    resp = await admin.get("/admin/bookings/10/")
    page = await resp.text()
    assert resp.status == 200, page[:300]
    assert NOTE in page and "Customer 31" in page  # the row and its customer's name
    assert taken == [True]


async def test_the_row_is_not_shown_to_a_user_who_may_not_view_it(
    client: Any, database_url: str, secret_key: str, seeded: Any, taken: list[bool]
) -> None:
    staff = await sign_in(client, database_url, secret_key, role="staff", perms=("customers.view",))
    resp = await staff.get("/admin/bookings/10/")
    assert resp.status == 403
    assert NOTE not in await resp.text()
    assert taken == []  # refused before the handler asked for its row


async def test_a_session_that_is_not_live_gets_no_row(
    client: Any, database_url: str, secret_key: str, seeded: Any, taken: list[bool]
) -> None:
    stranger = Browser(client, secrets.token_urlsafe(32), secret_key, "nobody@example.com")
    resp = await stranger.get("/admin/bookings/10/")
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    assert NOTE not in await resp.text()
    assert taken == []


async def test_a_missing_record_is_a_404_and_a_deleted_one_too(
    admin: Browser, database_url: str, taken: list[bool]
) -> None:
    resp = await admin.get("/admin/bookings/99999/")
    assert resp.status == 404 and "does not exist" in await resp.text()
    assert (await admin.get("/admin/bookings/12/")).status == 200
    await execute(database_url, "DELETE FROM bookings WHERE id = 12")
    assert (await admin.get("/admin/bookings/12/")).status == 404
    assert taken == [True, True, True]  # "no such row" came with the session too


async def test_an_address_that_names_no_record_plans_nothing(
    admin: Browser, taken: list[bool]
) -> None:
    resp = await admin.get("/admin/bookings/not-a-number/")
    assert resp.status == 400 and "names no record" in await resp.text()
    assert (await admin.get("/admin/no-such-thing/1/")).status == 404
    assert taken == []


async def test_a_failing_statement_leaves_the_request_as_it_was(
    client: Any, database_url: str, secret_key: str, seeded: Any, taken: list[bool]
) -> None:
    """A column dropped behind the running server: the joined statement fails, the session is
    still found on its own, and the page meets the error itself, as it did before."""
    admin = await sign_in(client, database_url, secret_key, role="administrator")
    assert (await admin.get("/admin/bookings/10/")).status == 200
    taken.clear()
    await execute(database_url, "ALTER TABLE bookings DROP COLUMN notes")
    resp = await admin.get("/admin/bookings/10/")
    text = await resp.text()
    # The same answer as without the joined statement: a changed table is named, not a 500.
    assert resp.status == 503, (resp.status, text[:2000])
    main = text[text.find("<main") :]
    assert "has changed since the server started" in main and "keel doctor" in main, main[:1500]
    assert "Traceback" not in text
    assert "/logout" in text  # still signed in: the session was found without the row
    assert taken == [False]
    # The next page is unaffected: the connection went back to the pool usable.
    assert (await admin.get("/admin/customers/3/")).status == 200


async def test_a_list_page_shows_what_was_read_with_the_session(
    admin: Browser, batches: list[bool]
) -> None:
    """The page, its total and the user's saved views, for HTML and JSON alike."""
    await admin.post("/admin/bookings/saved-filters", {"name": "Late", "query": "q=late"})
    batches.clear()
    page = await (await admin.get("/admin/bookings/?q=late+arrival")).text()
    assert "late arrival" in page and ">Late</a>" in page
    assert re.search(r'<p class="k-page-subtitle">\d+ matching', page)  # counted, not "many"
    resp = await admin.get("/admin/bookings/?status=cancelled&format=json")
    body = await resp.json()
    assert resp.status == 200 and body["rows"] and body["total"] is not None
    assert {r["status"] for r in body["rows"]} == {"cancelled"}
    unfiltered = await (await admin.get("/admin/bookings/")).text()
    assert '<p class="k-page-subtitle">300 in total' in unfiltered  # the estimate, exact here
    assert batches == [True, True, True]


async def test_a_list_is_not_shown_to_a_user_who_may_not_view_it(
    client: Any, database_url: str, secret_key: str, seeded: Any, batches: list[bool]
) -> None:
    staff = await sign_in(client, database_url, secret_key, role="staff", perms=("customers.view",))
    resp = await staff.get("/admin/bookings/?q=late+arrival")
    assert resp.status == 403 and "late arrival" not in await resp.text()
    assert batches == []  # refused before the handler asked for its rows
    stranger = Browser(client, secrets.token_urlsafe(32), secret_key, "nobody@example.com")
    resp = await stranger.get("/admin/bookings/?q=late+arrival")
    assert resp.status == 303 and "late arrival" not in await resp.text()
    assert batches == []


async def test_a_list_address_the_page_refuses_plans_nothing(
    admin: Browser, batches: list[bool]
) -> None:
    assert (await admin.get("/admin/bookings/?nope=1")).status == 400
    assert (await admin.get("/admin/bookings/?cursor=forged")).status == 400
    resp = await admin.get("/admin/bookings/?q=&status=cancelled")
    assert resp.status == 302 and resp.headers["Location"] == "/admin/bookings/?status=cancelled"
    assert batches == [False, False]  # asked, found nothing sent; the redirect asked nothing


async def test_a_failing_list_query_leaves_the_request_as_it_was(
    admin: Browser, database_url: str, batches: list[bool]
) -> None:
    assert (await admin.get("/admin/bookings/")).status == 200
    batches.clear()
    await execute(database_url, "ALTER TABLE bookings DROP COLUMN amount")
    resp = await admin.get("/admin/bookings/")
    text = await resp.text()
    assert resp.status == 503, (resp.status, text[:2000])
    assert "has changed since the server started" in text and "Traceback" not in text
    assert "/logout" in text  # still signed in: the session was found without the rows
    assert batches == [False]
    assert (await admin.get("/admin/customers/")).status == 200
