"""Bad input on every users form answers 400/413 with a message, never 500 (SEC-3, SEC-1)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import FormData

pytestmark = pytest.mark.asyncio
REASON = "checking hostile input handling"


async def elevate(s: Any) -> None:
    resp = await s.post("/reauth", {"password": s.password, "return_to": "/admin/"})
    assert resp.status == 303, await resp.text()


CREATE_BAD = [
    ({}, "Email"),
    ({"email": "", "role": "user", "password_mode": "onetime"}, "required"),
    ({"email": "no-at-sign", "role": "user", "password_mode": "onetime"}, "not an email"),
    ({"email": "a@" + "b" * 400 + ".com", "role": "user", "password_mode": "onetime"}, "too long"),
    ({"email": "x@example.com", "role": "king", "password_mode": "onetime"}, "role"),
    ({"email": "x@example.com", "role": "user", "password_mode": "psychic"}, "password"),
    ({"email": "x@example.com", "role": "user", "password_mode": "onetime", "groups": "ghosts"},
     "not one of the offered values"),
    ({"email": "x@example.com", "role": "user", "password_mode": "onetime",
      "full_name": "Eve\x00Null"}, "control character"),
    ({"email": "x@example.com", "role": "user", "password_mode": "onetime",
      "full_name": "n" * 201}, "too long"),
    ({"email": "x@example.com", "role": "user", "password_mode": "set",
      "password": "p" * 2000, "password_confirm": "p" * 2000}, "1024"),
    ({"email": "' OR 1=1; --@example.com", "role": "user", "password_mode": "onetime"},
     "email"),
]  # fmt: skip


async def test_create_form_refuses_bad_values_with_400_and_a_message(signed_in):
    s = await signed_in("administrator")
    for form, words in CREATE_BAD:
        resp = await s.post("/admin/users/new", form)
        assert resp.status == 400, (form, resp.status)
        assert words.lower() in (await resp.text()).lower(), form


async def test_create_form_escapes_html_it_echoes(signed_in):
    s = await signed_in("administrator")
    resp = await s.post(
        "/admin/users/new",
        {"email": "bad", "full_name": '<script>alert("x")</script>', "role": "user",
         "password_mode": "onetime"},
    )  # fmt: skip
    assert resp.status == 400
    page = await resp.text()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;" in page


async def test_edit_form_refuses_bad_values_with_400(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    base = {"email": target.email, "role": "staff", "is_active": "on", "locale": "en",
            "timezone": "UTC"}  # fmt: skip
    for change in (
        {"email": ""},
        {"timezone": "../../etc/passwd"},
        {"timezone": "Mars/Olympus"},
        {"locale": "<en>"},
        {"is_active": "perhaps"},
        {"perms": "users.manage"},
        {"perms": "customers.view'; --"},
        {"groups": "nonexistent"},
        {"job_title": "tab\tinside"},
        {"display_name": "\u202eevil"},
    ):
        resp = await s.post(f"/admin/users/{target.id}/edit", {**base, **change})
        assert resp.status == 400, (change, resp.status)
        assert "k-form-errors" in await resp.text()


async def test_edit_to_an_email_in_use_is_409(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    other, _ = await make_user("staff")
    resp = await s.post(
        f"/admin/users/{target.id}/edit",
        {
            "email": other.email,
            "role": "staff",
            "is_active": "on",
            "locale": "en",
            "timezone": "UTC",
        },
    )
    assert resp.status == 409 and "already exists" in await resp.text()


async def test_ten_megabyte_bodies_are_413_on_every_users_form(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(s)
    big = "x" * (10 << 20)
    for path in (
        "/admin/users/new",
        f"/admin/users/{target.id}/edit",
        f"/admin/users/{target.id}/delete",
        f"/admin/users/{target.id}/lock",
        f"/admin/users/{target.id}/sessions/revoke",
    ):
        resp = await s.post(path, {"reason": big})
        assert resp.status == 413, path


async def test_file_uploads_instead_of_text_are_400(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(s)
    for path, field in (
        ("/admin/users/new", "email"),
        (f"/admin/users/{target.id}/lock", "reason"),
    ):
        data = FormData()
        data.add_field("csrf_token", s.csrf)
        data.add_field("duration", "1h")
        data.add_field(field, b"hello world!", filename="f.txt", content_type="text/plain")
        resp = await s.client.post(path, data=data, allow_redirects=False)
        assert resp.status == 400, path
        assert "must be text" in await resp.text()


async def test_undecodable_form_bodies_are_400(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(s)
    raw = f"csrf_token={s.csrf}&duration=1h&reason=".encode() + b"\xff\xfe\xfa not utf-8 at all"
    resp = await s.client.post(
        f"/admin/users/{target.id}/lock",
        data=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert resp.status == 400
    # Percent-encoded invalid UTF-8 decodes to U+FFFD: stored as such, never a 500.
    encoded = f"csrf_token={s.csrf}&duration=1h&reason=%FF%FE-not-utf8".encode()
    resp = await s.client.post(
        f"/admin/users/{target.id}/lock",
        data=encoded,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert resp.status == 303


async def test_forms_without_csrf_token_are_refused(signed_in, make_user):
    s = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(s)
    for path in ("/admin/users/new", f"/admin/users/{target.id}/lock"):
        resp = await s.client.post(path, data={"reason": REASON}, allow_redirects=False)
        assert resp.status == 403, path  # SEC-1
