"""AUDIT-8, AUTHZ-8, SEC-3: the global history page as administrators and others see it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app import audit
from app import audit_events as ev
from app.audit import Context
from app.authority import users
from tests.admin.test_edit_support import Browser, sign_in


@pytest.fixture
async def admin(client: Any, database_url: str, secret_key: str) -> Browser:
    return await sign_in(client, database_url, secret_key, role="administrator")


async def _seed(conn: psycopg.AsyncConnection[Any], ctx: Context, n: int = 0) -> None:
    eve = Context(
        audit_key=ctx.audit_key, actor_id=99, actor_email="eve@example.com", ip="198.51.100.4"
    )
    await audit.record(conn, eve, ev.login_failed("eve@example.com", "wrong_password", user_id=99))
    await audit.record(
        conn,
        ctx,
        ev.update(
            "tickets", 7, "<script>alert(1)</script>", audit.diff({"s": "open"}, {"s": "done"})
        ),
    )
    for i in range(n):
        await audit.record(conn, ctx, ev.create("tickets", 100 + i, f"#{100 + i}", {}))


async def test_administrators_see_events_grouped_by_day(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx)
    resp = await admin.get("/admin/audit/")
    page = await resp.text()
    assert resp.status == 200, page
    today = datetime.now(UTC).date().isoformat()
    assert f'<time datetime="{today}">' in page
    assert "login_failed" in page
    # One sentence per event: who, what, to which record; the raw fields are on its own page.
    assert "eve@example.com failed to sign in (wrong password)" in page
    assert " changed tickets #7 (s)" in page  # a resource Keel does not serve: no link
    assert "198.51.100.4" not in page and 'href="/admin/audit/1/"' in page
    assert "<script>alert(1)</script>" not in page
    assert 'href="/admin/audit/"' in page and "Audit log" in page  # sidebar entry
    assert "style=" not in page and re.search(r"<script(?! src)", page) is None  # CSP-safe


async def test_an_event_page_keeps_every_raw_field_and_the_chain_hashes(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx)
    rows = (await audit.history(conn, event="update")).rows
    resp = await admin.get(f"/admin/audit/{rows[0].id}/")
    page = await resp.text()
    assert resp.status == 200, page
    assert "req-0123456789abcdef" in page and "203.0.113.9" in page  # request id, IP
    assert "&lt;script&gt;" in page and "<script>alert(1)</script>" not in page  # summary
    assert "Row hash" in page and "Previous hash" in page
    cur = await conn.execute("SELECT row_hash FROM keel_audit WHERE id = %s", (rows[0].id,))
    found = await cur.fetchone()
    assert found and bytes(found[0]).hex() in page
    resp = await admin.get("/admin/audit/999999/")
    assert resp.status == 404 and "Traceback" not in await resp.text()


async def test_sentences_name_the_target_and_link_what_still_exists(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    bob = await users.create(
        conn, ctx, None, email="bob@example.com", profile={"full_name": "Bob Builder"}
    )
    ana = await users.create(
        conn, ctx, None, email="ana@example.com", profile={"display_name": "Ana Admin"}
    )
    by_ana = Context(audit_key=ctx.audit_key, actor_id=ana.id, actor_email="ana@example.com")
    await audit.record(
        conn,
        by_ana,
        ev.user_updated(bob.id, "bob@example.com", {"job_title": {"from": "", "to": "x"}}),
    )
    await audit.record(conn, by_ana, ev.user_updated(424242, "gone@example.com", {}))
    page = await (await admin.get("/admin/audit/?event=user_updated")).text()
    ana_link = f'<a href="/admin/users/{ana.id}/">Ana Admin</a>'
    bob_link = f'<a href="/admin/users/{bob.id}/">user Bob Builder</a>'
    assert f"{ana_link} changed {bob_link} (job title)" in page, page
    assert f"{ana_link} changed user #424242" in page  # gone: no link, the id instead


async def test_filters_narrow_the_history(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx)
    page = await (await admin.get("/admin/audit/?event=login_failed")).text()
    assert "failed to sign in" in page and "changed tickets" not in page
    assert "Remove filter: Event: login_failed" in page
    page = await (await admin.get("/admin/audit/?actor=EVE@example.com&resource=users")).text()
    assert "failed to sign in" in page and "changed tickets" not in page
    today = datetime.now(UTC).date().isoformat()
    page = await (await admin.get(f"/admin/audit/?since={today}&until={today}")).text()
    assert "failed to sign in" in page and "changed tickets" in page
    page = await (await admin.get("/admin/audit/?until=2000-01-01")).text()
    assert "No events" in page and "Nothing matches these filters" in page


async def test_older_and_newer_pages(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx, n=55)  # 57 events: 50 on the first page, 7 on the second
    first = await (await admin.get("/admin/audit/?resource=tickets")).text()
    assert first.count("<tr>") - first.count("<thead><tr>") == 50
    older = re.search(r'href="(/admin/audit/\?[^"]*cursor=[^"]+)"', first)
    assert older and 'rel="prev"' not in first
    second = await (await admin.get(older.group(1).replace("&amp;", "&"))).text()
    assert "#100" in second and "resource=tickets" in older.group(1)
    newer = re.search(r'href="(/admin/audit/\?[^"]*cursor=[^"]+)"', second)
    assert newer
    back = await (await admin.get(newer.group(1).replace("&amp;", "&"))).text()
    assert "#154" in back and "#100" not in back


BAD_QUERIES = [
    "event=coffee_brewed",
    "event=%3Cscript%3E",
    "actor=not-an-email",
    "resource=tickets%3B%20DROP%20TABLE%20keel_audit",
    "since=2024-13-45",
    "since=yesterday",
    "until=2024-01-01&since=2024-02-01",
    "cursor=garbage!!",
    "cursor=" + "A" * 200,
    "cursor=MjAyNHwx",  # base64 of "2024|1": well-formed, unsigned
    "actor=a%00b@example.com",
    "actor=" + "a" * 400 + "@example.com",
]


async def test_bad_filters_answer_400_with_a_message(admin: Browser) -> None:
    """SEC-3: a bad value is a 400 page that says what to fix, never a 500."""
    for query in BAD_QUERIES:
        resp = await admin.get(f"/admin/audit/?{query}")
        page = await resp.text()
        assert resp.status == 400, (query, page)
        assert "Some filters are not valid" in page, query
        assert 'aria-invalid="true"' in page or "The page link is damaged" in page, query
        assert "Traceback" not in page and "psycopg" not in page, query


async def test_a_huge_query_string_is_refused_cleanly(admin: Browser) -> None:
    resp = await admin.get("/admin/audit/?actor=" + "a" * 20_000)
    assert resp.status in (400, 414) and resp.status != 500


async def test_staff_are_refused_with_the_missing_role(
    client: Any, database_url: str, secret_key: str
) -> None:
    staff = await sign_in(client, database_url, secret_key, role="staff")
    resp = await staff.get("/admin/audit/")
    assert resp.status == 403 and "<strong>administrator</strong> role" in await resp.text()


async def test_anonymous_visitors_are_sent_to_sign_in(client: Any) -> None:
    resp = await client.get("/admin/audit/", allow_redirects=False)
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login?return_to=")


async def test_activity_partial_renders_a_timeline(
    client: Any, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    from app.web import keys

    await _seed(conn, ctx)
    rows = await audit.user_activity(conn, 99)
    env = client.server.app[keys.RENDERER].env
    html = env.get_template("audit/_activity.html").render(activity=rows)
    assert "k-timeline" in html and "Failed sign-in for eve@example.com" in html
    assert "198.51.100.4" in html
    empty = env.get_template("audit/_activity.html").render(activity=[])
    assert "No activity yet" in empty


async def test_the_filter_bar_keeps_empty_fields_out_of_the_address(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx)
    resp = await admin.get("/admin/audit/?event=&actor=&resource=tickets&since=&until=")
    assert resp.status == 302 and resp.headers["Location"] == "/admin/audit/?resource=tickets"
    resp = await admin.get("/admin/users/?q=&role=&active=")
    assert resp.status == 302 and resp.headers["Location"] == "/admin/users/"


async def test_date_presets_and_role_pills(
    admin: Browser, conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    await _seed(conn, ctx)
    today = datetime.now(UTC).date()
    week = f"since={(today - timedelta(days=6)).isoformat()}&amp;until={today.isoformat()}"
    # One date control, as on resource lists: preset pills, then from/to under since/until.
    page = await (await admin.get("/admin/audit/?event=login_failed")).text()
    assert '<input type="radio" name="when" value="past_7_days">Past 7 days' in page
    assert 'name="since" value=""' in page and 'name="until" value=""' in page
    page = await (await admin.get("/admin/audit/?when=past_7_days")).text()
    assert '<input type="radio" name="when" value="past_7_days" checked>' in page
    assert "failed to sign in" in page and "Date: past 7 days" in page
    # Old bookmarks with since/until keep working, and fill the from/to inputs.
    page = await (await admin.get(f"/admin/audit/?{week.replace('&amp;', '&')}")).text()
    assert f'name="since" value="{(today - timedelta(days=6)).isoformat()}"' in page
    assert "failed to sign in" in page
    page = await (await admin.get("/admin/users/?role=administrator")).text()
    assert '<input type="radio" name="role" value="administrator" checked>' in page
    assert '<input type="radio" name="role" value="">' in page  # "Any" clears the pill
