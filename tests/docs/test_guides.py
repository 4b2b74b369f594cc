"""The guides tell the truth: the `console` blocks of docs/getting-started.md and
docs/your-tables.md are run in order, as a reader would, with the built executable as `keel`,
against a throwaway PostgreSQL, and what each command prints must match what the page shows.

In a block, `$ ` starts a command; the lines after it are its output. A line that is just `…`
stands for any number of lines, and `…` inside a line for any text.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO

DOCS = REPO / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[a-z]*)[ \t]*$")


@dataclass
class Step:
    command: str
    expected: list[str]


def blocks(markdown: str, lang: str) -> list[list[str]]:
    """The lines of every fenced block of that language, unindented (list items indent them)."""
    found: list[list[str]] = []
    current: list[str] = []
    open_lang: str | None = None  # the language of the block we are in, if any
    indent = ""
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        if open_lang is None:
            if fence:
                open_lang, indent, current = fence.group("lang"), fence.group("indent"), []
            continue
        if fence and not fence.group("lang"):
            if open_lang == lang:
                found.append(current)
            open_lang = None
            continue
        current.append(line.removeprefix(indent))
    return found


def steps(markdown: str) -> list[Step]:
    out: list[Step] = []
    for block in blocks(markdown, "console"):
        for line in block:
            if line.startswith("$ "):
                out.append(Step(line[2:], []))
            elif out:
                out[-1].expected.append(line)
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whole-output match; `…` alone skips lines, `…` in a line skips text."""
    patterns = [
        None if line.strip() == "…" else re.compile(".*?".join(map(re.escape, line.split("…"))))
        for line in expected
    ]
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        key = (i, j)
        if key not in memo:
            if i == len(patterns):
                memo[key] = j == len(actual)
            elif patterns[i] is None:
                memo[key] = go(i + 1, j) or (j < len(actual) and go(i, j + 1))
            else:
                pattern = patterns[i]
                assert pattern is not None
                memo[key] = (
                    j < len(actual)
                    and pattern.fullmatch(actual[j].rstrip()) is not None
                    and go(i + 1, j + 1)
                )
        return memo[key]

    return go(0, 0)


def test_the_matcher_is_strict_where_the_page_is() -> None:
    assert matches(["a", "…", "d"], ["a", "b", "c", "d"])
    assert matches(["✓ x …ms"], ["✓ x 12ms"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert not matches(["✓ applied 7"], ["✓ applied 8"])
    assert steps("```console\n$ keel x\nout\n```\n```sh\n$ not run\n```\n") == [
        Step("keel x", ["out"])
    ]


@pytest.fixture(scope="module")
def keel_bin(keel_artifact: tuple[Path, str], host_python: Path) -> Path:
    """The bare interpreter's bin/ (as on a fresh host), with `keel` the built executable."""
    target = host_python / "keel"
    if not target.exists():
        shutil.copy(keel_artifact[0], target)
    return host_python


def run_guide(
    guide: str, cwd: Path, keel_bin: Path, env: dict[str, str]
) -> list[tuple[Step, int, list[str]]]:
    """Run every command of the guide in one shell (so `cd` carries over), output split per
    command."""
    todo = steps((DOCS / guide).read_text(encoding="utf-8"))
    assert todo, f"{guide} has no console blocks"
    marker = f"@@{secrets.token_hex(8)}"
    script = "\n".join(
        f'echo "{marker} {n}"\n{step.command} 2>&1\necho "{marker} rc $?"'
        for n, step in enumerate(todo)
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={**env, "PATH": f"{keel_bin}:/usr/bin:/bin:/usr/sbin:/sbin"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    outputs: list[tuple[Step, int, list[str]]] = []
    lines: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith(f"{marker} rc "):
            n = len(outputs)
            outputs.append((todo[n], int(line.split()[-1]), lines))
            lines = []
        elif line.startswith(marker):
            lines = []
        else:
            lines.append(line)
    assert len(outputs) == len(todo), proc.stdout[-3000:] + proc.stderr[-2000:]
    return outputs


def check(results: list[tuple[Step, int, list[str]]]) -> None:
    for step, rc, actual in results:
        shown = "\n".join(actual)
        assert rc == 0, f"$ {step.command}\nexited {rc}:\n{shown}"
        assert matches(step.expected, actual), (
            f"$ {step.command}\nthe page shows:\n"
            + "\n".join(step.expected)
            + f"\n\nit printed:\n{shown}"
        )


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "SHIV_ROOT": str(tmp_path / "shiv"),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k in ("KEEL_POSTGRES_BIN",)},
        **extra,
    }


@pytest.fixture
def work() -> Iterator[Path]:
    """The reader's current directory. Outside pytest's private tmp tree: as root, the demo's
    PostgreSQL runs as an unprivileged user that must be able to enter it."""
    path = Path(tempfile.mkdtemp(prefix="keel-guide-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_getting_started_prints_what_it_shows(
    keel_bin: Path, tmp_path: Path, work: Path, empty_database_url: str
) -> None:
    # "With the example configuration (here in the current directory, the secrets in the
    # environment)": what the install section runs against.
    shutil.copy(REPO / "deploy" / "keel.toml.example", work / "keel.toml")
    env = base_env(
        tmp_path,
        DATABASE_URL=empty_database_url,
        KEEL_SECRET_KEY=secrets.token_urlsafe(32),
    )
    check(run_guide("getting-started.md", work, keel_bin, env))


def test_your_tables_prints_what_it_shows(
    keel_bin: Path, tmp_path: Path, work: Path, empty_database_url: str
) -> None:
    # "What you start from": the guide's SQL is the company's existing schema.
    schema = "\n".join(blocks((DOCS / "your-tables.md").read_text(encoding="utf-8"), "sql")[0])
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(schema.encode())
    env = base_env(
        tmp_path, DATABASE_URL=empty_database_url, KEEL_SECRET_KEY=secrets.token_urlsafe(32)
    )
    check(run_guide("your-tables.md", work, keel_bin, env))
    # What the guide says happened to the data: the company's tables are untouched.
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)
        names = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"customers", "orders"} <= names
    assert not {"bookings", "technicians", "properties"} & names
