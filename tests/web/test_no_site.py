"""Plain Keel (no site): the admin says that no tables are declared and how to add them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from app import sites
from tests.web.conftest import SignedIn


@pytest.fixture
def no_site() -> Iterator[None]:
    previous = sites.active()
    sites.activate(None)
    yield
    sites.activate(previous)


async def test_dashboard_without_a_site_says_how_to_add_tables(
    no_site: None, signed_in: Callable[..., Awaitable[SignedIn]]
) -> None:
    admin = await signed_in("administrator")
    page = await admin.get("/admin/")
    assert page.status == 200
    html = await page.text()
    assert "No tables declared yet" in html and "keel new DIR" in html
    assert "keel docs your-tables" in html
    assert "You have no access to any resource" not in html
    # Keel's own pages stay: users, groups and the audit log.
    for path in ("/admin/users/", "/admin/groups/", "/admin/audit/"):
        assert (await admin.get(path)).status == 200, path
    # A demo table's URL is simply not a resource here.
    assert (await admin.get("/admin/customers/")).status == 404
