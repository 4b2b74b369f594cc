"""CSV import: upload, preview with per-row errors, apply all or nothing, formula safety (EDIT-10).

Real PostgreSQL, real HTTP through the app's own router; the upload is multipart like a browser's.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import aiohttp
import pytest

from app.admin import csvsafe, importing
from tests.admin.test_edit_support import Browser, sign_in


@pytest.fixture
async def admin(signed_in, seeded):
    return await signed_in("administrator")


def csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


async def upload(who: Any, slug: str, text: str | bytes, name: str = "rows.csv") -> Any:
    form = aiohttp.FormData()
    form.add_field("csrf_token", who.csrf)  # first: the upload is read a part at a time
    body = text.encode() if isinstance(text, str) else text
    form.add_field("file", body, filename=name, content_type="text/csv")
    if isinstance(who, Browser):  # a session made directly in the database
        return await who.post(f"/admin/{slug}/import", form)
    return await who.client.post(f"/admin/{slug}/import", data=form, allow_redirects=False)


async def uploaded(who: Any, slug: str, text: str, name: str = "rows.csv") -> str:
    resp = await upload(who, slug, text, name)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert re.fullmatch(rf"/admin/{slug}/import/[A-Za-z0-9_-]{{24}}", location)
    return location


async def count(conn: Any, table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table}")
    return (await cur.fetchone())[0]


async def import_events(conn: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT metadata FROM keel_audit WHERE event_type = 'import_applied' ORDER BY id"
    )
    return [r[0] for r in await cur.fetchall()]


async def test_bad_rows_are_shown_in_the_preview_and_nothing_is_written(admin, seeded):
    text = csv_text(
        [
            ["Name", "E-Mail", "city"],
            ["Ann", "ann@example.com", "Oslo"],
            ["Bob", "not-an-email", "Lyon"],
            ["", "cy@example.com", "Graz"],
            ["Dee", "dee@example.com", "Porto"],
        ]
    )
    before = await count(seeded, "customers")
    page_url = await uploaded(admin, "customers", text)
    page = await (await admin.get(page_url)).text()
    assert "4 rows: 2 valid, 2 with errors" in page
    assert "Enter an email address like name@example.com." in page
    assert "This field is required." in page
    assert 'name="col1"' in page and 'value="email" selected' in page  # "E-Mail" → email
    assert await count(seeded, "customers") == before
    # Applying the whole file is refused: one bad row stops all.
    form = {"col0": "name", "col1": "email", "col2": "city", "key": "natural", "mode": "all"}
    resp = await admin.post(page_url, form)
    assert resp.status == 400
    assert "Nothing was imported: 2 of 4 rows have errors" in await resp.text()
    assert await count(seeded, "customers") == before
    assert await import_events(seeded) == []
    # Applying the valid rows is a choice the operator makes explicitly.
    resp = await admin.post(page_url, {**form, "mode": "valid"})
    assert resp.status == 303, await resp.text()
    assert await count(seeded, "customers") == before + 2
    [event] = await import_events(seeded)
    assert (event["inserted"], event["updated"], event["skipped"]) == (2, 0, 2)
    assert event["filename"] == "rows.csv" and event["matched_by"] == ["email"]


async def test_rows_matched_by_natural_key_update_and_the_others_insert(admin, seeded):
    text = csv_text(
        [
            ["email", "name", "city"],
            ["person1@example.org", "Renamed One", "Oslo"],
            ["new@example.org", "Newcomer", "Bergen"],
        ]
    )
    page_url = await uploaded(admin, "customers", text, "people.csv")
    page = await (await admin.get(page_url)).text()
    assert "2 rows: 2 valid, 0 with errors" in page
    resp = await admin.post(
        page_url, {"col0": "email", "col1": "name", "col2": "city", "key": "natural", "mode": "all"}
    )
    assert resp.status == 303, await resp.text()
    cur = await seeded.execute(
        "SELECT name, city FROM customers WHERE email IN ('person1@example.org', 'new@example.org')"
        " ORDER BY name"
    )
    assert await cur.fetchall() == [("Newcomer", "Bergen"), ("Renamed One", "Oslo")]
    cur = await seeded.execute(
        "SELECT created_at IS NOT NULL FROM customers WHERE name = 'Newcomer'"
    )
    assert (await cur.fetchone())[0] is True  # Keel's managed timestamp filled on insert
    [event] = await import_events(seeded)
    assert (event["inserted"], event["updated"], event["skipped"]) == (1, 1, 0)
    # The upload is gone once applied.
    assert (await admin.get(page_url)).status == 404


async def test_a_failure_at_row_90000_leaves_nothing(admin, seeded):
    """The file is valid row by row; the database refuses row 90,000 (no such customer)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["customer_id", "status", "amount", "scheduled_at", "notes"])
    for i in range(2, 100_002):  # spreadsheet row numbers: the header is row 1
        customer = 99_999 if i == 90_000 else 1 + i % 40
        w.writerow([customer, "pending", "12.50", "2024-06-01T10:00", f"imported {i}"])
    before = await count(seeded, "bookings")
    page_url = await uploaded(admin, "bookings", buf.getvalue(), "big.csv")
    resp = await admin.post(
        page_url,
        {"col0": "customer_id", "col1": "status", "col2": "amount", "col3": "scheduled_at",
         "col4": "notes", "mode": "all"},
    )  # fmt: skip
    body = await resp.text()
    assert resp.status == 400, body
    assert "Nothing was imported" in body and "99999" in body
    assert await count(seeded, "bookings") == before
    assert await import_events(seeded) == []


async def test_formula_cells_are_exported_safely_and_import_back_unchanged(admin, seeded):
    tricky = ['=HYPERLINK("http://x")', "+1+2", "-3+4", "@SUM(A1)", "'=quoted", "\tTab"]
    for i, value in enumerate(tricky, start=1):
        await seeded.execute("UPDATE customers SET city = %s WHERE id = %s", (value, i))
    exported = await (await admin.get("/admin/customers/export.csv?o=id")).text()
    rows = list(csv.reader(io.StringIO(exported)))
    cities = {int(r[0]): r[3] for r in rows[1:]}
    for i, value in enumerate(tricky, start=1):
        assert cities[i] == "'" + value  # a spreadsheet shows it as text, never runs it
        assert not cities[i].startswith(csvsafe.FORMULA_START)
    # The preview shows the cells neutralised too.
    page_url = await uploaded(admin, "customers", exported, "export.csv")
    page = await (await admin.get(page_url)).text()
    assert "&#39;=HYPERLINK" in page and "&#39;@SUM(A1)" in page
    # Importing the export again (matched by id) changes nothing: the apostrophes come off.
    form = {f"col{i}": name for i, name in enumerate(rows[0])}
    resp = await admin.post(page_url, {**form, "key": "pk", "mode": "all"})
    assert resp.status == 303, await resp.text()
    cur = await seeded.execute("SELECT id, city FROM customers WHERE id <= %s ORDER BY id", (6,))
    # One-line fields are trimmed, as the edit form trims them: the tab goes, nothing else.
    assert [c for _i, c in await cur.fetchall()] == [*tricky[:5], "Tab"]
    [event] = await import_events(seeded)
    # Only the trimmed one changed; the others were left as they were (no new row versions).
    assert (event["inserted"], event["updated"], event["unchanged"]) == (0, 1, 39)


def test_neutralise_and_restore_are_inverse():
    for text in ["=1", "+", "-x", "@y", "\tz", "\rw", "'=a", "''+b", "plain", "'plain", ""]:
        assert csvsafe.restore(csvsafe.neutralise(text)) == text
        assert not csvsafe.neutralise(text).startswith(csvsafe.FORMULA_START)


async def test_an_unknown_numbered_key_stops_the_import(admin, seeded):
    text = csv_text([["id", "name", "email", "city"], ["5000", "Ghost", "g@example.org", "Oslo"]])
    page_url = await uploaded(admin, "customers", text)
    resp = await admin.post(
        page_url,
        {"col0": "id", "col1": "name", "col2": "email", "col3": "city", "key": "pk", "mode": "all"},
    )
    body = await resp.text()
    assert resp.status == 400 and "row 2 names Customers id 5000, which does not exist" in body
    assert await count(seeded, "customers") == 40
    # Matching by email while the file carries ids would add rows under numbers of its own.
    resp = await admin.post(
        page_url,
        {"col0": "id", "col1": "name", "col2": "email", "col3": "city", "key": "natural",
         "mode": "all"},
    )  # fmt: skip
    body = await resp.text()
    assert resp.status == 400 and "Id is numbered by the database: match rows by it" in body
    assert await count(seeded, "customers") == 40


async def test_import_needs_add_and_uploads_are_private(
    signed_in, seeded, admin, client, database_url, secret_key
):
    async def staff(*perms: str) -> Browser:
        return await sign_in(client, database_url, secret_key, role="staff", perms=perms)

    viewer = await staff("customers.view")
    assert (await viewer.get("/admin/customers/import")).status == 403
    assert (await upload(viewer, "customers", "name\nx\n")).status == 403
    page_url = await uploaded(admin, "customers", "name,email,city\nA,a@example.org,Oslo\n")
    other = await signed_in("administrator")
    assert (await other.get(page_url)).status == 404  # someone else's upload is not found
    adder = await staff("customers.view", "customers.add")
    mine = await uploaded(adder, "customers", "email,name,city\nperson2@example.org,X,Oslo\n")
    resp = await adder.post(
        mine, {"col0": "email", "col1": "name", "col2": "city", "key": "natural", "mode": "all"}
    )
    assert resp.status == 403 and "customers.change" in await resp.text()


async def test_unreadable_files_get_a_clear_error(admin, seeded):
    # Latin-1 bytes are not UTF-8
    resp = await upload(admin, "customers", b"name,city\nJos\xe9,Oslo\n")
    resp = await admin.get(resp.headers["Location"])
    assert resp.status == 400 and "could not be read as CSV" in await resp.text()
    assert (await upload(admin, "customers", b"")).status == 400


def test_auto_mapping_ignores_case_spaces_and_uses_labels(bound):
    b = bound["bookings"]
    got = importing.auto_mapping(b, ["  CUSTOMER ", "Scheduled", "amount", "Amount", "nope"])
    assert got == ["customer_id", "scheduled_at", "amount", "", ""]
