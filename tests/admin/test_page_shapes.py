"""Edit pages drawn once per shape and filled per record (`Renderer.shaped_response`): the
same page as drawing it in full, each record's own values escaped into it, nothing of one user
or record on another's page, and a page that cannot be keyed drawn as before.

The whole suite runs with `render.CHECK_SHAPES` on (tests/conftest.py): every shaped page any
test opens is compared with the page drawn in full. These tests check what that comparison
rests on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from app.admin import edit_views
from app.config import Config
from app.web import keys, render
from app.web.render import Renderer
from tests.helpers import make_config

NASTY = "<script>alert(\"x\")</script> & 'q' {{ 7*7 }}"


async def _db(database_url: str, query: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(query, params)


def _normalised(page: str) -> str:
    """A page with its per-request parts (form token, request id) blanked."""
    page = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', page)
    return re.sub(r'<span class="k-mono">[^<]*</span>', '<span class="k-mono"></span>', page)


async def test_one_shape_serves_every_record_with_its_own_values(
    signed_in: Any, client: TestClient, seeded: Any, database_url: str
) -> None:
    s = await signed_in("administrator", full_name="Ada Lovelace")
    renderer = client.server.app[keys.RENDERER]
    await _db(database_url, "UPDATE properties SET name = %s WHERE id = 2", NASTY)
    first = await s.get("/admin/properties/1/")
    assert first.status == 200
    shapes = len(renderer._shapes)
    assert shapes >= 1, "the edit page was not shaped"
    one = await first.text()
    second = await s.get("/admin/properties/2/")
    assert second.status == 200
    two = await second.text()
    assert len(renderer._shapes) == shapes, "a second record of the same form is a new shape"
    # The record's own name, escaped, in the title, the heading, the breadcrumbs and its field.
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;q&#39; {{ 7*7 }}"
    assert two.count(escaped) >= 4, two
    assert "<script>alert" not in two
    assert escaped not in one
    assert 'action="/admin/properties/2/"' in two and 'action="/admin/properties/1/"' in one
    for page in (one, two):
        assert "keel-hole-" not in page
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', page)
        assert tokens and len(set(tokens)) == 1 and tokens[0], "one fresh token per page"
    # Served again, the same page apart from the token and the request id.
    again = await (await s.get("/admin/properties/2/")).text()
    assert _normalised(again) == _normalised(two)


async def test_users_and_form_states_never_share_a_shape(
    signed_in: Any, client: TestClient, seeded: Any, database_url: str
) -> None:
    """Another user's name, another role, a form that cannot be saved: each is its own shape,
    so no page carries another user's chrome or another state's buttons."""
    admin = await signed_in("administrator", full_name="Ada Admin")
    viewer = await signed_in("staff", full_name="Vera Viewer")
    await _db(
        database_url,
        "INSERT INTO keel_user_permissions (user_id, permission) VALUES (%s, 'properties.view')",
        viewer.user.id,
    )
    renderer = client.server.app[keys.RENDERER]
    a = await (await admin.client.get("/admin/properties/1/")).text()
    before = len(renderer._shapes)
    v = await (await viewer.client.get("/admin/properties/1/")).text()
    assert len(renderer._shapes) == before + 1
    assert "Ada Admin" in a and "Vera Viewer" not in a
    assert "Vera Viewer" in v and "Ada Admin" not in v
    assert 'value="save"' in a and 'value="save"' not in v  # the viewer's form is locked
    assert "You can view this record but not change it." in v


async def test_a_hole_the_template_changes_fails_the_check(
    signed_in: Any, client: TestClient, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What CHECK_SHAPES is for: a value used otherwise than inserted (here the breadcrumb
    shows the title in capitals) cannot be filled into a hole, and the comparison says so
    instead of serving a page with a marker in it."""
    real = edit_views.breadcrumbs

    def shouting(bound: Any, back: Any, current: dict[str, Any]) -> Any:
        return real(bound, back, {**current, "label": str(current["label"]).upper()})

    monkeypatch.setattr(edit_views, "breadcrumbs", shouting)
    s = await signed_in("administrator")
    resp = await s.get("/admin/properties/1/")
    assert resp.status == 500
    monkeypatch.setattr(render, "CHECK_SHAPES", False)
    page = await (await s.get("/admin/properties/1/")).text()
    assert "KEEL-HOLE-" in page  # what a wrong key or a changed hole would have served


async def test_pages_that_cannot_be_shaped_are_drawn_in_full(
    signed_in: Any, client: TestClient, seeded: Any, database_url: str
) -> None:
    """A title with spaces at its ends (the page trims it), an edit form with inline rows
    (a customer's bookings), a page with a message: drawn in full, not shaped."""
    s = await signed_in("administrator")
    renderer = client.server.app[keys.RENDERER]
    await _db(database_url, "UPDATE properties SET name = '  Spaced  ' WHERE id = 3")
    before = len(renderer._shapes)
    for path in ("/admin/properties/3/", "/admin/customers/1/", "/admin/properties/1/?saved=1"):
        resp = await s.get(path)
        assert resp.status == 200, path
    assert len(renderer._shapes) == before
    assert "Saved." in await (await s.get("/admin/properties/1/?saved=1")).text()


def test_an_override_of_a_page_part_turns_shapes_off(tmp_path: Path, config: Config) -> None:
    """A host's template may cut, count or branch on a value: with any page part overridden,
    no page is shaped."""
    (tmp_path / "_chrome.html").write_text("<header>{{ user.email|upper }}</header>")
    own = Renderer(config, lambda name: f"/static/{name}")
    assert own._own_templates(own.template(["admin/edit.html"]))
    overridden = Renderer(
        make_config(config.database_url or "", config.secret_key, template_dir=str(tmp_path)),
        lambda name: f"/static/{name}",
    )
    assert not overridden._own_templates(overridden.template(["admin/edit.html"]))


async def test_list_pages_are_shaped_by_their_query_and_saved_views(
    signed_in: Any, client: TestClient, seeded: Any, database_url: str
) -> None:
    """A list page's rows, counts and page links are filled per request; its query (filters,
    search, order) and the user's saved views decide its shape, so a saved view shows at once
    and another order is another shape."""
    s = await signed_in("administrator")
    renderer = client.server.app[keys.RENDERER]
    await _db(database_url, "UPDATE properties SET name = %s WHERE id = 2", NASTY)
    one = await (await s.get("/admin/properties/")).text()
    shapes = len(renderer._shapes)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in one and "<script>alert" not in one
    again = await (await s.get("/admin/properties/")).text()
    assert len(renderer._shapes) == shapes and _normalised(again) == _normalised(one)
    other = await (await s.get("/admin/properties/?o=-id")).text()
    assert len(renderer._shapes) == shapes + 1 and other != one
    await _db(database_url, "UPDATE properties SET name = 'Renamed yard' WHERE id = 1")
    assert "Renamed yard" in await (await s.get("/admin/properties/")).text()
    await _db(
        database_url,
        "INSERT INTO keel_saved_filters (user_id, resource, name, query)"
        " VALUES (%s, 'properties', 'By newest <b>', 'o=-id')",
        s.user.id,
    )
    saved = await (await s.get("/admin/properties/?o=-id")).text()
    assert "By newest &lt;b&gt;" in saved
    assert 'aria-current="page">By newest &lt;b&gt;</a>' in saved
    for page in (one, other, saved):
        assert "keel-hole-" not in page
