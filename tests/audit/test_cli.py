"""AUDIT-4, AUDIT-8, CLI-1: `keel audit tail` and `keel audit verify` as an operator runs them."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from app import audit
from app import audit_events as ev
from app.audit import Context
from tests.helpers import assert_no_traceback, keel, keel_env


@pytest.fixture
def env(database_url: str, secret_key: str) -> dict[str, str]:
    return keel_env(KEEL_DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key)


async def _seed(conn: psycopg.AsyncConnection[Any], ctx: Context) -> list[int]:
    eve = Context(audit_key=ctx.audit_key, actor_id=5, actor_email="eve@example.com")
    return [
        await audit.record(conn, ctx, ev.user_created(5, "eve@example.com", "staff")),
        await audit.record(
            conn, eve, ev.login_failed("eve@example.com", "wrong_password", user_id=5)
        ),
        await audit.record(conn, eve, ev.create("tickets", 1, "#1", {"title": "<b>hi</b>"})),
    ]


async def test_tail_prints_the_latest_events_oldest_first(
    conn: psycopg.AsyncConnection[Any], ctx: Context, env: dict[str, str]
) -> None:
    ids = await _seed(conn, ctx)
    proc = keel("audit", "tail", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and "user_created" in lines[0] and "create" in lines[2]
    assert "[failure]" in lines[1] and "eve@example.com" in lines[1]
    data = json.loads(keel("audit", "tail", "--json", "--limit", "2", env=env).stdout)
    assert [d["id"] for d in data] == ids[1:]
    assert data[0]["request_id"] is None and data[1]["metadata"]["values"]["title"] == "<b>hi</b>"


async def test_tail_filters(
    conn: psycopg.AsyncConnection[Any], ctx: Context, env: dict[str, str]
) -> None:
    await _seed(conn, ctx)

    def events(*args: str) -> list[str]:
        proc = keel("audit", "tail", "--json", *args, env=env)
        assert proc.returncode == 0, proc.stderr
        return [d["event_type"] for d in json.loads(proc.stdout)]

    assert events("--user", "eve@example.com") == ["login_failed", "create"]
    assert events("--resource", "tickets") == ["create"]
    assert events("--event", "login_failed", "--since", "15m") == ["login_failed"]
    assert events("--user", "5", "--resource", "users") == ["login_failed"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--event", "coffee_brewed"], "known event types"),
        (["--since", "15x"], "30s, 15m, 2h or 7d"),
        (["--since", "'; DROP TABLE keel_audit; --"], "--since"),
        (["--limit", "-1"], "1 to 500"),
        (["--limit", "abc"], "1 to 500"),
        (["--limit", "501"], "1 to 500"),
        (["--user", "not-an-email"], "--user"),
        (["--resource", "Tickets; DROP TABLE x"], "--resource"),
    ],
)
def test_bad_tail_values_are_usage_errors(
    env: dict[str, str], args: list[str], needle: str
) -> None:
    proc = keel("audit", "tail", *args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Problem: ") and "Why: " in proc.stderr and "Fix: " in proc.stderr
    assert needle in proc.stderr
    assert_no_traceback(proc)


async def test_verify_passes_then_names_the_tampered_row(
    conn: psycopg.AsyncConnection[Any], ctx: Context, env: dict[str, str]
) -> None:
    ids = await _seed(conn, ctx)
    proc = keel("audit", "verify", env=env)
    assert proc.returncode == 0 and "3 rows" in proc.stdout and f"row {ids[-1]}" in proc.stdout
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute(
        "UPDATE keel_audit SET actor_email = 'mallory@example.com' WHERE id = %s", (ids[1],)
    )
    proc = keel("audit", "verify", env=env)
    assert proc.returncode == 1
    assert f"broken at row {ids[1]} (login_failed" in proc.stdout
    data = json.loads(keel("audit", "verify", "--json", env=env).stdout)
    assert data["ok"] is False and data["broken"]["id"] == ids[1] and data["rows"] == 1


def test_verify_without_a_secret_key_explains_why(database_url: str) -> None:
    proc = keel("audit", "verify", env=keel_env(KEEL_DATABASE_URL=database_url))
    assert proc.returncode == 1 and "Problem: cannot verify the audit chain" in proc.stderr
    assert "Fix: " in proc.stderr
    assert_no_traceback(proc)


def test_audit_without_an_action_shows_help() -> None:
    proc = keel("audit")
    assert proc.returncode == 2 and "tail" in proc.stdout and "verify" in proc.stdout
