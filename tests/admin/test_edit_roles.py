"""The role matrix of the editing routes (AUTHZ-2, AUTHZ-4, AUTHZ-8).

`user` never enters the admin; staff and supervisors need `<slug>.<action>`; administrators
and developers bypass per-resource permissions. A refusal is a 403 naming what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.test_edit_support import Browser, execute, sign_in

T = "/admin/technicians"
# (method, path, form, permission needed); destructive ones last.
ROUTES: list[tuple[str, str, dict[str, str] | None, str]] = [
    ("GET", f"{T}/new", None, "technicians.add"),
    ("POST", f"{T}/new", {"name": "N", "email": "n@x.test"}, "technicians.add"),
    ("GET", f"{T}/1/", None, "technicians.view"),
    ("POST", f"{T}/1/", {"name": "M"}, "technicians.change"),
    ("GET", f"{T}/1/history", None, "technicians.view"),
    ("GET", f"{T}/lookup?q=a", None, "technicians.view"),
    ("GET", f"{T}/1/delete", None, "technicians.delete"),
    ("GET", f"{T}/bulk/delete?ids=1", None, "technicians.delete"),
    ("POST", f"{T}/bulk/deactivate", {"ids": "1"}, "technicians.deactivate"),
    ("POST", f"{T}/1/delete", {}, "technicians.delete"),
]
PERMS = sorted({r[3] for r in ROUTES})


async def status_of(
    b: Browser, method: str, path: str, form: dict[str, str] | None
) -> tuple[int, str]:
    resp = await (b.get(path) if method == "GET" else b.post(path, form or {}))
    return resp.status, await resp.text()


async def check(b: Browser, allowed: set[str]) -> None:
    for method, path, form, perm in ROUTES:
        status, body = await status_of(b, method, path, form)
        if perm in allowed:
            assert status != 403, (method, path, body[:300])
        else:
            assert status == 403, (method, path, status)


@pytest.fixture(autouse=True)
async def row(database_url: str) -> None:
    await execute(
        database_url, "INSERT INTO technicians (id, name, email) VALUES (1, 'T', 't@x.test')"
    )


@pytest.mark.parametrize("role", ["administrator", "developer"])
async def test_administrators_and_developers_bypass_permissions(
    client: Any, database_url: str, secret_key: str, role: str
) -> None:
    await check(await sign_in(client, database_url, secret_key, role=role), set(PERMS))


@pytest.mark.parametrize("role", ["staff", "supervisor"])
async def test_staff_without_permissions_is_refused_with_the_name(
    client: Any, database_url: str, secret_key: str, role: str
) -> None:
    b = await sign_in(client, database_url, secret_key, role=role)
    await check(b, set())
    status, body = await status_of(b, "GET", f"{T}/1/", None)
    assert status == 403 and "technicians.view" in body  # AUTHZ-8: names the permission


@pytest.mark.parametrize("perm", PERMS)
async def test_staff_with_one_permission_gets_exactly_that(
    client: Any, database_url: str, secret_key: str, perm: str
) -> None:
    await check(
        await sign_in(client, database_url, secret_key, role="staff", perms=(perm,)), {perm}
    )


async def test_supervisor_with_all_permissions(
    client: Any, database_url: str, secret_key: str
) -> None:
    b = await sign_in(client, database_url, secret_key, role="supervisor", perms=tuple(PERMS))
    await check(b, set(PERMS))


async def test_user_role_never_enters_the_admin(
    client: Any, database_url: str, secret_key: str
) -> None:
    await check(await sign_in(client, database_url, secret_key, role="user"), set())
