"""DB-1..5: embedded migrations, one transaction each, checksums, lock, file:line errors."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from app.db import migrate
from app.db.migrate import LOCK_KEY, Migration, MigrationFailed
from app.db.sqlsplit import split_sql
from app.errors import KeelError
from tests.helpers import assert_no_traceback, keel, keel_env, spawn_keel


async def _conn(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def test_migrate_applies_every_embedded_migration_once(empty_database_url: str) -> None:
    async with await _conn(empty_database_url) as conn:
        applied = await migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrate.discover()]
        assert await migrate.migrate(conn) == []
        rows = await (
            await conn.execute(
                "SELECT version, checksum, applied_by FROM keel_migrations ORDER BY version"
            )
        ).fetchall()
        assert [r[0] for r in rows] == [m.version for m in applied]
        assert all("@" in r[2] for r in rows)
        assert rows[0][1] == applied[0].checksum


async def test_failing_migration_rolls_back_and_names_file_and_line(
    empty_database_url: str,
) -> None:
    bad = Migration(
        "site",
        1,
        "broken",
        "CREATE TABLE good_table (id int);\n\n-- a comment\nINSERT INTO good_table VALUES (1);\nSELECT *\n  FROM no_such_table;\n",
    )
    async with await _conn(empty_database_url) as conn:
        with pytest.raises(MigrationFailed) as info:
            await migrate.migrate(conn, migrations=[bad])
        assert info.value.location == "site/0001_broken.sql:6"
        assert "no_such_table" in info.value.problem
        exists = await (await conn.execute("SELECT to_regclass('good_table')")).fetchone()
        assert exists == (None,), "the statements before the failure must be rolled back too"
        count = await (await conn.execute("SELECT count(*) FROM keel_migrations")).fetchone()
        assert count == (0,)


async def test_runtime_error_without_position_reports_statement_line(
    empty_database_url: str,
) -> None:
    bad = Migration("site", 2, "divide", "SELECT 1;\nSELECT 1/0;\n")
    async with await _conn(empty_database_url) as conn:
        with pytest.raises(MigrationFailed) as info:
            await migrate.migrate(conn, migrations=[bad])
    assert info.value.location == "site/0002_divide.sql:2"


async def test_edited_applied_migration_is_refused(empty_database_url: str) -> None:
    original = Migration("site", 1, "t", "CREATE TABLE t (id int);")
    edited = Migration("site", 1, "t", "CREATE TABLE t (id bigint);")
    async with await _conn(empty_database_url) as conn:
        await migrate.migrate(conn, migrations=[original])
        with pytest.raises(KeelError, match="changed since it ran"):
            await migrate.migrate(
                conn, migrations=[edited, Migration("site", 2, "u", "CREATE TABLE u ();")]
            )
        assert await (await conn.execute("SELECT to_regclass('u')")).fetchone() == (None,)
        states = await migrate.status(conn, [edited])
        assert [s.state for s in states] == ["modified"]


def test_cli_refuses_edited_history_and_doctor_reports_it(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE keel_migrations SET checksum = 'x' WHERE version = 'core:0001'")
    env = keel_env(DATABASE_URL=database_url)
    proc = keel("migrate", env=env)
    assert proc.returncode == 1
    assert "Problem: applied migration changed since it ran: core/0001_instance.sql" in proc.stderr
    assert "Fix:" in proc.stderr
    assert_no_traceback(proc)
    status = keel("migrate", "--status", "--json", env=env)
    assert status.returncode == 1
    assert json.loads(status.stdout)["migrations"][0]["state"] == "modified"
    doctor = keel("doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["migrations"]["status"] == "fail"


def test_cli_status_and_plan(empty_database_url: str) -> None:
    env = keel_env(DATABASE_URL=empty_database_url)
    status = keel("migrate", "--status", env=env)
    assert status.returncode == 0, status.stderr
    assert "pending" in status.stdout and "core/0001_instance.sql" in status.stdout
    plan = keel("migrate", "--plan", env=env)
    assert plan.returncode == 0
    assert "CREATE TABLE keel_instance" in plan.stdout
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('keel_instance')").fetchone() == (None,), (
            "--plan must not run SQL"
        )
    applied = keel("migrate", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "applied" in applied.stdout and "Next: keel user create" in applied.stdout
    after = keel("migrate", "--status", "--json", env=env)
    assert {m["state"] for m in json.loads(after.stdout)["migrations"]} == {"applied"}


def test_two_concurrent_migrate_processes_serialise(empty_database_url: str) -> None:
    """Both wait on the advisory lock; the migrations are applied exactly once."""
    env = keel_env(DATABASE_URL=empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        procs = [spawn_keel("migrate", env=env) for _ in range(2)]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if waiting and waiting[0] == 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("both migrate processes should be waiting on the lock")
        assert all(p.poll() is None for p in procs)
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    outs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert any("waiting" in o[0] for o in outs)
    with psycopg.connect(empty_database_url) as conn:
        n = conn.execute("SELECT count(*) FROM keel_migrations").fetchone()
        assert n == (len(migrate.discover()),)
        assert conn.execute("SELECT count(*) FROM keel_instance").fetchone() == (1,)


def test_unreachable_and_missing_database_errors(pg_server: object) -> None:
    from tests.helpers import free_port

    gone = keel(
        "migrate", env=keel_env(DATABASE_URL=f"postgresql://x:pw@127.0.0.1:{free_port()}/keel")
    )
    assert gone.returncode == 1
    assert "Problem: cannot reach the database at postgresql://x:***@127.0.0.1" in gone.stderr
    assert "Why:" in gone.stderr and "Fix:" in gone.stderr and "Retry:" in gone.stderr
    assert "pw@" not in gone.stderr
    assert_no_traceback(gone)
    url = pg_server.url("no_such_db")  # type: ignore[attr-defined]
    missing = keel("migrate", env=keel_env(DATABASE_URL=url))
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "createdb" in missing.stderr
    assert_no_traceback(missing)
    unset = keel("migrate", env=keel_env())
    assert unset.returncode == 2 and "database_url" in unset.stderr


@pytest.mark.parametrize(
    ("script", "lines"),
    [
        ("SELECT 1; SELECT 2;", [1, 1]),
        ("-- lead\n\nCREATE TABLE a (x text DEFAULT 'a;b');\n", [3]),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT 2;",
            [1, 2],
        ),
        ('SELECT "semi;colon" FROM t;\n/* block ; /* nested ; */ */\nSELECT 3', [1, 3]),
        ("SELECT 'it''s; fine';", [1]),
        ("  \n-- only comments ;\n", []),
    ],
)
def test_sql_splitter(script: str, lines: list[int]) -> None:
    assert [s.line for s in split_sql(script)] == lines
