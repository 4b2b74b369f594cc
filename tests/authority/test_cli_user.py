"""CLI-1..5, R4-1, AUTHZ-3, AUTHZ-6: `keel user …` as a real process against a real database."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg
import pytest

from app.authority.passwords import Hasher
from tests.authority.conftest import make_user
from tests.helpers import assert_no_traceback, keel, keel_env

PASSWORD = "violet tractor under rain"


@pytest.fixture
def env(database_url: str, secret_key: str) -> dict[str, str]:
    return keel_env(
        DATABASE_URL=database_url,
        KEEL_SECRET_KEY=secret_key,
        KEEL_PUBLIC_URL="https://ops.example.com",
        NO_COLOR="1",
    )


def run(
    env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = keel(*args, env=env, input=input)
    assert_no_traceback(proc)
    return proc


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def audit(url: str) -> list[tuple[str, dict[str, Any], str]]:
    return [(t, m, o) for t, m, o in query(url, "SELECT event_type, metadata, os_actor FROM keel_audit ORDER BY id")]  # fmt: skip


def assert_problem(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("Problem: ") and words in proc.stderr, proc.stderr
    assert "Fix: " in proc.stderr or "Configuration error" in proc.stderr


async def test_create_reads_the_password_from_stdin_and_audits_the_os_actor(
    env: dict[str, str], database_url: str
) -> None:
    proc = run(env, "user", "create", "--email", "Ops@Example.com", "--role", "administrator",
               "--name", "Ops Lead", "--password-stdin", input=PASSWORD + "\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "created ops@example.com (role administrator)" in proc.stdout
    assert "Next: sign in at https://ops.example.com/login" in proc.stdout  # CLI-4
    [(stored,)] = query(database_url, "SELECT password_hash FROM keel_users")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    h = Hasher(max_in_flight=1)
    try:
        assert (await h.verify(stored, PASSWORD))[0]
    finally:
        h.close()
    created = [(m, o) for t, m, o in audit(database_url) if t == "user_created"]
    [(meta, os_actor)] = created
    assert "@" in os_actor and meta["via"] == "cli"  # CLI-5
    assert meta["argv"][:3] == ["keel", "user", "create"] and PASSWORD not in json.dumps(meta)


def test_role_editor_means_staff_plus_the_editor_group(
    env: dict[str, str], database_url: str
) -> None:
    proc = run(
        env, "user", "create", "--email", "ed@example.com", "--role", "editor", "--no-password"
    )
    assert proc.returncode == 0, proc.stderr
    assert "role staff, groups editor" in proc.stdout
    shown = json.loads(run(env, "user", "show", "--email", "ed@example.com", "--json").stdout)
    assert shown["role"] == "staff" and shown["groups"] == ["editor"]
    assert shown["permissions"]["bookings.change"] == ["via editor"]
    assert not shown["has_password"]
    assert "password_hash" not in shown


@pytest.mark.parametrize(
    ("args", "stdin", "code", "words"),
    [
        (["--email", "a@example.com"], None, 2, "no password given"),
        (["--email", "a@example.com", "--password-stdin"], "short\n", 2, "Too short"),
        (["--email", "a@example.com", "--password-stdin"], "\n", 2, "no password on standard input"),
        (["--email", "a@example.com", "--password-stdin"], "password1234\n", 2, "commonly used"),
        (["--email", "a@example.com", "--password-stdin"], "é" * 5_000_000 + "\n", 2, "Too long"),
        (["--email", "not-an-email", "--no-password"], None, 2, "is not an email address"),
        (["--email", "<script>@x.com", "--no-password"], None, 2, "is not an email address"),
        (["--email", "a@example.com", "--role", "root", "--no-password"], None, 2, "invalid choice"),
        (["--email", "a@example.com", "--group", "ghosts", "--no-password"], None, 1, "no group 'ghosts'"),
        (["--email", "a@example.com", "--name", "x" * 300, "--no-password"], None, 2, "too long"),
        (["--email", "a@example.com", "--password", "hunter2hunter2"], None, 2, "unrecognized arguments"),
    ],
)  # fmt: skip
def test_bad_create_arguments_explain_themselves_and_change_nothing(
    env: dict[str, str],
    database_url: str,
    args: list[str],
    stdin: str | None,
    code: int,
    words: str,
) -> None:
    """CLI-1: Problem/Why/Fix, exit 1 or 2, never a traceback; passwords never from argv."""
    proc = run(env, "user", "create", *args, input=stdin)
    assert_problem(proc, code, words)
    assert query(database_url, "SELECT count(*) FROM keel_users") == [(0,)]


def test_duplicate_email_is_a_conflict(env: dict[str, str]) -> None:
    assert run(env, "user", "create", "--email", "d@example.com", "--no-password").returncode == 0
    assert_problem(
        run(env, "user", "create", "--email", "D@EXAMPLE.COM", "--no-password"), 1, "already exists"
    )


async def test_list_json_and_filters(env: dict[str, str], database_url: str) -> None:
    await make_user(database_url, role="administrator", email="a@example.com")
    await make_user(database_url, role="staff", email="s@example.com", active=False)
    rows = json.loads(run(env, "user", "list", "--json").stdout)
    assert [(r["email"], r["role"], r["is_active"]) for r in rows] == [
        ("a@example.com", "administrator", True), ("s@example.com", "staff", False),
    ]  # fmt: skip
    assert "password_hash" not in rows[0]
    text = run(env, "user", "list", "--inactive").stdout
    assert "s@example.com" in text and "a@example.com" not in text


async def test_orphan_guard_through_the_cli(env: dict[str, str], database_url: str) -> None:
    """AUTHZ-3: the operator may not leave zero active administrators either."""
    await make_user(database_url, role="administrator", email="only@example.com")
    for args in (
        ["set-role", "--email", "only@example.com", "--role", "staff"],
        ["deactivate", "--email", "only@example.com"],
        ["delete", "--email", "only@example.com", "--yes"],
    ):
        proc = run(env, "user", *args)
        assert_problem(proc, 1, "only@example.com is the last active administrator")
    assert query(database_url, "SELECT role, is_active FROM keel_users") == [
        ("administrator", True)
    ]
    assert audit(database_url) == []


async def test_set_role_deactivate_activate_and_delete(
    env: dict[str, str], database_url: str
) -> None:
    await make_user(database_url, role="administrator")
    await make_user(database_url, role="staff", email="s@example.com")
    proc = run(env, "user", "set-role", "--email", "s@example.com", "--role", "viewer")
    assert proc.returncode == 0 and "in group viewer" in proc.stdout
    assert run(env, "user", "deactivate", "--email", "s@example.com").returncode == 0
    assert query(
        database_url, "SELECT is_active FROM keel_users WHERE email = 's@example.com'"
    ) == [(False,)]
    assert (
        "Next: keel user activate"
        in run(env, "user", "deactivate", "--email", "s@example.com").stdout
    )
    assert run(env, "user", "activate", "--email", "s@example.com").returncode == 0
    # Deleting without a terminal and without --yes is refused (exit 2) and changes nothing.
    assert_problem(run(env, "user", "delete", "--email", "s@example.com"), 2, "no terminal")
    assert run(env, "user", "delete", "--email", "s@example.com", "--yes").returncode == 0
    assert query(database_url, "SELECT count(*) FROM keel_users WHERE email = 's@example.com'") == [
        (0,)
    ]
    assert_problem(
        run(env, "user", "activate", "--email", "ghost@example.com"), 1, "no user has the email"
    )


async def test_set_password_ends_sessions(env: dict[str, str], database_url: str) -> None:
    user_id, _ = await make_user(database_url, role="staff", email="s@example.com")
    proc = run(env, "user", "set-password", "--email", "s@example.com", "--password-stdin",
               "--temporary", input="brand new passphrase\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert query(
        database_url, "SELECT must_change_password FROM keel_users WHERE id = %s", (user_id,)
    ) == [(True,)]
    assert [t for t, _m, _o in audit(database_url)] == ["password_reset_by_other"]


def test_missing_secret_key_is_one_line_exit_2(database_url: str) -> None:
    env = keel_env(DATABASE_URL=database_url)
    proc = run(env, "user", "create", "--email", "x@example.com", "--no-password")
    assert proc.returncode == 2 and proc.stderr.startswith(
        "Configuration error: setting 'secret_key'"
    )


async def test_sessions_list_and_revoke(env: dict[str, str], database_url: str) -> None:
    from app.authority import sessions

    user_id, _ = await make_user(database_url, role="staff", email="s@example.com")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await sessions.create(conn, user_id=user_id, absolute=3600, ip="198.51.100.4")
    rows = json.loads(run(env, "user", "sessions", "--email", "s@example.com", "--json").stdout)
    assert len(rows) == 1 and rows[0]["ip"] == "198.51.100.4"
    proc = run(
        env, "user", "revoke-sessions", "--email", "s@example.com", "--reason", "lost laptop"
    )
    assert proc.returncode == 0 and "ended 1 session(s)" in proc.stdout
    assert (
        json.loads(run(env, "user", "sessions", "--email", "s@example.com", "--json").stdout) == []
    )
    assert query(database_url, "SELECT revoked_reason FROM keel_sessions") == [
        ("administrative_revoke",)
    ]


def test_every_user_subcommand_has_help() -> None:
    for name in ("create", "list", "show", "set-role", "activate", "deactivate", "delete",
                 "set-password", "reset-password", "unlock", "disable-mfa", "promote",
                 "emergency-access", "sessions", "revoke-sessions"):  # fmt: skip
        proc = keel("user", name, "--help")
        assert proc.returncode == 0 and f"usage: keel user {name}" in proc.stdout


def test_secret_flag_values_never_reach_the_recorded_argv() -> None:
    from app.cli.actor import scrub_argv

    assert scrub_argv(
        ["user", "x", "--password", "p4ss", "--token=abc", "postgres://u:pw@h/db", "--reason", "ok"]
    ) == (
        "user",
        "x",
        "--password",
        "***",
        "--token=***",
        "postgres://u:***@h/db",
        "--reason",
        "ok",
    )


async def test_the_operator_is_not_ranked_but_the_orphan_guard_holds(
    env: dict[str, str], database_url: str
) -> None:
    """AUTHZ-3 at the command line: guards 1–3 compare two accounts and do not apply to the
    machine's operator, who may change a developer; guard 4 still does (see above)."""
    await make_user(database_url, role="developer", email="d1@example.com")
    await make_user(database_url, role="developer", email="d2@example.com")
    proc = run(env, "user", "set-role", "--email", "d2@example.com", "--role", "staff")
    assert proc.returncode == 0 and "developer → staff" in proc.stdout
    assert_problem(
        run(env, "user", "set-role", "--email", "d1@example.com", "--role", "staff"),
        1,
        "last active developer",
    )
