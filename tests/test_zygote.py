"""The tests' fork server stands in for `python -m app` only where a fresh interpreter would
behave the same: its own process, argv, environment, working directory, stdio and exit code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import zygote
from tests.helpers import keel_env

pytestmark = pytest.mark.skipif(not zygote._USABLE, reason="no fork or descriptor passing here")


def test_a_command_gets_its_own_arguments_environment_directory_and_stdio(tmp_path: Path) -> None:
    env = keel_env()
    # An unknown command: usage on stderr, status 2, as from a fresh interpreter.
    bad = zygote.run(["no-such-verb"], env=env)
    fresh = subprocess.run(
        zygote._argv(["no-such-verb"]), env=env, capture_output=True, text=True, cwd=zygote.REPO
    )
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert bad.returncode == 2
    # `keel version` writes to stdout and exits 0, in whatever directory it is started.
    ok = zygote.run(["version"], env=env, cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("keel ") and ok.stderr == ""
    # stdin is what the test gives, else empty; the environment is exactly the one given.
    created = zygote.run(
        ["user", "create", "--email", "a@example.com", "--password-stdin"],
        env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        input="plum orbit kettle 4711\n",
    )
    assert created.returncode != 0 and "Traceback" not in created.stderr
    assert "127.0.0.1" in created.stderr or "secret_key" in created.stderr, created.stderr


def test_a_command_past_its_timeout_is_killed_and_the_server_goes_on() -> None:
    env = keel_env()
    assert zygote.run(["version"], env=env).returncode == 0
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run(["version"], env=env, timeout=0.000001)  # no command answers that fast
    assert zygote._helper.proc is not None and zygote._helper.proc.poll() is None
    assert zygote.run(["version"], env=env).returncode == 0


def test_an_environment_that_changes_python_itself_gets_a_fresh_interpreter() -> None:
    env = {**keel_env(), "PYTHONWARNINGS": "error::DeprecationWarning"}
    assert not zygote._helper.fits(env) or zygote._helper.proc is None
    result = zygote.run(["version"], env=env)
    assert result.returncode == 0 and result.stdout.startswith("keel ")
