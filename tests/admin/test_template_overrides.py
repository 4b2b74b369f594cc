"""UI-4: a `template_dir` overrides one page, or one resource's page, without rebuilding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestClient

from app.config import Config
from tests.helpers import cheap_app
from tests.web.conftest import sign_in


async def test_per_page_and_per_resource_overrides(
    config: Config, tmp_path: Path, aiohttp_client, make_user, seeded
) -> None:
    (tmp_path / "admin" / "bookings").mkdir(parents=True)
    # Per resource: only the bookings list changes; it extends the built-in page.
    (tmp_path / "admin" / "bookings" / "list.html").write_text(
        '{% extends "admin/list.html" %}'
        '{% block actions %}<p class="acme-note">Call dispatch before cancelling.</p>'
        "{{ super() }}{% endblock %}"
    )
    # Per page: the dashboard of every user.
    (tmp_path / "admin" / "dashboard.html").write_text(
        '{% extends "base.html" %}{% block title %}Acme desk{% endblock %}'
        "{% block content %}<p>Welcome to the Acme desk.</p>{% endblock %}"
    )
    client: TestClient = await aiohttp_client(
        cheap_app(replace(config, template_dir=str(tmp_path)))
    )
    user, password = await make_user("administrator")
    assert (await sign_in(client, user.email, password)).status == 303

    bookings = await (await client.get("/admin/bookings/")).text()
    assert "Call dispatch before cancelling." in bookings
    assert "Customer " in bookings, "the overridden page still lists the rows (it extends)"
    customers = await (await client.get("/admin/customers/")).text()
    assert "Call dispatch" not in customers, "a resource override touches only that resource"
    dashboard = await client.get("/admin/")
    assert dashboard.status == 200 and "Welcome to the Acme desk." in await dashboard.text()


async def test_without_template_dir_the_built_in_pages_are_used(client, make_user, seeded) -> None:
    user, password = await make_user("administrator")
    assert (await sign_in(client, user.email, password)).status == 303
    page = await (await client.get("/admin/bookings/")).text()
    assert "Call dispatch" not in page and "Customer " in page
