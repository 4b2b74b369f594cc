"""CSV import in real Chromium (EDIT-10): from the list, upload a file, see the preview with the
row in error and the automatic mapping, fix the mapping of a column, apply the valid rows and
see them in the list."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.browser.conftest import IN_CI, OpenPage, sign_in
from tests.web.conftest import MakeUser

if not IN_CI:  # in CI a missing package must fail, not skip
    pytest.importorskip("playwright", reason="the `playwright` package is not installed")

from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

CSV = (
    "Name,E-mail,Town\n"
    "Imogen Import,imogen@example.org,Bergen\n"
    "Ivo Import,not an address,Turku\n"
    "Iris Import,iris@example.org,Tromsø\n"
    "Isak Import,isak@example.org,=1+2\n"
)


async def test_upload_preview_fix_mapping_apply_and_see_the_rows(
    open_page: OpenPage, make_user: MakeUser, seeded: str
) -> None:
    user, password = await make_user("administrator")
    page = await open_page(viewport={"width": 1440, "height": 900})
    await sign_in(page, user.email, password)
    await page.goto("/admin/customers/")
    await page.get_by_role("link", name="Import").click()
    await page.wait_for_url("**/admin/customers/import")
    await page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": CSV.encode()}
    )
    await page.get_by_role("button", name="Upload and preview").click()
    await page.wait_for_url(re.compile(r"/admin/customers/import/[A-Za-z0-9_-]{24}$"))

    # "E-mail" is the email field by its name; "Town" matches no field: the operator picks City.
    await expect(page.get_by_label("Name", exact=True)).to_have_value("name")
    await expect(page.get_by_label("E-mail")).to_have_value("email")
    await expect(page.get_by_label("Town")).to_have_value("")
    await page.get_by_label("Town").select_option("city")
    await page.get_by_role("button", name="Check again with these columns").click()

    await expect(page.locator("[data-import-counts]")).to_have_text(
        "4 rows: 3 valid, 1 with errors"
    )
    errors = page.locator("[data-import-errors]")
    await expect(errors).to_contain_text("Enter an email address like name@example.com.")
    await expect(errors).to_contain_text("not an address")
    # A formula-like cell is shown neutralised.
    await expect(page.locator("[data-import-sample]")).to_contain_text("'=1+2")
    with psycopg.connect(seeded, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (40,)

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Import the 3 valid rows, skip 1").click()
    await page.wait_for_url(re.compile(r"/admin/customers/$"))
    await expect(page.get_by_role("status")).to_contain_text(
        "Imported people.csv: 3 added, 0 updated, 1 rows with errors skipped."
    )
    await page.goto("/admin/customers/?q=Import")
    await expect(page.get_by_role("cell", name="Imogen Import")).to_be_visible()
    await expect(page.get_by_role("cell", name="Iris Import")).to_be_visible()
    await expect(page.get_by_role("cell", name="Ivo Import")).to_have_count(0)
    with psycopg.connect(seeded, autocommit=True) as conn:
        city = conn.execute("SELECT city FROM customers WHERE name = 'Isak Import'").fetchone()
    assert city == ("=1+2",)  # stored as written; only its display and export are neutralised
