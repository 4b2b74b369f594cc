"""What users read speaks to operators: no requirement ids, specification sections, issue
numbers, process words or paths outside the repository (see tests/textrules.py for what counts).

Each rule has a fixture that breaks it, to show the check reports the break.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.helpers import REPO
from tests.textrules import (
    error_classes,
    hits,
    pointers_outside,
    python_text,
    scan,
    template_text,
    undefined_ids,
)

# The one page made to define the ids, for maintainers.
REQUIREMENTS = "docs/requirements.md"

BAD_MODULE = textwrap.dedent(
    """
    import argparse

    from app.errors import Invalid, KeelError


    class Refused(Invalid):
        pass


    def check(value):
        # LOGIN-6 in a comment is fine: comments are for maintainers.
        if not value:
            raise Refused("too short", why="the policy (LOGIN-6) refuses it", fix="see SPEC §6")
        raise KeelError(f"broken {value}", why="as the reviewer asked in issue 12")


    def register(sub):
        sub.add_parser("x", help="do x (AUTHZ-4)", description="see ../shared/SPEC.md")
    """
)


def test_the_checker_reports_each_kind_of_bad_text_in_code() -> None:
    errors_module = "class KeelError(Exception): ...\nclass Invalid(KeelError): ...\n"
    errors = error_classes({"bad.py": BAD_MODULE, "errors.py": errors_module})
    assert errors == {"KeelError", "Invalid", "Refused"}
    found = [word for _line, text in python_text(BAD_MODULE, errors) for word in hits(text)]
    assert sorted(found) == sorted(
        ["LOGIN-6", "SPEC", "§", "the reviewer", "issue 12", "AUTHZ-4", "SPEC", "../shared"]
    )


def test_the_checker_reads_templates_less_their_comments() -> None:
    page = "{# EDIT-1: maintainers only #}\n<p>Saved (EDIT-4).</p>\n"
    assert hits(template_text(page)) == ["EDIT-4"]


def test_the_checker_scans_a_tree(tmp_path: Path) -> None:
    (tmp_path / "app" / "web" / "templates").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "app" / "bad.py").write_text(BAD_MODULE)
    (tmp_path / "app" / "web" / "templates" / "p.html").write_text("<p>per SPEC</p>\n")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\nAs the two engineers agreed.\n")
    found = scan(tmp_path)
    assert "app/web/templates/p.html:1: SPEC" in found
    assert "docs/guide.md:3: the two engineers" in found
    assert any(f.startswith("app/bad.py:") and f.endswith("AUTHZ-4") for f in found)


def test_standard_names_are_not_requirement_ids() -> None:
    assert hits("UTF-8 text, SHA-256 digests") == []


def test_what_users_read_has_no_requirement_ids_or_process_words() -> None:
    found = scan(REPO, exempt=(REQUIREMENTS,))
    assert found == [], (
        "say it in plain words for an operator (an id may stay in a code comment):\n"
        + "\n".join(found)
    )


def _code_files() -> list[Path]:
    suffixes = {".py", ".html", ".txt", ".css", ".js", ".sql", ".toml"}
    return [
        p
        for p in sorted((REPO / "app").rglob("*"))
        if p.is_file() and p.suffix in suffixes and "LICENSE" not in p.name
    ]


# These two hold the bad examples the checks must catch.
_FIXTURE_HOLDERS = {"textrules.py", "test_product_text.py"}


def _test_files() -> list[Path]:
    return [p for p in sorted((REPO / "tests").rglob("*.py")) if p.name not in _FIXTURE_HOLDERS]


def test_code_and_comments_do_not_point_outside_the_repository() -> None:
    assert pointers_outside("# see ../shared/SPEC.md, DESIGN §3") == [
        "../shared",
        "SPEC.md",
        "DESIGN",
        "§",
    ]
    found = [
        f"{p.relative_to(REPO)}: {word}"
        for p in [*_code_files(), *_test_files()]
        for word in pointers_outside(p.read_text())
    ]
    assert found == [], "\n".join(found)


def test_every_requirement_id_in_the_code_is_defined_in_the_repository() -> None:
    doc = (REPO / REQUIREMENTS).read_text()
    defined = set(re.findall(r"^\| ([A-Z][A-Z0-9]{1,5}-\d+) \|", doc, flags=re.M))
    assert undefined_ids("see LOGIN-6 and NOPE-9", defined) == ["NOPE-9"]
    assert undefined_ids("re.compile(r'[A-Z0-9]{16}')", defined) == []
    found = [
        f"{p.relative_to(REPO)}: {i}"
        for p in _code_files()
        for i in undefined_ids(p.read_text(), defined)
    ]
    assert found == [], "define these in docs/requirements.md:\n" + "\n".join(found)
