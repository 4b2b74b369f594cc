"""A record's page reads its row with the session lookup (app/web/prefetch.py).

One statement answers "whose session is this" and "what is record 7", so the page costs one
round trip. What the tests hold it to: the page shows what it showed before; the row is used
only after the permission check, only by its own request and only when the handler asks for
the same statement; a session that is not live gets no row; a statement that fails leaves
the request exactly where it would have been without it."""

from __future__ import annotations

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
