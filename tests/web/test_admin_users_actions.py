"""Administrator-driven account actions (REC-5) behind the re-auth wall (REAUTH-1), via the pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.authority import users
from tests.helpers import outbox_mail
from tests.web.conftest import sign_in

pytestmark = pytest.mark.asyncio
REASON = "ticket 4711: user asked by phone"


async def elevate(s: Any) -> None:
    resp = await s.post("/reauth", {"password": s.password, "return_to": "/admin/"})
    assert resp.status == 303, await resp.text()


async def last_event(database_url: str, event_type: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT metadata, actor_email FROM keel_audit WHERE event_type = %s"
            " ORDER BY id DESC LIMIT 1",
            (event_type,),
        )
        row = await cur.fetchone()
    assert row, f"no {event_type} event"
    return {**row[0], "actor_email": row[1]}


async def fetch_user(database_url: str, user_id: int) -> users.User:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await users.get(conn, user_id)


ACTIONS = ["reset-link", "temporary-password", "lock", "unlock", "sessions/revoke"]


@pytest.mark.parametrize("action", ACTIONS)
async def test_every_action_is_behind_the_reauth_wall(signed_in, make_user, action):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    path = f"/admin/users/{target.id}/{action}"
    for resp in (await admin.get(path), await admin.post(path, {"reason": REASON})):
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/reauth?return_to=")
    await elevate(admin)
    page = await (await admin.get(path)).text()
    assert 'name="reason"' in page and 'name="csrf_token"' in page


async def test_every_action_refuses_equal_or_higher_rank(signed_in, make_user):
    admin = await signed_in("administrator")
    await elevate(admin)
    for role, action in [(r, a) for r in ("administrator", "developer") for a in ACTIONS]:
        target, _ = await make_user(role)
        resp = await admin.post(f"/admin/users/{target.id}/{action}", {"reason": REASON})
        assert resp.status == 403, (role, action)
        assert "not below yours" in await resp.text()


async def test_every_action_requires_a_reason_of_eight_characters(signed_in, make_user):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(admin)
    for action in ACTIONS:
        for reason in (None, "", "short", "  seven  ", "x" * 501, "bad\x00reason!", "\u202e" * 9):
            form = {"duration": "1h"} if reason is None else {"reason": reason, "duration": "1h"}
            resp = await admin.post(f"/admin/users/{target.id}/{action}", form)
            assert resp.status == 400, (action, reason)
            assert "reason" in (await resp.text()).lower()


async def test_send_reset_link_queues_mail_and_records_the_reason(
    signed_in, make_user, database_url
):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(admin)
    resp = await admin.post(f"/admin/users/{target.id}/reset-link", {"reason": REASON})
    assert resp.status == 303 and resp.headers["Location"].endswith(f"/admin/users/{target.id}/")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        (to_addr, body), *_ = await outbox_mail(conn, admin.secret_key)
        cur = await conn.execute("SELECT body_text FROM keel_outbox")
        assert "/reset/!keel-sealed-token!" in (await cur.fetchone())[0], "INV-1: never the token"
    assert to_addr == target.email
    link = re.search(r"http://127\.0\.0\.1:8000/reset/([A-Za-z0-9_-]{43})", body)
    assert link, body  # built from public_url (REC-1)
    event = await last_event(database_url, "password_reset_by_other")
    assert event["reason"] == REASON and event["method"] == "link"
    assert link.group(1) not in json.dumps(event)  # AUDIT-7: a fingerprint, never the token


async def test_temporary_password_is_shown_once_forces_a_change_and_ends_sessions(
    signed_in, client, database_url
):
    admin = await signed_in("administrator")
    staff = await signed_in("staff")
    await elevate(admin)
    resp = await admin.post(f"/admin/users/{staff.user.id}/temporary-password", {"reason": REASON})
    assert resp.status == 200
    page = await resp.text()
    password = re.search(r'id="one-time-password">([^<]+)<', page).group(1)
    assert resp.headers["Cache-Control"] == "no-store"
    # Sessions ended (REC-5), the old password is gone, the new one forces a change (LOGIN-7).
    resp = await staff.get("/admin/")
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")
    assert (await sign_in(client, staff.user.email, staff.password)).status == 401
    assert (await sign_in(client, staff.user.email, password)).status == 303
    resp = await client.get("/admin/", allow_redirects=False)
    assert resp.headers["Location"].startswith("/must-change-password")
    event = await last_event(database_url, "password_reset_by_other")
    assert event["reason"] == REASON and event["method"] == "temporary_password"
    assert password not in json.dumps(event)
    profile = await (await admin.get(f"/admin/users/{staff.user.id}/")).text()
    assert password not in profile  # shown once only


LENGTHS = [
    ({"duration": "15m"}, 15),
    ({"duration": "1h"}, 60),
    ({"duration": "24h"}, 24 * 60),
    ({"duration": "7d"}, 7 * 24 * 60),
    ({"duration": "minutes", "minutes": "90"}, 90),
    ({"duration": "indefinite"}, None),
]


async def test_lock_for_each_length_then_unlock(signed_in, make_user, client, database_url):
    admin = await signed_in("administrator")
    await elevate(admin)
    for form, minutes in LENGTHS:
        staff = await signed_in("staff")
        before = datetime.now(UTC)
        resp = await admin.post(f"/admin/users/{staff.user.id}/lock", {**form, "reason": REASON})
        assert resp.headers["Location"].endswith(f"/admin/users/{staff.user.id}/")
        locked = await fetch_user(database_url, staff.user.id)
        if minutes is None:
            assert locked.locked_until.year >= 9999  # 'infinity': until unlocked
        else:
            expected = before + timedelta(minutes=minutes)
            assert abs((locked.locked_until - expected).total_seconds()) < 30
        assert (await staff.get("/admin/")).status in (302, 303)  # sessions ended
        assert (await last_event(database_url, "account_locked"))["reason"] == REASON
    page = await (await admin.get(f"/admin/users/{staff.user.id}/")).text()
    assert "Locked" in page and "until unlocked" in page
    assert (await sign_in(client, staff.user.email, staff.password)).status == 401
    resp = await admin.post(f"/admin/users/{staff.user.id}/unlock", {"reason": REASON})
    assert resp.status == 303
    assert (await sign_in(client, staff.user.email, staff.password)).status == 303
    assert (await last_event(database_url, "account_unlocked"))["reason"] == REASON


BAD_LENGTHS = [
    {"duration": "forever"},
    {"duration": "minutes"},
    {"duration": "minutes", "minutes": "0"},
    {"duration": "minutes", "minutes": "-5"},
    {"duration": "minutes", "minutes": "1e9"},
    {"duration": "minutes", "minutes": "9999999"},
    {"duration": "minutes", "minutes": "'; DROP TABLE keel_users; --"},
]


async def test_lock_refuses_bad_lengths_with_400(signed_in, make_user, database_url):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(admin)
    for form in BAD_LENGTHS:
        resp = await admin.post(f"/admin/users/{target.id}/lock", {**form, "reason": REASON})
        assert resp.status == 400, form
        assert "length" in (await resp.text()) or "minutes" in (await resp.text())
    assert (await fetch_user(database_url, target.id)).locked_until is None


async def test_revoke_one_session_then_all(signed_in, client, database_url, config):
    admin = await signed_in("administrator")
    staff = await signed_in("staff")
    other = await signed_in("staff", email="second-session@example.com")
    # A second session of the same staff user, from another client.
    assert (await sign_in(client, staff.user.email, staff.password)).status == 303
    assert (await client.get("/admin/", allow_redirects=False)).status == 200
    await elevate(admin)
    page = await (await admin.get(f"/admin/users/{staff.user.id}/")).text()
    ids = re.findall(rf"/admin/users/{staff.user.id}/sessions/revoke\?session=(\d+)", page)
    assert len(ids) == 2
    # A session of someone else cannot be ended through this user's page.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT id FROM keel_sessions WHERE user_id = %s AND revoked_at IS NULL",
            (other.user.id,),
        )
        foreign = (await cur.fetchone())[0]
    resp = await admin.post(
        f"/admin/users/{staff.user.id}/sessions/revoke", {"session": str(foreign), "reason": REASON}
    )
    assert resp.status == 404
    assert (await other.get("/admin/")).status == 200
    resp = await admin.post(
        f"/admin/users/{staff.user.id}/sessions/revoke", {"session": ids[0], "reason": REASON}
    )
    assert resp.status == 303
    statuses = {
        (await staff.get("/admin/")).status,
        (await client.get("/admin/", allow_redirects=False)).status,
    }
    assert statuses == {200, 303} or statuses == {200, 302}  # exactly one of the two ended
    resp = await admin.post(
        f"/admin/users/{staff.user.id}/sessions/revoke", {"session": "all", "reason": REASON}
    )
    assert resp.status == 303
    assert (await staff.get("/admin/")).status in (302, 303)
    assert (await client.get("/admin/", allow_redirects=False)).status in (302, 303)
    event = await last_event(database_url, "sessions_revoked_by_other")
    assert event["note"] == REASON and event["revoked_reason"] == "administrative_revoke"


async def test_revoke_refuses_malformed_session_ids(signed_in, make_user):
    admin = await signed_in("administrator")
    target, _ = await make_user("staff")
    await elevate(admin)
    for session in ("abc", "0", "-1", "1" * 30, "1 OR 1=1"):
        resp = await admin.post(
            f"/admin/users/{target.id}/sessions/revoke", {"session": session, "reason": REASON}
        )
        assert resp.status == 400, session


async def test_reset_link_without_public_url_is_a_400_with_a_fix(
    signed_in, make_user, aiohttp_client, config
):
    import dataclasses

    from tests.helpers import cheap_app
    from tests.web.conftest import SignedIn

    bare = await aiohttp_client(cheap_app(dataclasses.replace(config, public_url="")))
    user, password = await make_user("administrator")
    assert (await sign_in(bare, user.email, password)).status == 303
    admin = SignedIn(bare, user, password, config.secret_key)
    target, _ = await make_user("staff")
    await elevate(admin)
    resp = await admin.post(f"/admin/users/{target.id}/reset-link", {"reason": REASON})
    assert resp.status == 400
    assert "public_url" in await resp.text()
