"""SEC-4: read-only mode, global or per resource, refuses writes with a banner; sign-in,
sign-out, re-auth and own-account pages keep working."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from app.admin.registry import site_registry
from app.admin.resources import register
from app.admin.setup import REGISTRY
from app.web.readonly import always_writable
from tests.admin.test_edit_support import execute, one, sign_in
from tests.helpers import cheap_app, make_config

T = "/admin/technicians"


@pytest.fixture(autouse=True)
async def row(database_url: str) -> None:
    await execute(
        database_url, "INSERT INTO technicians (id, name, email) VALUES (1, 'T', 't@x.test')"
    )


@pytest.mark.parametrize(
    ("path", "writable"),
    [
        ("/login", True),
        ("/logout", True),
        ("/reauth", True),
        ("/mfa", True),
        ("/must-change-password", True),
        ("/account", True),
        ("/account/password", True),
        ("/account/sessions/3/revoke", True),
        ("/loginx", False),
        ("/accounting", False),
        ("/admin/technicians/new", False),
        ("/admin/users/4/", False),
        ("/forgot", False),
    ],
)
def test_only_sign_in_and_own_account_paths_stay_writable(path: str, writable: bool) -> None:
    assert always_writable(path) is writable


async def test_global_read_only_refuses_every_admin_write(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    client = await aiohttp_client(cheap_app(make_config(database_url, secret_key, read_only=True)))
    b = await sign_in(client, database_url, secret_key)
    page = await (await b.get(f"{T}/1/")).text()
    assert "Read-only mode" in page and 'name="_save"' not in page
    assert 'value="T"' in page  # still readable
    for path, form in [
        (f"{T}/new", {"name": "N", "email": "n@x.test"}),
        (f"{T}/1/", {"name": "X"}),
        (f"{T}/1/delete", {}),
        (f"{T}/bulk/deactivate", {"ids": "1"}),
    ]:
        resp = await b.post(path, form)
        assert resp.status == 403, path
        assert "Read-only mode is on" in await resp.text()
    assert await one(database_url, "SELECT name FROM technicians") == "T"
    assert (
        await one(
            database_url,
            "SELECT count(*) FROM keel_audit"
            " WHERE event_type IN ('create', 'update', 'delete', 'bulk_action')",
        )
        == 0
    )
    resp = await b.get(f"{T}/lookup?q=T")
    assert resp.status == 200  # reading goes on


async def test_global_read_only_still_lets_people_sign_out(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    client = await aiohttp_client(cheap_app(make_config(database_url, secret_key, read_only=True)))
    b = await sign_in(client, database_url, secret_key)
    resp = await b.post("/logout", {})
    assert "Read-only mode is on" not in await resp.text()
    assert resp.status != 403


async def test_per_resource_read_only(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    registry = site_registry()
    app = cheap_app(make_config(database_url, secret_key))
    app[REGISTRY] = register(
        *(replace(r, read_only=True) if r.table == "technicians" else r for r in registry)
    )
    client = await aiohttp_client(app)
    b = await sign_in(client, database_url, secret_key)
    page = await (await b.get(f"{T}/1/")).text()
    assert "Technicians is read-only" in page and 'name="_save"' not in page
    resp = await b.post(f"{T}/new", {"name": "N", "email": "n@x.test"})
    assert resp.status == 403 and "is read-only" in await resp.text()
    resp = await b.post("/admin/customers/new", {"name": "C", "email": "c@x.test", "city": "Oslo"})
    assert resp.status == 303  # other resources stay writable
    assert await one(database_url, "SELECT count(*) FROM technicians") == 1
