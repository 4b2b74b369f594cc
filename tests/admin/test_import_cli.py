"""`keel import RESOURCE FILE`: the preview report, --apply all or nothing, --apply-valid (EDIT-10).

The command runs as a real process against the test database."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import assert_no_traceback, keel, keel_env


def _env(database_url: str, secret_key: str) -> dict[str, str]:
    return keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")


async def test_preview_writes_nothing_then_apply_valid_writes_and_audits(
    seeded, database_url, secret_key, tmp_path: Path
):
    f = tmp_path / "people.csv"
    f.write_text(
        "Email;Name;City\n"
        "person3@example.org;Three Renamed;Oslo\n"
        "broken;Bad;Lyon\n"
        "fresh@example.org;Fresh;Graz\n"
    )
    env = _env(database_url, secret_key)
    proc = keel("import", "customers", str(f), env=env)
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert "'Email' → email" in proc.stdout and "match existing records by: email" in proc.stdout
    assert "3 rows: 2 valid, 1 with errors" in proc.stdout
    assert "row 3: email: Enter an email address" in proc.stdout
    cur = await seeded.execute("SELECT count(*) FROM customers")
    assert (await cur.fetchone())[0] == 40

    proc = keel("import", "customers", str(f), "--apply", env=env)
    assert proc.returncode == 2 and "Nothing was imported" in proc.stderr
    cur = await seeded.execute("SELECT count(*) FROM customers")
    assert (await cur.fetchone())[0] == 40

    proc = keel("import", "customers", str(f), "--apply-valid", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 added, 1 updated, 0 unchanged, 1 skipped" in proc.stdout + proc.stderr
    cur = await seeded.execute("SELECT name FROM customers WHERE email = 'person3@example.org'")
    assert (await cur.fetchone())[0] == "Three Renamed"
    cur = await seeded.execute(
        "SELECT os_actor, metadata FROM keel_audit WHERE event_type = 'import_applied'"
    )
    [(actor, meta)] = await cur.fetchall()
    assert actor and (meta["inserted"], meta["updated"], meta["skipped"]) == (1, 1, 1)


async def test_key_and_map_options(seeded, database_url, secret_key, tmp_path: Path):
    f = tmp_path / "t.csv"
    f.write_text("who,mail,town\nNew Person,np@example.org,Oslo\n")
    env = _env(database_url, secret_key)
    proc = keel("import", "customers", str(f), "--key", "city", env=env)
    assert proc.returncode == 2 and "cannot be matched by 'city'" in proc.stderr
    proc = keel("import", "customers", str(f), "--map", "who=name", "--map", "mail=email",
                "--map", "town=city", "--key", "none", "--apply", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cur = await seeded.execute("SELECT name FROM customers WHERE email = 'np@example.org'")
    assert (await cur.fetchone())[0] == "New Person"
    proc = keel("import", "nothing", str(f), env=env)
    assert proc.returncode == 1 and "no resource called 'nothing'" in proc.stderr
