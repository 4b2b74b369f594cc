"""`keel startapp` adds a table to a site project: declaration, migration, REGISTRY line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg
import pytest

from app.admin.resources import register, validate
from app.admin.setup import load_tables
from app.cli import main
from tests.helpers import assert_no_traceback, keel

FIELDS = [
    "--field", "select:str",  # an SQL keyword as a column name
    "--field", "user_id:fk:technicians",
    "--field", "status:choice:open,in progress,closed",
    "--field", "total:decimal",
    "--field", "notes:text?",
    "--field", "paid:bool",
    "--field", "due:date",
    "--field", "at:datetime?",
    "--field", "starts:time?",
    "--field", "ref:uuid?",
    "--field", "contact:email",
    "--field", "phone:phone?",
    "--field", "extra:json",
    "--field", "count:int",
    "--field", "big:bigint?",
]  # fmt: skip


def site_dir(tmp_path: Path) -> Path:
    """A project as `keel new` writes it, with one migration already there."""
    from app.scaffold import write_project

    site = write_project(tmp_path / "site", name="shop").root
    (site / "migrations" / ".keep").unlink()
    (site / "migrations" / "0001_service_desk.sql").write_text("-- existing\n")
    return site


def test_writes_declaration_and_next_numbered_migration(tmp_path: Path) -> None:
    site = site_dir(tmp_path)
    proc = keel("startapp", "order", "--site-dir", str(site), *FIELDS)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    migration = site / "migrations" / "0002_create_order.sql"
    assert migration.exists() and (site / "order.py").exists()
    sql_text = migration.read_text()
    assert 'CREATE TABLE "order"' in sql_text and '"select" varchar(255) NOT NULL' in sql_text
    assert """CHECK ("status" IN ('open', 'in progress', 'closed'))""" in sql_text
    assert "Next:" in proc.stdout and "keel migrate" in proc.stdout
    # The new resource is in the project's REGISTRY, loadable as the site's declarations.
    from app import sites

    registry = sites.load_site(site).registry()
    assert [r.key for r in registry] == ["order"]


async def test_generated_files_apply_and_validate_cleanly(
    tmp_path: Path, database_url: str
) -> None:
    """The migration runs as written (keywords quoted) and the declaration passes RES-2."""
    site = site_dir(tmp_path)
    assert main(["startapp", "order", "--site-dir", str(site), *FIELDS]) == 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # Nothing was applied by startapp itself.
        cur = await conn.execute("SELECT to_regclass('public.order')")
        assert (await cur.fetchone())[0] is None
        await conn.execute((site / "migrations" / "0002_create_order.sql").read_text())
        spec = importlib.util.spec_from_file_location("scaffold_order", site / "order.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        registry = register(module.ORDER)
        catalog = await load_tables(conn, registry)
        assert validate(registry, catalog) == []
        table = catalog["order"]
        assert table.column("status").choices == ("open", "in progress", "closed")
        assert table.column("user_id").fk.target_table == "technicians"
        assert table.column("notes").nullable and not table.column("total").nullable


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["Bad-Name", "--field", "a:str"], "table name 'Bad-Name' is not allowed"),
        (["pg_things", "--field", "a:str"], "is not allowed"),
        (["users", "--field", "a:str"], "reserved"),
        (["things"], "no fields given"),
        (["things", "--field", "a"], "has no type"),
        (["things", "--field", "a:money"], "unknown type 'money'"),
        (["things", "--field", "a:str", "--field", "a:int"], "given twice"),
        (["things", "--field", "id:int"], "added automatically"),
        (["things", "--field", "Name:str"], "field name 'Name' is not allowed"),
        (["things", "--field", "a;drop:str"], "is not allowed"),
        (["things", "--field", "s:choice:"], "bad choices"),
        (["things", "--field", "s:choice:a,a"], "bad choices"),
        (["things", "--field", "s:choice:a',b"], "bad choices"),
        (["things", "--field", "c:fk:Other Table"], "is not allowed"),
        (["t" * 64, "--field", "a:str"], "is not allowed"),
    ],
)
def test_bad_names_and_types_exit_2_with_problem_why_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    site = site_dir(tmp_path)
    assert main(["startapp", *args[:1], "--site-dir", str(site), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Problem: ") and problem in err, err
    assert "\nWhy: " in err and "\nFix: " in err
    assert sorted(p.name for p in (site / "migrations").iterdir()) == ["0001_service_desk.sql"]


def test_never_overwrites_an_existing_declaration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = site_dir(tmp_path)
    (site / "things.py").write_text("# mine\n")
    assert main(["startapp", "things", "--site-dir", str(site), "--field", "a:str"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (site / "things.py").read_text() == "# mine\n"


def test_startapp_search_is_refused_like_every_reserved_slug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One reserved-name rule: startapp refuses what register() would refuse at start."""
    from app.admin.resources import Resource
    from app.errors import KeelError
    from app.names import RESERVED_SLUGS

    site = site_dir(tmp_path)
    for slug in sorted(RESERVED_SLUGS):
        assert main(["startapp", slug, "--site-dir", str(site), "--field", "a:str"]) == 2
        assert "reserved" in capsys.readouterr().err
        with pytest.raises(KeelError) as refused:
            register(Resource(slug))
        assert "built-in page" in refused.value.why


def test_outside_a_project_it_asks_for_a_site_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never writes into the installed package (inside the executable, an extraction cache)."""
    monkeypatch.chdir(tmp_path)
    assert main(["startapp", "things", "--field", "a:str"]) == 2
    err = capsys.readouterr().err
    assert "is not a site project" in err and "--site-dir" in err
    assert list(tmp_path.iterdir()) == []
