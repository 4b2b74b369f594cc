"""R4-1: break-glass recovery from the command line — banner, confirmation, atomic, one event."""

from __future__ import annotations

import hashlib
import os
import pty
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from app.authority.passwords import Hasher
from tests.authority.conftest import make_user
from tests.authority.test_cli_user import assert_problem, audit, query, run
from tests.helpers import REPO, keel_env

REASON = "locked out after phone loss"


@pytest.fixture
def env(database_url: str, secret_key: str) -> dict[str, str]:
    return keel_env(
        DATABASE_URL=database_url,
        KEEL_SECRET_KEY=secret_key,
        KEEL_PUBLIC_URL="https://ops.example.com",
        NO_COLOR="1",
    )


def emergency_events(url: str) -> list[dict[str, Any]]:
    return [m for t, m, _o in audit(url) if t == "emergency_recovery"]


@pytest.mark.parametrize(
    "operation", ["reset-password", "unlock", "disable-mfa", "promote", "emergency-access"]
)
async def test_without_a_terminal_and_without_yes_nothing_happens(
    env: dict[str, str], database_url: str, operation: str
) -> None:
    """R4-1: no TTY and no --yes → exit 2, and the database is untouched."""
    await make_user(database_url, role="staff", email="s@example.com")
    before = query(database_url, "SELECT * FROM keel_users")
    proc = run(env, "user", operation, "--email", "s@example.com", "--reason", REASON)
    assert_problem(proc, 2, "no terminal to confirm on and --yes was not given")
    assert "BREAK-GLASS: " + operation in proc.stdout  # the banner came first
    assert query(database_url, "SELECT * FROM keel_users") == before
    assert audit(database_url) == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--email", "s@example.com", "--reason", "short"], 2, "at least 8 characters"),
        (["--email", "s@example.com", "--reason", "        "], 2, "at least 8 characters"),
        (["--email", "s@example.com", "--reason", "bad\x07reason here"], 2, "printable"),
        (["--email", "ghost@example.com", "--reason", REASON], 1, "no user has the email"),
        (["--email", "s@example.com"], 2, "--reason"),
    ],
)
async def test_bad_arguments_are_refused_before_the_banner(
    env: dict[str, str], database_url: str, args: list[str], code: int, words: str
) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    proc = run(env, "user", "unlock", "--yes", *args)
    assert_problem(proc, code, words)
    assert "BREAK-GLASS" not in proc.stdout and audit(database_url) == []


async def test_reset_password_prints_a_one_time_password_once(
    env: dict[str, str], database_url: str
) -> None:
    from app.authority import sessions

    user_id, _ = await make_user(database_url, role="administrator", email="boss@example.com")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await sessions.create(conn, user_id=user_id, absolute=3600)
        await conn.execute(
            "UPDATE keel_users SET locked_until = now() + interval '1 hour' WHERE id = %s",
            (user_id,),
        )
    proc = run(env, "user", "reset-password", "--email", "boss@example.com", "--reason", REASON,
               "--yes")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for words in ("target:   boss@example.com", f"reason:   {REASON}", "operator: ", " UTC"):
        assert words in proc.stdout
    password = proc.stdout.strip().splitlines()[-1]
    [(stored, must_change, locked)] = query(
        database_url, "SELECT password_hash, must_change_password, locked_until FROM keel_users"
    )
    h = Hasher(max_in_flight=1)
    try:
        assert (await h.verify(stored, password))[0]
    finally:
        h.close()
    assert must_change and locked is None
    assert query(database_url, "SELECT revoked_reason FROM keel_sessions") == [
        ("emergency_recovery",)
    ]
    [event] = emergency_events(database_url)
    assert event["operation"] == "reset-password" and event["reason"] == REASON
    assert "--yes" in event["argv"] and password not in str(audit(database_url))
    [(os_actor,)] = query(
        database_url, "SELECT os_actor FROM keel_audit WHERE event_type = 'emergency_recovery'"
    )
    assert "@" in os_actor


async def test_unlock_disable_mfa_and_promote_write_one_event_each(
    env: dict[str, str], database_url: str
) -> None:
    user_id, _ = await make_user(database_url, role="staff", email="s@example.com", active=False)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE keel_users SET locked_until = now() + interval '1 day', failed_login_count = 5,"
            " mfa_secret_enc = '\\x00ff', mfa_enabled_at = now() WHERE id = %s",
            (user_id,),
        )
    for op in ("unlock", "disable-mfa", "promote"):
        proc = run(env, "user", op, "--email", "s@example.com", "--reason", REASON, "--yes")
        assert proc.returncode == 0, proc.stderr
    [row] = query(
        database_url,
        "SELECT locked_until, failed_login_count, mfa_secret_enc, mfa_enabled_at, role, is_active"
        " FROM keel_users",
    )
    assert row == (None, 0, None, None, "administrator", True)
    assert [e["operation"] for e in emergency_events(database_url)] == [
        "unlock", "disable-mfa", "promote",
    ]  # fmt: skip


async def test_promote_respects_the_orphan_guard(env: dict[str, str], database_url: str) -> None:
    """R4-1: promoting the last developer to administrator would leave no developer."""
    await make_user(database_url, role="developer", email="dev@example.com")
    proc = run(env, "user", "promote", "--email", "dev@example.com", "--reason", REASON, "--yes")
    assert_problem(proc, 1, "dev@example.com is the last active developer")
    assert query(database_url, "SELECT role FROM keel_users") == [("developer",)]
    assert emergency_events(database_url) == []  # atomic: no event for a refused change


async def test_emergency_access_prints_a_single_use_link_from_public_url(
    env: dict[str, str], database_url: str
) -> None:
    await make_user(database_url, role="administrator", email="boss@example.com")
    proc = run(env, "user", "emergency-access", "--email", "boss@example.com", "--reason", REASON,
               "--minutes", "5", "--yes")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    link = proc.stdout.strip().splitlines()[-1]
    assert link.startswith("https://ops.example.com/reset/")
    token = link.rsplit("/", 1)[1]
    [(token_hash, kind, minutes)] = query(
        database_url,
        "SELECT token_hash, kind, round(extract(epoch FROM expires_at - created_at) / 60)"
        " FROM keel_recovery_tokens",
    )
    assert bytes(token_hash) == hashlib.sha256(token.encode()).digest()  # INV-1
    assert kind == "emergency" and minutes == 5
    [event] = emergency_events(database_url)
    assert event["valid_minutes"] == 5 and token not in str(event)


@pytest.mark.parametrize("minutes", ["0", "61", "-5", "many"])
async def test_emergency_link_lifetime_is_1_to_60_minutes(
    env: dict[str, str], database_url: str, minutes: str
) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    proc = run(env, "user", "emergency-access", "--email", "s@example.com", "--reason", REASON,
               "--minutes", minutes, "--yes")  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("Problem: ")
    assert query(database_url, "SELECT count(*) FROM keel_recovery_tokens") == [(0,)]


async def test_emergency_access_needs_public_url(env: dict[str, str], database_url: str) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    env = {k: v for k, v in env.items() if k != "KEEL_PUBLIC_URL"}
    proc = run(env, "user", "emergency-access", "--email", "s@example.com", "--reason", REASON,
               "--yes")  # fmt: skip
    assert_problem(proc, 1, "public_url is not set")
    assert audit(database_url) == []


def _on_a_terminal(env: dict[str, str], args: list[str], answer: str) -> tuple[int, str]:
    """Run keel with a real pseudo-terminal as stdin and type `answer` at the prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args], stdin=follower, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=REPO, text=True,
    )  # fmt: skip
    os.close(follower)
    time.sleep(0.2)
    os.write(leader, answer.encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    os.close(leader)
    return proc.returncode, out + err


@pytest.mark.parametrize(("answer", "code"), [("yes", 0), ("no", 2), ("YES please", 2)])
async def test_a_person_at_a_terminal_must_type_yes(
    env: dict[str, str], database_url: str, answer: str, code: int
) -> None:
    await make_user(database_url, role="staff", email="s@example.com")
    rc, output = _on_a_terminal(
        env, ["user", "unlock", "--email", "s@example.com", "--reason", REASON], answer
    )
    assert rc == code, output
    assert "Type yes to go on:" in output and "Traceback" not in output
    assert len(emergency_events(database_url)) == (1 if code == 0 else 0)
