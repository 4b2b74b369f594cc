"""The create/edit/delete/history pages over real HTTP (EDIT-1..7, SEC-3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.test_edit_support import Browser, execute, hidden, one, sign_in

TECH = "/admin/technicians"


@pytest.fixture
async def admin(client: Any, database_url: str, secret_key: str) -> Browser:
    return await sign_in(client, database_url, secret_key, role="administrator")


async def add_tech(database_url: str, email: str = "tess@x.test", **extra: Any) -> int:
    cols = ["name", "email", *extra]
    values = ["Tess", email, *extra.values()]
    marks = ", ".join(["%s"] * len(cols))
    return int(
        await one(
            database_url,
            f"INSERT INTO technicians ({', '.join(cols)}) VALUES ({marks}) RETURNING id",
            values,
        )
    )


async def test_anonymous_visitors_are_sent_to_login(client: Any) -> None:
    for path in (f"{TECH}/new", f"{TECH}/1/", f"{TECH}/1/delete", f"{TECH}/1/history"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login?return_to=")


async def test_create_form_has_a_widget_per_column_type(admin: Browser) -> None:
    """EDIT-1: types, required, maxlength, step, select, checkbox, JSON, FK autocomplete."""
    resp = await admin.get(f"{TECH}/new")
    assert resp.status == 200
    page = await resp.text()
    assert 'name="name" type="text" value="" required="" maxlength="120"' in page
    assert 'name="email" type="email" value="" required=""' in page
    assert 'name="phone" type="tel"' in page
    assert 'id="f-skill_level" name="skill_level"><option value="">—</option>' in page
    assert '<option value="junior" selected>Junior</option>' in page  # the column's default
    assert '<option value="senior">Senior</option>' in page
    assert 'name="hourly_rate" type="number"' in page and 'step="0.01"' in page
    assert '<input type="checkbox" id="f-is_active" name="is_active" value="on" checked=""' in page
    assert 'name="hourly_rate" type="number" value="0"' in page
    assert "Leave empty for the day of saving." in page  # hired_on DEFAULT current_date
    assert 'name="hired_on" type="date"' in page and 'name="shift_start" type="time"' in page
    assert 'data-autocomplete="/admin/technicians/lookup"' in page
    assert 'class="k-textarea k-textarea--mono"' in page  # the JSON profile
    assert 'name="created_at"' not in page and 'name="id"' not in page  # filled by the database
    assert 'name="_save" value="continue"' in page and 'name="_save" value="add"' in page
    assert "style=" not in page and "<script>" not in page  # CSP: nothing inline (SEC-2)


async def test_save_and_add_another_and_continue(admin: Browser, database_url: str) -> None:
    """EDIT-2: the three buttons go to the list, a blank form, or back to the record."""
    base = {"name": "Ada", "hourly_rate": "31.50", "is_active": "on", "profile": '{"van": "V1"}'}
    resp = await admin.post(f"{TECH}/new", {**base, "email": "a1@x.test", "_save": "save"})
    assert resp.status == 303 and resp.headers["Location"] == f"{TECH}/"
    listed = await (await admin.get(f"{TECH}/")).text()
    assert "Added Ada." in listed, "the list says what was saved"
    assert "Added Ada." not in await (await admin.get(f"{TECH}/")).text(), "once"
    resp = await admin.post(f"{TECH}/new", {**base, "email": "a2@x.test", "_save": "add"})
    assert resp.status == 303 and resp.headers["Location"].startswith(f"{TECH}/new?saved=")
    assert "Saved" in await (await admin.get(resp.headers["Location"])).text()
    resp = await admin.post(f"{TECH}/new", {**base, "email": "a3@x.test", "_save": "continue"})
    pk = await one(database_url, "SELECT id FROM technicians WHERE email = 'a3@x.test'")
    assert resp.headers["Location"] == f"{TECH}/{pk}/?saved=1"
    page = await (await admin.get(resp.headers["Location"])).text()
    assert "Saved." in page and 'value="Ada"' in page and 'value="31.50"' in page
    assert (
        await one(database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'create'") == 3
    )


async def test_validation_errors_rerender_with_messages(admin: Browser, database_url: str) -> None:
    resp = await admin.post(
        f"{TECH}/new", {"name": "", "email": "nope", "hourly_rate": "lots", "profile": "{"}
    )
    assert resp.status == 400
    page = await resp.text()
    for text in (
        "This field is required.",
        "Enter an email address",
        "Enter a number.",
        "valid JSON",
    ):
        assert text in page
    assert 'aria-invalid="true"' in page and 'value="lots"' in page  # input kept
    assert await one(database_url, "SELECT count(*) FROM technicians") == 0


async def test_constraint_violations_are_form_errors_not_500(
    admin: Browser, database_url: str
) -> None:
    await add_tech(database_url, "dup@x.test")
    resp = await admin.post(f"{TECH}/new", {"name": "B", "email": "dup@x.test"})
    assert resp.status == 400 and "already has this email" in await resp.text()
    resp = await admin.post(
        f"{TECH}/new", {"name": "B", "email": "b@x.test", "supervisor_id": "99999"}
    )
    assert resp.status == 400 and "No such related record" in await resp.text()
    resp = await admin.post(f"{TECH}/new", {"name": "B", "email": "c@x.test", "hourly_rate": "-1"})
    assert resp.status == 400 and "not allowed" in await resp.text()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "x" * 5000, "at most 120"),
        ("name", "bad\x07bell", "control characters"),
        ("name", "nul\x00", "control characters"),
        ("hourly_rate", "1; DROP TABLE technicians", "Enter a number."),
        ("supervisor_id", "1 OR 1=1", "whole number"),
        ("hired_on", "yesterday", "date like"),
        ("skill_level", "<b>wizard</b>", "Choose one of"),
        ("profile", "[" * 5000, "JSON"),
    ],
)
async def test_hostile_and_mistyped_fields_answer_400(
    admin: Browser, database_url: str, field: str, value: str, message: str
) -> None:
    """SEC-3 on the create form: 400 with a message, never 500, nothing written."""
    resp = await admin.post(f"{TECH}/new", {"name": "Ok", "email": "ok@x.test", field: value})
    assert resp.status == 400, await resp.text()
    assert message in await resp.text()
    assert await one(database_url, "SELECT count(*) FROM technicians") == 0


async def test_html_is_stored_verbatim_and_shown_escaped(admin: Browser, database_url: str) -> None:
    evil = "<script>alert('x')</script>"
    resp = await admin.post(f"{TECH}/new", {"name": evil, "email": "e@x.test", "bio": evil})
    assert resp.status == 303
    pk = await one(database_url, "SELECT id FROM technicians WHERE bio = %s", (evil,))
    page = await (await admin.get(f"{TECH}/{pk}/")).text()
    assert evil not in page and "&lt;script&gt;" in page


async def test_oversized_body_is_413(admin: Browser, client: Any) -> None:
    resp = await admin.post(f"{TECH}/new", {"name": "x" * (10 * 1024 * 1024), "email": "a@x.test"})
    assert resp.status == 413


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{TECH}/abc/", 400),
        (f"{TECH}/99999999999999999999/", 400),
        (f"{TECH}/1%00/", 400),
        (f"{TECH}/424242/", 404),
        ("/admin/nosuch/1/", 404),
        (f"{TECH}/new?bogus=1", 400),
        (f"{TECH}/new?supervisor_id=abc", 400),
        (f"{TECH}/1/delete?x=1", 400),
    ],
)
async def test_bad_paths_and_query_parameters(
    admin: Browser, database_url: str, path: str, status: int
) -> None:
    await add_tech(database_url)
    resp = await admin.get(path)
    assert resp.status == status, await resp.text()
    assert "Traceback" not in await resp.text()


async def test_crafted_post_cannot_change_readonly_fields(
    admin: Browser, database_url: str
) -> None:
    """EDIT-3: id, created_at and updated_at in a crafted POST are ignored."""
    pk = await add_tech(database_url)
    page = await (await admin.get(f"{TECH}/{pk}/")).text()
    assert 'name="created_at"' in page and "readonly" in page
    resp = await admin.post(
        f"{TECH}/{pk}/",
        {
            "_version": hidden(page, "_version"),
            "name": "Tess",
            "email": "tess@x.test",
            "id": "999",
            "created_at": "2000-01-01T00:00",
            "updated_at": "2000-01-01T00:00",
        },
    )
    assert resp.status == 303
    row = await one(database_url, "SELECT id, extract(year FROM created_at)::int FROM technicians")
    assert row[0] == pk and row[1] != 2000


async def test_edit_needs_a_version(admin: Browser, database_url: str) -> None:
    pk = await add_tech(database_url)
    resp = await admin.post(f"{TECH}/{pk}/", {"name": "X", "email": "tess@x.test"})
    assert resp.status == 400 and "version" in await resp.text()


async def test_second_editor_is_refused_and_sees_the_change(
    client: Any, database_url: str, secret_key: str
) -> None:
    """EDIT-4 acceptance: two users edit one row; the second save is refused with the change."""
    pk = await add_tech(database_url)
    alice = await sign_in(client, database_url, secret_key, email="alice@example.com")
    bob = await sign_in(client, database_url, secret_key, email="bob@example.com")
    form_a = await (await alice.get(f"{TECH}/{pk}/")).text()
    form_b = await (await bob.get(f"{TECH}/{pk}/")).text()

    def fields(page: str, **changes: str) -> dict[str, str]:
        data = {n: hidden(page, n) for n in ("_version", "_original")}
        return {**data, "name": "Tess", "email": "tess@x.test", **changes}

    resp = await alice.post(f"{TECH}/{pk}/", fields(form_a, skill_level="senior"))
    assert resp.status == 303
    resp = await bob.post(f"{TECH}/{pk}/", fields(form_b, name="Tessa"))
    assert resp.status == 409
    page = await resp.text()
    assert "changed by someone else (alice@example.com)" in page
    assert "Skill level" in page and "junior" in page and "senior" in page
    assert 'value="Tessa"' in page  # bob's input is kept
    assert await one(database_url, "SELECT name FROM technicians") == "Tess"
    # Having seen the change, bob saves again on purpose: it goes through.
    resp = await bob.post(f"{TECH}/{pk}/", fields(page, name="Tessa", skill_level="senior"))
    assert resp.status == 303
    assert await one(database_url, "SELECT name FROM technicians") == "Tessa"


async def test_delete_confirmation_lists_consequences(admin: Browser, database_url: str) -> None:
    """EDIT-5: what blocks and what is unlinked, then the delete with its audit event."""
    boss = await add_tech(database_url, "boss@x.test")
    await add_tech(database_url, "t2@x.test", supervisor_id=boss)
    await execute(
        database_url,
        "INSERT INTO properties (name, address, kind, technician_id) VALUES ('P', 'A', 'shop', %s)",
        (boss,),
    )
    page = await (await admin.get(f"{TECH}/{boss}/delete")).text()
    assert "cannot be deleted yet" in page and "1 properties record" in page
    resp = await admin.post(f"{TECH}/{boss}/delete", {})
    assert resp.status == 409 and "cannot be deleted" in await resp.text()
    await execute(database_url, "DELETE FROM properties")
    page = await (await admin.get(f"{TECH}/{boss}/delete")).text()
    assert "1 technicians record will have supervisor_id cleared" in page
    resp = await admin.post(f"{TECH}/{boss}/delete", {})
    assert resp.status == 303 and resp.headers["Location"] == f"{TECH}/"
    assert await one(database_url, "SELECT count(*) FROM technicians") == 1
    assert (
        await one(database_url, "SELECT count(*) FROM keel_audit WHERE event_type = 'delete'") == 1
    )


async def test_history_shows_from_to(admin: Browser, database_url: str) -> None:
    pk = await add_tech(database_url)
    page = await (await admin.get(f"{TECH}/{pk}/")).text()
    await admin.post(
        f"{TECH}/{pk}/",
        {"_version": hidden(page, "_version"), "name": "Tess", "email": "new@x.test"},
    )
    page = await (await admin.get(f"{TECH}/{pk}/history")).text()
    assert "tess@x.test" in page and "new@x.test" in page and admin.email in page


async def test_inlines_show_children_and_add_prefills_parent(
    admin: Browser, database_url: str
) -> None:
    """EDIT-7: a customer's bookings, capped count, and "add booking" pre-filling customer_id."""
    await execute(
        database_url,
        "INSERT INTO customers (id, name, email, city, created_at)"
        " VALUES (7, 'Cy', 'cy@x.test', 'Oslo', now())",
    )
    await execute(
        database_url,
        "INSERT INTO bookings (customer_id, status, amount, scheduled_at, created_at)"
        " SELECT 7, 'pending', 12.5, now(), now() FROM generate_series(1, 3)",
    )
    page = await (await admin.get("/admin/customers/7/")).text()
    assert 'k-tab-count">3<' in page
    assert "/admin/bookings/new?customer_id=7" in page
    page = await (await admin.get("/admin/bookings/new?customer_id=7")).text()
    assert 'name="customer_id"' in page and 'value="7"' in page and "Now: Cy" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "e" * 300 + "@x.test", "at most 254"),
        ("hourly_rate", "12,50", "Enter a number."),
        ("shift_start", "'; DROP TABLE technicians; --", "time like"),
        ("profile", '{"a": ' * 2000, "JSON"),
        ("name", "bell\x07", "control characters"),
    ],
)
async def test_edit_form_refuses_hostile_and_mistyped_values(
    admin: Browser, database_url: str, field: str, value: str, message: str
) -> None:
    """SEC-3 on the edit form: 400 with the message by the field; the row is unchanged."""
    pk = await add_tech(database_url)
    page = await (await admin.get(f"{TECH}/{pk}/")).text()
    form = {"_version": hidden(page, "_version"), "name": "Tess", "email": "tess@x.test"}
    resp = await admin.post(f"{TECH}/{pk}/", {**form, field: value})
    assert resp.status == 400
    assert message in await resp.text()
    assert await one(database_url, "SELECT name || email FROM technicians") == "Tesstess@x.test"


async def test_every_form_bounds_its_body(admin: Browser, database_url: str) -> None:
    """SEC-3: 10 MB posted to the edit, delete and bulk forms → 413, nothing changed."""
    pk = await add_tech(database_url)
    big = {"name": "x" * (10 * 1024 * 1024)}
    for path in (f"{TECH}/{pk}/", f"{TECH}/{pk}/delete", f"{TECH}/bulk/deactivate"):
        resp = await admin.post(path, big)
        assert resp.status == 413, path
    assert await one(database_url, "SELECT count(*) FROM technicians") == 1


async def test_forged_version_is_refused(admin: Browser, database_url: str) -> None:
    pk = await add_tech(database_url)
    for version in ("", "x" * 100, "t:'; DROP TABLE technicians; --", "h:0000"):
        resp = await admin.post(
            f"{TECH}/{pk}/", {"_version": version, "name": "X", "email": "tess@x.test"}
        )
        assert resp.status in (400, 409), version
    assert await one(database_url, "SELECT name FROM technicians") == "Tess"


async def test_undecodable_bytes_never_make_a_500(admin: Browser, database_url: str) -> None:
    """A body with invalid UTF-8 (a lone surrogate's bytes) is refused or stored replaced."""
    pk = await add_tech(database_url)
    page = await (await admin.get(f"{TECH}/{pk}/")).text()
    body = (
        (
            f"csrf_token={admin.csrf}&_version={hidden(page, '_version')}"
            "&name=%ED%A0%80%FF&email=tess%40x.test"
        )
        .replace(":", "%3A")
        .replace("+", "%2B")
    )
    resp = await admin.post(
        f"{TECH}/{pk}/",
        body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status in (303, 400), await resp.text()


async def test_a_forged_message_cookie_is_ignored(admin: Browser) -> None:
    """The one-shot message cookie is signed: words set by anyone else never reach the page."""
    import base64
    import json

    payload = base64.urlsafe_b64encode(json.dumps({"k": "danger", "t": "Call 555-SCAM"}).encode())
    forged = f"keel_session={admin.token}; keel_flash={payload.decode()}.{'0' * 32}"
    resp = await admin.get(f"{TECH}/", headers={"Cookie": forged})
    assert resp.status == 200 and "555-SCAM" not in await resp.text()


async def test_addresses_with_a_trailing_slash_lead_to_the_page(admin: Browser) -> None:
    """`/new/` is the create form (not "'new' is not a whole number"), and the other sub-pages
    with a trailing slash redirect to their address, query string kept."""
    for path, target in (
        (f"{TECH}/new/?back=q%3Da", f"{TECH}/new?back=q%3Da"),
        (f"{TECH}/lookup/?q=ada", f"{TECH}/lookup?q=ada"),
        (f"{TECH}/1/delete/", f"{TECH}/1/delete"),
        (f"{TECH}/1/history/", f"{TECH}/1/history"),
        (f"{TECH}/bulk/deactivate/?ids=1", f"{TECH}/bulk/deactivate?ids=1"),
    ):
        resp = await admin.get(path)  # redirects are not followed
        assert resp.status == 308 and resp.headers["Location"] == target, path
    resp = await admin.get(f"{TECH}/new?back=q%3Da")
    assert resp.status == 200 and "New technician" in await resp.text()


async def test_create_leaves_untouched_defaults_to_the_database(
    admin: Browser, database_url: str
) -> None:
    """The form as shown (defaults untouched) saves an active technician hired today; a booking
    saves without a "Created at", which Keel fills."""
    page = await (await admin.get(f"{TECH}/new")).text()
    assert 'name="is_active" value="on" checked=""' in page
    shown = {"skill_level": "junior", "hourly_rate": "0", "is_active": "on", "profile": "{}"}
    resp = await admin.post(
        f"{TECH}/new", {**shown, "name": "Nina", "email": "nina@x.test", "hired_on": ""}
    )
    assert resp.status == 303, await resp.text()
    row = await one(
        database_url,
        "SELECT (is_active, skill_level, hourly_rate::text, hired_on = current_date)::text"
        " FROM technicians WHERE email = 'nina@x.test'",
    )
    assert row == "(t,junior,0.00,t)"

    await execute(database_url, "INSERT INTO customers (name, email, city, created_at)"
                  " VALUES ('C', 'c@x.test', 'Oslo', now())")  # fmt: skip
    page = await (await admin.get("/admin/bookings/new")).text()
    assert 'name="created_at" type="datetime-local" value=""' in page
    assert "Leave empty for the time of saving." in page
    cid = await one(database_url, "SELECT id FROM customers WHERE email = 'c@x.test'")
    resp = await admin.post(
        "/admin/bookings/new",
        {"customer_id": str(cid), "status": "pending", "amount": "5", "created_at": "",
         "scheduled_at": "2026-12-24T10:00", "notes": ""},
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    fresh = await one(
        database_url,
        "SELECT created_at > now() - interval '1 hour' FROM bookings WHERE customer_id = %s",
        (cid,),
    )
    assert fresh is True


async def test_an_error_page_says_why_and_how_to_fix_it(admin: Browser) -> None:
    """Problem, why and fix reach the page, not only the JSON answer and the CLI."""
    resp = await admin.get(f"{TECH}/1/?colour=blue")
    text = await resp.text()
    main = text[text.find("<main") :]
    assert resp.status == 400
    assert "Unknown query parameter" in main and "To fix it:</strong> remove it" in main
