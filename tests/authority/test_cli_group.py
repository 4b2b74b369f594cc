"""CLI-1..5, AUTHZ-4: `keel group …` and `keel perm …` as real processes."""

from __future__ import annotations

import json

import pytest

from tests.authority.conftest import make_user
from tests.authority.test_cli_user import assert_problem, audit, run
from tests.helpers import keel_env


@pytest.fixture
def env(database_url: str, secret_key: str) -> dict[str, str]:
    return keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")


async def test_a_group_from_creation_to_deletion(env: dict[str, str], database_url: str) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    steps = [
        ("group", "create", "Desk", "--description", "Front desk", "--grant", "bookings.view"),
        ("group", "grant", "desk", "bookings.change", "bookings.confirm"),
        ("group", "add-user", "Desk", "--email", "S@example.com"),
    ]
    for args in steps:
        proc = run(env, *args)
        assert proc.returncode == 0 and "Next: " in proc.stdout, (args, proc.stderr)  # CLI-4
    shown = json.loads(run(env, "group", "show", "desk", "--json").stdout)
    assert shown["permissions"] == ["bookings.change", "bookings.confirm", "bookings.view"]
    assert [m["email"] for m in shown["members"]] == ["s@example.com"]
    listed = json.loads(run(env, "group", "list", "--json").stdout)
    assert [(g["name"], g["members"], g["permissions"]) for g in listed] == [("Desk", 1, 3)]
    effective = json.loads(run(env, "perm", "list", "--email", "s@example.com", "--json").stdout)
    assert effective["permissions"]["bookings.view"] == ["via Desk"]
    for args in (
        ("group", "revoke", "Desk", "bookings.confirm"),
        ("group", "remove-user", "Desk", "--email", "s@example.com"),
        ("group", "delete", "Desk"),
    ):
        assert run(env, *args).returncode == 0, args
    assert run(env, "group", "list", "--json").stdout.strip() == "[]"
    assert [t for t, _m, _o in audit(database_url)] == [
        "group_created", "permission_granted", "permission_granted", "group_updated",
        "permission_revoked", "group_updated", "group_deleted",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("group", "grant", "ghosts", "bookings.view"), 1, "there is no group 'ghosts'"),
        (("group", "create", "x;y"), 2, "not a usable group name"),
        (("group", "create", "ok", "--grant", "bookings.fly"), 2, "unknown permission bookings.fly"),
        (("perm", "grant", "--email", "s@example.com", "DROP TABLE"), 2, "not a permission name"),
        (("perm", "grant", "--email", "ghost@example.com", "bookings.view"), 1, "no user has the email"),
        (("group", "add-user", "ghosts", "--email", "s@example.com"), 1, "no group"),
    ],
)  # fmt: skip
async def test_bad_group_and_permission_arguments(
    env: dict[str, str], database_url: str, args: tuple[str, ...], code: int, words: str
) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    assert_problem(run(env, *args), code, words)
    assert audit(database_url) == []


async def test_perm_list_grant_and_revoke_direct(env: dict[str, str], database_url: str) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    declared = json.loads(run(env, "perm", "list", "--json").stdout)
    assert {"name": "bookings.view", "description": "View bookings"} in declared
    assert run(env, "perm", "grant", "--email", "s@example.com", "customers.view").returncode == 0
    text = run(env, "perm", "list", "--email", "s@example.com").stdout
    assert "customers.view" in text and "direct" in text
    proc = run(env, "perm", "revoke", "--email", "s@example.com", "customers.view")
    assert proc.returncode == 0 and "revoked customers.view" in proc.stdout
    assert [t for t, _m, _o in audit(database_url)] == ["permission_granted", "permission_revoked"]


async def test_administrators_are_shown_as_bypassing(
    env: dict[str, str], database_url: str
) -> None:
    await make_user(database_url, role="administrator", email="a@example.com")
    proc = run(env, "perm", "list", "--email", "a@example.com")
    assert "every permission check passes" in proc.stdout
