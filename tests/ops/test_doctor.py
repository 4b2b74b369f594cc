"""OPS-5: `keel doctor` reports ✓/!/✗ per check, --json, non-zero exit on ✗."""

from __future__ import annotations

import json

import psycopg

from tests.helpers import assert_no_traceback, free_port, keel, keel_env


def test_doctor_healthy_installation(database_url: str, secret_key: str, tmp_path: object) -> None:
    env = keel_env(
        DATABASE_URL=database_url,
        KEEL_SECRET_KEY=secret_key,
        KEEL_PUBLIC_URL="https://ops.example.com",
        SHIV_ROOT=str(tmp_path),
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO keel_users (email, role) VALUES ('root@example.com', 'administrator')"
        )
    proc = keel("doctor", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✓ database: reachable, PostgreSQL" in proc.stdout
    assert "✓ clock: agrees with the database" in proc.stdout
    assert "✓ administrators: 1 active administrator(s)" in proc.stdout
    assert "✓ declarations:" in proc.stdout and "resources match the catalog" in proc.stdout
    assert "✓ audit chain:" in proc.stdout
    assert "✓ migrations:" in proc.stdout and "✓ secret key" in proc.stdout
    assert "✗" not in proc.stdout
    data = json.loads(keel("doctor", "--json", env=env).stdout)
    assert data["ok"] is True
    assert {c["name"] for c in data["checks"]} >= {
        "configuration",
        "secret key",
        "database",
        "migrations",
        "public url",
        "extraction directory",
        "clock",
        "administrators",
        "declarations",
        "audit chain",
        "mail queue",
    }


def test_doctor_fails_on_missing_key_and_pending_migrations(empty_database_url: str) -> None:
    env = keel_env(DATABASE_URL=empty_database_url)
    proc = keel("doctor", env=env)
    assert proc.returncode == 1
    assert "✗ secret key: secret_key is not set" in proc.stdout
    assert "✗ migrations:" in proc.stdout and "pending" in proc.stdout
    assert "! public url" in proc.stdout


def test_doctor_unreachable_database_and_short_key() -> None:
    env = keel_env(
        DATABASE_URL=f"postgresql://u:topsecret@127.0.0.1:{free_port()}/x",
        KEEL_SECRET_KEY="c2hvcnQ",
    )
    proc = keel("doctor", "--json", env=env)
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["database"]["status"] == "fail" and "cannot reach" in checks["database"]["detail"]
    assert checks["secret key"]["status"] == "fail" and "bytes" in checks["secret key"]["detail"]
    assert "topsecret" not in proc.stdout
    assert_no_traceback(proc)


def test_doctor_bad_config_value_is_a_failed_check_not_a_crash() -> None:
    proc = keel("doctor", env=keel_env(KEEL_POOL_MAX="many"))
    assert proc.returncode == 1 and "✗ configuration" in proc.stdout and "pool_max" in proc.stdout
    assert_no_traceback(proc)


def test_doctor_settings_are_shown_redacted_with_sources(
    database_url: str, secret_key: str
) -> None:
    url = database_url.replace("postgres@", "postgres:pw123@")
    env = keel_env(DATABASE_URL=url, KEEL_SECRET_KEY=secret_key)
    proc = keel("doctor", "--settings", env=env)
    assert "secret_key = '***'  (env KEEL_SECRET_KEY)" in proc.stdout
    assert "postgres:***@" in proc.stdout
    assert secret_key not in proc.stdout and "pw123" not in proc.stdout


def test_doctor_names_a_missing_administrator_and_a_broken_declaration(
    database_url: str, secret_key: str, tmp_path: object
) -> None:
    """OPS-5: no active administrator and a declared column missing from the catalog are ✗,
    each with the fix; a deactivated administrator does not count."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO keel_users (email, role, is_active) VALUES ('gone@example.com', 'administrator', false)"
        )
        conn.execute("ALTER TABLE bookings DROP COLUMN notes")
    env = keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, SHIV_ROOT=str(tmp_path))
    proc = keel("doctor", env=env)
    assert proc.returncode == 1
    assert "✗ administrators: no active administrator" in proc.stdout
    assert "keel user create --email E --role administrator" in proc.stdout
    assert "✗ declarations: bookings:" in proc.stdout and "'notes'" in proc.stdout
    assert_no_traceback(proc)
