"""The SQL splitter refuses a script whose quote, dollar quote or comment never ends."""

from __future__ import annotations

import pytest

from app.db.sqlsplit import UnterminatedSql, split_sql


@pytest.mark.parametrize(
    ("script", "what", "line"),
    [
        ("SELECT 1;\nSELECT 'oops;\nSELECT 3;", "string", 2),
        ('SELECT 1;\n\nSELECT "col FROM t;', "quoted identifier", 3),
        ("CREATE FUNCTION f() RETURNS int AS $body$\nSELECT 1;\n", "dollar-quoted body $body$", 1),
        ("SELECT 1;\nDO $$ BEGIN END $ LANGUAGE plpgsql;", "dollar-quoted body $$", 2),
        ("SELECT 1; /* a /* nested */ comment\nSELECT 2;", "/* comment", 1),
        ("SELECT E'it\\'s;", "string", 1),
    ],
)
def test_unterminated_sql_is_refused_with_its_line(script: str, what: str, line: int) -> None:
    with pytest.raises(UnterminatedSql) as caught:
        split_sql(script)
    assert caught.value.what == what
    assert caught.value.line == line
    rendered = caught.value.render()
    assert f"opened at line {line}" in rendered
    assert "Why:" in rendered and "Fix:" in rendered


@pytest.mark.parametrize(
    ("script", "texts"),
    [
        ("SELECT E'it\\'s; fine'; SELECT 2", ["SELECT E'it\\'s; fine'", "SELECT 2"]),
        # Outside E'' strings a backslash is an ordinary character (standard_conforming_strings).
        ("SELECT 'C:\\'; SELECT 2", ["SELECT 'C:\\'", "SELECT 2"]),
        ("SELECT name'x'; SELECT 2", ["SELECT name'x'", "SELECT 2"]),
        ("SELECT a$b$c FROM t; SELECT 2", ["SELECT a$b$c FROM t", "SELECT 2"]),
        ("SELECT $1; -- no closing quote ' in a comment\nSELECT 2", ["SELECT $1", "SELECT 2"]),
    ],
)
def test_well_formed_scripts_still_split(script: str, texts: list[str]) -> None:
    assert [s.text for s in split_sql(script)] == texts


def test_every_shipped_migration_splits() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "app"
    files = sorted(root.glob("**/migrations/*.sql"))
    assert files
    for path in files:
        assert split_sql(path.read_text(encoding="utf-8")), path
