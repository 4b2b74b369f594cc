"""The kept page chrome (`Renderer.chrome`): the same HTML as drawing it, a form token of its
own on every page, bounded, and never older than the permissions read on this request
(UI-1..3, AUTHZ-5)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient
from markupsafe import Markup

from app.authority.principal import Principal
from app.config import Config
from app.web import auth_middleware, keys
from app.web.auth import NAV_PROVIDERS
from app.web.auth_middleware import NAV_MEMO_SIZE
from app.web.render import Renderer


def _renderer(config: Config) -> Renderer:
    return Renderer(config, lambda name: f"/static/{name}")


def _nav(active: str = "/admin/") -> list[dict[str, Any]]:
    return [
        {"label": "Dashboard", "url": "/admin/", "active": active == "/admin/",
         "section": "Overview", "icon": "home"},
        {"label": "B <&>", "url": "/admin/b/", "active": active == "/admin/b/",
         "section": "Data", "icon": "list"},
        {"label": "Account", "url": "/account", "active": False, "section": "Your account",
         "icon": "user", "count": 3},
    ]  # fmt: skip


def _who(role: str = "staff", name: str = "Ada <Lovelace>") -> Principal:
    return Principal(user_id=7, email="ada@example.com", role=role, display_name=name)


def test_the_kept_chrome_is_what_the_template_draws(config: Config) -> None:
    """Cold and warm, for every shape of input: the memo returns the drawing, with this call's
    form token in both places a drawing would put it."""
    r = _renderer(config)
    cases: list[tuple[Any, list[dict[str, Any]], dict[str, Any]]] = [
        (None, [], {"theme": None, "search_q": "", "insecure": False, "csrf_token": None}),
        (None, [], {"theme": "dark", "search_q": "", "insecure": True, "csrf_token": "t0"}),
        (_who(), _nav(), {"theme": None, "search_q": "", "insecure": True, "csrf_token": "a1"}),
        (_who(), _nav("/admin/b/"), {"theme": "light", "search_q": "", "insecure": False,
                                     "csrf_token": "b2"}),
        (_who("user", ""), _nav(), {"theme": None, "search_q": "", "insecure": False,
                                    "csrf_token": ""}),
        (_who("administrator"), _nav(), {"theme": None, "search_q": "<q>", "insecure": False,
                                         "csrf_token": "c3"}),
    ]  # fmt: skip
    for _ in range(2):
        for user, nav, kw in cases:
            assert r.chrome(user, nav, **kw) == r.draw_chrome(user, nav, **kw), (user, kw)
    # A warm entry with another token: that token, and no trace of the one drawn first.
    user, nav, kw = cases[2]
    again = r.chrome(user, nav, **{**kw, "csrf_token": "<fresh&>"})
    assert again == r.draw_chrome(user, nav, **{**kw, "csrf_token": "<fresh&>"})
    assert 'value="&lt;fresh&amp;&gt;"' in again and 'value="a1"' not in again
    assert "keel-csrf-" not in again
    assert "Ada &lt;Lovelace&gt;" in again and "B &lt;&amp;&gt;" in again


def test_the_memo_keys_by_what_the_chrome_shows(config: Config) -> None:
    """Another name, role, active page or theme is another chrome; a search's text is drawn
    fresh each time and not kept."""
    r = _renderer(config)
    kw: dict[str, Any] = {"theme": None, "search_q": "", "insecure": False, "csrf_token": "t"}
    base = r.chrome(_who(), _nav(), **kw)
    assert r.chrome(_who(name="Grace"), _nav(), **kw) != base
    assert r.chrome(_who(role="administrator"), _nav(), **kw) != base
    assert r.chrome(_who(), _nav("/admin/b/"), **kw) != base
    assert r.chrome(_who(), _nav()[:1], **kw) != base
    assert r.chrome(_who(), _nav(), **{**kw, "theme": "dark"}) != base
    kept = len(r._chromes)
    assert 'value="hello"' in r.chrome(_who(), _nav(), **{**kw, "search_q": "hello"})
    assert len(r._chromes) == kept


def test_the_memo_is_bounded(config: Config) -> None:
    r = _renderer(config)
    r.CHROME_MEMO_SIZE = 4
    kw: dict[str, Any] = {"theme": None, "search_q": "", "insecure": False, "csrf_token": "t"}
    for i in range(20):
        nav = [{"label": f"L{i}", "url": f"/admin/t{i}/", "active": True, "section": "Data"}]
        assert f"L{i}" in r.chrome(_who(), nav, **kw)
        assert len(r._chromes) <= 4


def _normalised(page: str) -> str:
    """A page with its per-request parts (form token, request id) blanked."""
    page = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', page)
    return re.sub(r'<span class="k-mono">[^<]*</span>', '<span class="k-mono"></span>', page)


async def _db(database_url: str, query: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(query, params)


async def test_pages_with_the_kept_chrome_equal_pages_drawn_without_it(
    signed_in: Any, client: TestClient, seeded: Any
) -> None:
    """The dashboard and an edit page, served twice (memo cold, then warm), equal the same
    pages with the memo off, apart from the form token and the request id."""
    s = await signed_in("administrator", full_name="Ada Lovelace")
    renderer = client.server.app[keys.RENDERER]
    for path in ("/admin/", "/admin/bookings/1/", "/account"):
        first = await s.get(path)
        assert first.status == 200, path
        cold = await first.text()
        warm = await (await s.get(path)).text()
        renderer.CHROME_MEMO_SIZE = 0  # every chrome drawn, then dropped at once
        auth_middleware.NAV_MEMO_SIZE = 0  # and every sidebar built afresh
        try:
            fresh = await (await s.get(path)).text()
        finally:
            del renderer.CHROME_MEMO_SIZE
            auth_middleware.NAV_MEMO_SIZE = NAV_MEMO_SIZE
        assert 'class="k-sidebar"' in cold and "Ada Lovelace" in cold, path
        assert _normalised(cold) == _normalised(warm) == _normalised(fresh), path
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', warm)
        assert tokens and len(set(tokens)) == 1 and tokens[0] != "", path


async def test_a_revoked_permission_leaves_the_sidebar_on_the_next_page(
    signed_in: Any, database_url: str
) -> None:
    """AUTHZ-5 with the memo warm: the chrome is keyed by the permissions this request read,
    so the page after a revocation (or a rename) no longer shows what was taken away."""
    s = await signed_in("staff", full_name="Ada Lovelace")
    await _db(
        database_url,
        "INSERT INTO keel_user_permissions (user_id, permission) VALUES (%s, 'bookings.view')",
        s.user.id,
    )
    for _ in range(2):  # the second serves the kept chrome
        body = await (await s.get("/account")).text()
        assert 'href="/admin/bookings/"' in body and "Ada Lovelace" in body
    await _db(database_url, "DELETE FROM keel_user_permissions WHERE user_id = %s", s.user.id)
    await _db(
        database_url, "UPDATE keel_users SET full_name = 'Grace Hopper' WHERE id = %s", s.user.id
    )
    body = await (await s.get("/account")).text()
    assert 'href="/admin/bookings/"' not in body
    assert "Grace Hopper" in body and "Ada Lovelace" not in body


async def test_a_role_change_or_a_group_grant_shows_in_the_next_sidebar(
    signed_in: Any, database_url: str
) -> None:
    """The kept sidebar is keyed by the role and the permission names this request read: a
    new role, or a permission that arrives through a group, is on the very next page."""
    s = await signed_in("staff")
    for _ in range(2):  # warm
        body = await (await s.get("/admin/")).text()
        assert 'href="/admin/bookings/"' not in body and 'href="/admin/users/"' not in body
    await _db(
        database_url,
        "WITH g AS (INSERT INTO keel_groups (name) VALUES ('Desk') RETURNING id),"
        " m AS (INSERT INTO keel_group_members (group_id, user_id) SELECT id, %s FROM g)"
        " INSERT INTO keel_group_permissions (group_id, permission)"
        " SELECT id, 'bookings.view' FROM g",
        s.user.id,
    )
    body = await (await s.get("/admin/")).text()
    assert 'href="/admin/bookings/"' in body and 'href="/admin/users/"' not in body
    await _db(database_url, "UPDATE keel_users SET role = 'administrator' WHERE id = %s", s.user.id)
    body = await (await s.get("/admin/")).text()
    assert 'href="/admin/customers/"' in body and 'href="/admin/users/"' in body


async def test_the_sidebar_is_kept_per_page_and_not_when_a_provider_failed(
    signed_in: Any, client: TestClient
) -> None:
    """Two requests for one page share the sidebar built for the first; another page builds
    its own; a sidebar a provider failed on is shown without its items and built again."""
    s = await signed_in("administrator")
    calls: list[str] = []

    async def flaky(request: Any, who: Principal) -> list[dict[str, Any]]:
        calls.append(request.path)
        if len(calls) == 1:
            raise RuntimeError("the menu's database is away")
        return [{"label": "Flaky", "url": "/flaky", "section": "Extra", "icon": "list"}]

    client.server.app[NAV_PROVIDERS].append(flaky)
    auth_middleware._NAVS.clear()  # what signing in kept was built without this provider
    first = await (await s.get("/admin/")).text()
    assert first.count('class="k-sidebar"') == 1 and "Flaky" not in first
    for _ in range(2):
        assert "Flaky" in await (await s.get("/admin/")).text()
    assert calls == ["/admin/", "/admin/"]  # built again once, then kept
    assert "Flaky" in await (await s.get("/admin/customers/")).text()
    assert calls == ["/admin/", "/admin/", "/admin/customers/"]


def test_a_macro_shell_draws_what_its_call_block_draws(config: Config) -> None:
    """`shell("fieldset", …)` around a body equals `{% call k.fieldset(…) %}body{% endcall %}`,
    escaping included; arguments that are not plain text are drawn, not kept."""
    r = _renderer(config)
    page = r.env.from_string(
        '{% import "_macros.html" as k %}'
        "{% call k.fieldset(legend, desc) %}<b>body</b>{% endcall %}"
    )
    for legend, desc in (("Dates", None), ("A <b> & c", "Kept <by> the database.")):
        for _ in range(2):
            before, after = (
                r.shell("fieldset", legend, desc) if desc else r.shell("fieldset", legend)
            )
            drawn = str(before) + "<b>body</b>" + str(after)
            assert drawn == page.render(legend=legend, desc=desc)
    assert "A &lt;b&gt; &amp; c" in r.shell("fieldset", "A <b> & c")[0]
    kept = len(r._shells)
    r.shell("fieldset", Markup("<i>x</i>"))
    assert len(r._shells) == kept
