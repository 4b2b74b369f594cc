"""The users list and the audit log wear the resource lists' filter bar: toggle pills, one date
control with presets, active-filter chips, clean URLs, and private saved views above the table."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.asyncio


async def _seed_users(make_user: Any, database_url: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO keel_groups (name) VALUES ('night-shift')")
    made = {
        "recent": (await make_user("user", email="recent@example.com", groups=["night-shift"]))[0],
        "stale": (await make_user("user", email="stale@example.com"))[0],
        "never": (await make_user("user", email="never@example.com"))[0],
        "gone": (await make_user("user", email="gone@example.com", active=False))[0],
        "locked": (await make_user("user", email="locked@example.com"))[0],
    }
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for key, at in (("recent", now - timedelta(days=2)), ("stale", now - timedelta(days=200))):
            await conn.execute(
                "UPDATE keel_users SET last_login_at = %s WHERE id = %s", (at, made[key].id)
            )
        for key in ("gone", "locked"):
            await conn.execute(
                "UPDATE keel_users SET last_login_at = %s WHERE id = %s", (now, made[key].id)
            )
        await conn.execute(
            "UPDATE keel_users SET locked_until = %s WHERE id = %s",
            (now + timedelta(hours=1), made["locked"].id),
        )
    return made


def _emails(page: str) -> set[str]:
    return set(re.findall(r"([a-z]+@example\.com)</a>", page))


async def test_users_list_shows_the_resource_filter_bar(signed_in: Any, database_url: str) -> None:
    s = await signed_in("administrator")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO keel_groups (name) VALUES ('QA Team')")
    page = await (await s.get("/admin/users/")).text()
    assert 'class="k-panel k-filterbar"' in page and 'id="list-q" type="search" name="q"' in page
    assert '<details class="k-filters">' in page  # folded while nothing is filtered
    assert '<input type="radio" name="status" value="locked">Locked' in page
    assert '<input type="radio" name="last_sign_in" value="never">Never' in page
    assert 'name="last_sign_in__gte"' in page and 'name="last_sign_in__lte"' in page
    assert 'aria-label="Saved views"' in page and "All users</a>" in page
    # Labels as written: a group's name is not re-cased ("QA Team", not "Qa team").
    assert '<input type="radio" name="group" value="QA Team">QA Team</label>' in page
    assert '<input type="radio" name="role" value="staff">Staff</label>' in page


async def test_users_filters_by_status_group_and_last_sign_in(
    signed_in: Any, make_user: Any, database_url: str
) -> None:
    s = await signed_in("administrator")
    await _seed_users(make_user, database_url)
    seeded = {f"{k}@example.com" for k in ("recent", "stale", "never", "gone", "locked")}

    async def shown(query: str) -> set[str]:
        resp = await s.get(f"/admin/users/?{query}")
        assert resp.status == 200, (query, await resp.text())
        return _emails(await resp.text()) & seeded

    assert await shown("status=locked") == {"locked@example.com"}
    assert await shown("status=inactive") == {"gone@example.com"}
    assert "locked@example.com" not in await shown("status=active")
    assert await shown("group=night-shift") == {"recent@example.com"}
    assert await shown("last_sign_in=never") == {"never@example.com"}
    assert await shown("last_sign_in=over_90_days") == {"stale@example.com"}
    assert "stale@example.com" not in await shown("last_sign_in=past_7_days")
    assert "recent@example.com" in await shown("last_sign_in=past_7_days")
    old = (datetime.now(UTC) - timedelta(days=200)).date().isoformat()
    assert await shown(f"last_sign_in__gte={old}&last_sign_in__lte={old}") == {"stale@example.com"}
    page = await (await s.get("/admin/users/?status=locked&last_sign_in=past_7_days")).text()
    assert '<details class="k-filters" open>' in page and "(2 active)" in page
    assert "Remove filter: Status: Locked" in page
    assert "Remove filter: Last sign-in: past 7 days" in page


async def test_empty_parameters_redirect_to_the_clean_address(signed_in: Any) -> None:
    s = await signed_in("administrator")
    for path, clean in (
        ("/admin/users/?q=&status=locked&last_sign_in__gte=", "/admin/users/?status=locked"),
        ("/admin/audit/?event=&since=&until=2026-01-31", "/admin/audit/?until=2026-01-31"),
    ):
        resp = await s.get(path)
        assert resp.status == 302 and resp.headers["Location"] == clean, path


async def test_bad_period_is_a_400_naming_the_field(signed_in: Any) -> None:
    s = await signed_in("administrator")
    resp = await s.get("/admin/audit/?when=someday")
    page = await resp.text()
    assert resp.status == 400 and "Some filters are not valid" in page
    assert 'aria-invalid="true"' in page and "Traceback" not in page


@pytest.mark.parametrize(
    ("slug", "query", "stored"),
    [
        ("users", "status=locked&junk=1&q=ada", "q=ada&status=locked"),
        ("audit", "when=past_7_days&event=login_failed", "event=login_failed&when=past_7_days"),
    ],
)
async def test_saved_views_are_private_and_deletable(
    signed_in: Any, slug: str, query: str, stored: str
) -> None:
    ada = await signed_in("administrator")
    resp = await ada.post(f"/admin/{slug}/saved-filters", {"name": "Mine", "query": query})
    # Only this list's own, valid filters are kept, in the list's order.
    assert resp.status == 303 and resp.headers["Location"] == f"/admin/{slug}/?{stored}"
    page = await (await ada.get(f"/admin/{slug}/")).text()
    assert f'href="/admin/{slug}/?{html.escape(stored)}">Mine</a>' in page
    view_id = re.search(rf"/admin/{slug}/saved-filters/(\d+)/delete", page)
    assert view_id is not None
    # On the saved view's own page it is the current one and "Save view" is not offered.
    page = await (await ada.get(f"/admin/{slug}/?{stored}")).text()
    assert 'aria-current="page">Mine</a>' in page and "Save view" not in page

    # Another administrator neither sees it nor can delete it.
    bob = await signed_in("administrator")
    assert ">Mine</a>" not in await (await bob.get(f"/admin/{slug}/")).text()
    resp = await bob.post(f"/admin/{slug}/saved-filters/{view_id[1]}/delete")
    assert resp.status == 303
    assert ">Mine</a>" in await (await ada.get(f"/admin/{slug}/")).text()

    resp = await ada.post(f"/admin/{slug}/saved-filters/{view_id[1]}/delete")
    assert resp.status == 303
    assert ">Mine</a>" not in await (await ada.get(f"/admin/{slug}/")).text()


async def test_saving_a_view_without_a_name_is_a_clear_400(signed_in: Any) -> None:
    s = await signed_in("administrator")
    resp = await s.post("/admin/users/saved-filters", {"name": " ", "query": "status=locked"})
    page = await resp.text()
    assert resp.status == 400 and "name" in page and "Traceback" not in page
    resp = await s.post("/admin/users/saved-filters/abc/delete")
    assert resp.status == 400


async def test_a_parameter_that_is_no_filter_is_refused_not_ignored(signed_in: Any) -> None:
    """An old bookmark such as `?active=no` (before the status filter) must not quietly show
    every user as if it had filtered."""
    s = await signed_in("administrator")
    for path in ("/admin/users/?active=no", "/admin/audit/?event_type=login_failed"):
        resp = await s.get(path)
        page = html.unescape(await resp.text())
        assert resp.status == 400, path
        name = path.split("?")[1].split("=")[0]
        assert f"'{name}' is not a filter of this list" in page, page[:2000]
    page = html.unescape(await (await s.get("/admin/users/?active=no")).text())
    assert "status" in page.split("is not a filter of this list", 1)[1][:200]
