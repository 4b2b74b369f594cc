"""Bulk edit over real HTTP and PostgreSQL: choose fields, preview the count, apply as one
UPDATE with one audit event; re-auth above the declared threshold; a selection that changed
since the preview is refused; a refused audit insert leaves nothing."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.admin.test_edit_support import Browser, execute, one, sign_in

BOOKINGS = "/admin/bookings/bulk-edit"


@pytest.fixture
async def admin(client: Any, database_url: str, secret_key: str, seeded: Any) -> Browser:
    return await sign_in(client, database_url, secret_key, role="administrator")


def hidden_form(page: str) -> list[tuple[str, str]]:
    """The preview's confirmation form as the browser would post it."""
    form = page[page.rindex("<form") :]
    return [
        (n, v.replace("&amp;", "&"))
        for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', form)
    ]


async def statuses(database_url: str, ids: list[int]) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT status FROM bookings WHERE id = ANY(%s) ORDER BY id", (ids,)
        )
        return [r[0] for r in await cur.fetchall()]


async def test_selected_rows_are_changed_in_one_statement_with_one_event(
    admin: Browser, database_url: str
) -> None:
    resp = await admin.post(BOOKINGS, [("ids", "1"), ("ids", "2"), ("ids", "3")])
    page = await resp.text()
    assert resp.status == 200 and 'name="_set" value="status"' in page
    assert 'name="v.amount"' in page and 'name="v.notes"' not in page  # only declared fields
    resp = await admin.post(
        BOOKINGS,
        [("ids", "1"), ("ids", "2"), ("ids", "3"), ("_stage", "preview"),
         ("_set", "status"), ("v.status", "completed"), ("v.amount", "99")],
    )  # fmt: skip
    page = await resp.text()
    assert resp.status == 200 and "Change 3 bookings?" in page
    assert "Status &rarr; completed" in page and "Amount" not in page  # amount was not ticked
    assert await statuses(database_url, [1, 2, 3]) != ["completed"] * 3, "a preview writes nothing"
    resp = await admin.post(BOOKINGS, hidden_form(page))
    assert resp.status == 303, await resp.text()
    assert await statuses(database_url, [1, 2, 3]) == ["completed"] * 3
    event = await one(
        database_url,
        "SELECT metadata FROM keel_audit WHERE event_type = 'bulk_action'",
    )
    assert event["action"] == "bulk_edit" and event["ids"] == ["1", "2", "3"]
    assert event["count"] == 3 and event["set"] == {"status": "completed"}


async def test_all_matching_the_filter_and_the_filter_is_audited(
    admin: Browser, database_url: str
) -> None:
    pending = await one(database_url, "SELECT count(*) FROM bookings WHERE status = 'pending'")
    data = [("all_matching", "1"), ("query", "status=pending"), ("_stage", "preview"),
            ("_set", "amount"), ("v.amount", "12.50")]  # fmt: skip
    resp = await admin.post(BOOKINGS, data)
    page = await resp.text()
    assert f"Change {pending} bookings?" in page
    resp = await admin.post(BOOKINGS, hidden_form(page))
    assert resp.status == 303, await resp.text()
    assert await one(database_url, "SELECT count(*) FROM bookings WHERE amount = 12.50") == pending
    event = await one(
        database_url, "SELECT metadata FROM keel_audit WHERE event_type = 'bulk_action'"
    )
    assert event["filter"] == [["status", "pending"]] and event["count"] == pending


async def test_a_bad_value_is_shown_on_the_form_and_nothing_changes(
    admin: Browser, database_url: str
) -> None:
    resp = await admin.post(
        BOOKINGS,
        [("ids", "1"), ("_stage", "preview"), ("_set", "amount"), ("v.amount", "lots")],
    )
    assert resp.status == 400 and "Enter a number" in await resp.text()
    resp = await admin.post(BOOKINGS, [("ids", "1"), ("_stage", "preview"), ("_set", "notes")])
    assert resp.status == 400 and "cannot be bulk edited" in await resp.text()
    resp = await admin.post(BOOKINGS, [("ids", "1"), ("_stage", "preview")])
    assert resp.status == 400 and "Choose at least one field" in await resp.text()
    assert (
        await one(database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'bulk_action'")
        == 0
    )


async def test_more_rows_than_the_threshold_need_the_password_again(
    client: Any, database_url: str, secret_key: str, seeded: Any
) -> None:
    plain = await sign_in(client, database_url, secret_key, role="administrator")
    data = [("all", "1"), ("_stage", "preview"), ("_set", "status"), ("v.status", "pending")]
    resp = await plain.post(BOOKINGS, data)  # 300 bookings: above the declared 100
    assert resp.status == 303
    back = resp.headers["Location"]
    assert back.startswith(BOOKINGS + "?") and "v.status=pending" in back
    resp = await plain.get(back)
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth?return_to=")
    # After re-authenticating, the same address shows the preview; applying works.
    elevated = await sign_in(client, database_url, secret_key, role="administrator", elevated=True)
    resp = await elevated.get(back)
    page = await resp.text()
    assert resp.status == 200 and "Change 300 bookings?" in page
    resp = await elevated.post(BOOKINGS, hidden_form(page))
    assert resp.status == 303
    assert await one(database_url, "SELECT count(*) FROM bookings WHERE status = 'pending'") == 300
    # A small selection needs no re-authentication.
    resp = await plain.post(BOOKINGS, [("ids", "1"), *data[1:]])
    assert resp.status == 200 and "Change 1 booking?" in await resp.text()


async def test_a_selection_that_changed_since_the_preview_is_refused(
    admin: Browser, database_url: str
) -> None:
    data = [("all_matching", "1"), ("query", "status=pending"), ("_stage", "preview"),
            ("_set", "amount"), ("v.amount", "1")]  # fmt: skip
    page = await (await admin.post(BOOKINGS, data)).text()
    await execute(database_url, "UPDATE bookings SET status = 'pending' WHERE id = 1")  # one more
    before = await one(database_url, "SELECT count(*) FROM bookings WHERE amount = 1")
    resp = await admin.post(BOOKINGS, hidden_form(page))
    assert resp.status == 409
    assert "Nothing was changed" in await resp.text()
    assert await one(database_url, "SELECT count(*) FROM bookings WHERE amount = 1") == before
    assert (
        await one(database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'bulk_action'")
        == 0
    )


async def test_a_bulk_edit_makes_a_row_open_elsewhere_stale(
    admin: Browser, database_url: str
) -> None:
    """Technicians keep `updated_at`: a bulk edit gives each row a new version, so an editor
    who opened one before it sees a conflict instead of silently undoing it."""
    tech = await one(database_url, "SELECT id FROM technicians WHERE email = 'bob@example.org'")
    page = await (await admin.get(f"/admin/technicians/{tech}/")).text()
    version = re.search(r'name="_version" value="([^"]*)"', page)
    assert version
    resp = await admin.post(
        "/admin/technicians/bulk-edit",
        [
            ("ids", str(tech)),
            ("_stage", "preview"),
            ("_set", "hourly_rate"),
            ("v.hourly_rate", "70"),
        ],
    )
    resp = await admin.post("/admin/technicians/bulk-edit", hidden_form(await resp.text()))
    assert resp.status == 303
    resp = await admin.post(
        f"/admin/technicians/{tech}/",
        {"_version": version.group(1), "name": "Bob", "email": "bob@example.org"},
    )
    assert resp.status == 409


@pytest.mark.parametrize("failure", ["trigger", "check"])
async def test_a_failing_audit_insert_leaves_no_change(
    database_url: str, seeded: Any, failure: str
) -> None:
    from app import audit
    from app.admin import bulk_edit
    from app.admin.setup import check_declarations

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        bound, _ = await check_declarations(conn)
        b = bound["bookings"]
        if failure == "trigger":
            await conn.execute(
                "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN RAISE EXCEPTION 'audit store unavailable'; END$$;"
                " CREATE TRIGGER fail_audit BEFORE INSERT ON keel_audit"
                " FOR EACH ROW EXECUTE FUNCTION fail_audit()"
            )
        else:
            await conn.execute(
                "ALTER TABLE keel_audit ADD CONSTRAINT refuse"
                " CHECK (target_resource IS DISTINCT FROM 'bookings') NOT VALID"
            )
        ctx = audit.Context(audit_key=audit.derive_key("k" * 43), actor_email="ed@example.com")
        target = bulk_edit.Target(ids=(1, 2, 3))
        with pytest.raises(Exception):  # noqa: B017 - the audit store's refusal, however shaped
            await bulk_edit.apply(conn, ctx, b, target, {"status": "no_show"}, expected=3)
        # The seed's statuses, untouched; and no event.
        assert await statuses(database_url, [1, 2, 3]) == ["confirmed", "completed", "cancelled"]
        cur = await conn.execute("SELECT count(*) FROM keel_audit")
        assert (await cur.fetchone()) == (0,)
