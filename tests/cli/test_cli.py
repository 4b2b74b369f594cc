"""CLI-1..4: help for every command, version, exit codes, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import COMMANDS, build_parser, chosen_command
from tests.helpers import REPO, assert_no_traceback, keel, keel_env


def test_help_lists_every_command_with_one_line() -> None:
    proc = keel("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        line = next((x for x in proc.stdout.splitlines() if x.strip().startswith(name + " ")), None)
        assert line and len(line.split(None, 1)) == 2, f"{name} needs a one-line description"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    proc = keel(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"usage: keel {name}" in proc.stdout


def test_version_prints_version_build_and_python() -> None:
    proc = keel("version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("keel 0.1.0 (build ")
    assert "Python 3." in proc.stdout
    data = json.loads(keel("version", "--json").stdout)
    assert data["version"] == "0.1.0" and data["build_id"] and data["python"]


def test_unknown_command_and_bad_flag_are_usage_errors() -> None:
    for args in (["frobnicate"], ["migrate", "--nope"], ["version", "--json=3"]):
        proc = keel(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("Problem: "), proc.stderr
        assert "Fix: see `keel" in proc.stderr
        assert_no_traceback(proc)


def test_no_command_prints_help_and_exits_2() -> None:
    proc = keel()
    assert proc.returncode == 2 and "commands:" in proc.stdout


def test_quick_commands_do_not_import_the_server_stack() -> None:
    """`keel --help` and `keel version` must stay fast on a cold host: no aiohttp/psycopg import."""
    code = (
        "import sys; from app.cli import main; main(['version']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'psycopg', 'jinja2', 'argon2'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=keel_env(),
        check=True,
    )
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_docs_lists_and_prints_embedded_pages() -> None:
    listing = keel("docs")
    assert listing.returncode == 0 and "configuration" in listing.stdout.split()
    page = keel("docs", "configuration")
    assert page.returncode == 0 and "### `secret_key`" in page.stdout
    missing = keel("docs", "../../etc/passwd")
    assert missing.returncode == 1 and "Problem: no documentation page" in missing.stderr
    assert_no_traceback(missing)


def test_config_reference_file_is_generated_from_the_settings_table() -> None:
    generated = keel("docs", "--config-reference").stdout
    assert (Path(REPO) / "docs" / "configuration.md").read_text() == generated


def test_parser_builds_with_every_command() -> None:
    parser = build_parser()
    assert parser.prog == "keel"


def test_a_process_imports_only_the_command_it_runs() -> None:
    """`keel version` must not pay for importing `serve` (aiohttp) or `user` at every start."""
    code = (
        "import sys; from app.cli import main; main(['version'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('app.cli.', 'aiohttp'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=keel_env(), capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.strip().splitlines()[-1]
    assert "app.cli.version" in loaded
    assert "app.cli.serve" not in loaded and "app.cli.user" not in loaded
    assert "aiohttp" not in loaded


def test_the_command_is_found_past_global_options() -> None:
    assert chosen_command(["--config", "version", "user", "list"]) == "user"
    assert chosen_command(["-q", "--site", "dir", "version"]) == "version"
    assert chosen_command(["--config=x.toml", "import", "customers"]) == "import"
    assert chosen_command(["--help", "user"]) is None, "keel --help lists every command"
    assert chosen_command(["usr"]) is None, "a typo gets the full list of choices"
    assert chosen_command([]) is None
    # The one-command parser reads the same arguments as the full one.
    full = build_parser().parse_args(["-q", "version", "--json"])
    one = build_parser(chosen_command(["-q", "version", "--json"])).parse_args(
        ["-q", "version", "--json"]
    )
    assert (full.command, full.quiet, full.json) == (one.command, one.quiet, one.json)


def test_cli_reference_file_is_generated_from_the_parser() -> None:
    """docs/cli.md is `keel docs --cli-reference`; regenerate it when commands change."""
    generated = keel("docs", "--cli-reference", env=keel_env(COLUMNS="100")).stdout
    assert (Path(REPO) / "docs" / "cli.md").read_text() == generated, (
        "regenerate: COLUMNS=100 python -m app docs --cli-reference > docs/cli.md"
    )
    # Every subcommand has its own section with its options, not just a line in its parent's list.
    for heading in ("### keel user create", "### keel group grant", "### keel audit verify"):
        assert heading in generated
    create = generated.split("### keel user create", 1)[1].split("###", 1)[0]
    assert "--password-stdin" in create and "--role" in create


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    """CLI-3: `keel docs --cli-reference | head -1` ends quietly, no traceback."""
    import subprocess
    import sys

    proc = subprocess.run(
        f"{sys.executable} -m app docs --cli-reference | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=keel_env(),
        timeout=60,
    )
    assert proc.stdout == "# CLI refe"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
