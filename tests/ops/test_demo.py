"""OPS-8: `keel demo` starts its own PostgreSQL, migrates, serves; Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import free_port, keel, keel_env, spawn_keel, wait_http


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp root: as root, the demo's PostgreSQL runs unprivileged.
    base = Path(tempfile.mkdtemp(prefix="keel-demo-test-"))
    base.chmod(0o755)
    yield base / "demo"
    shutil.rmtree(base, ignore_errors=True)


def _printed_url(stdout: str) -> str:
    return next(x for x in stdout.splitlines() if x.startswith("postgresql://"))


def _postmaster_running(data_dir: Path) -> bool:
    return (data_dir / "postgres" / "data" / "postmaster.pid").exists()


def test_demo_prepares_database_and_stops_postgres(data_dir: Path) -> None:
    # Two situations are checked on this first run rather than on demos of their own (each
    # demo run costs an initdb, the migrations and a data load): a DATABASE_URL in the
    # environment is ignored, since the demo uses its own PostgreSQL; and a shell whose PATH
    # lacks sbin (su without -l, cron) still starts PostgreSQL, which as root needs runuser.
    env = keel_env(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing", PATH="/usr/local/bin:/usr/bin:/bin"
    )
    proc = keel("demo", "--no-serve", "--data-dir", str(data_dir), env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    url = _printed_url(proc.stdout)
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert "nobody" not in url
    assert not _postmaster_running(data_dir), "PostgreSQL must be stopped when the demo ends"
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (
        "demo data loaded: 30 technicians, 300 properties, 1,000 customers, 3,000 bookings"
        in proc.stdout
    )
    assert "bookings: 3,000/3,000 rows" in proc.stdout, "progress, one line per step off a TTY"
    first = _password(proc.stdout)
    again = keel("demo", "--no-serve", "--data-dir", str(data_dir), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 migration(s) applied" in again.stdout
    assert "demo data already present" in again.stdout
    assert "one-time password" not in again.stdout, "the password is shown once"
    assert "keel demo --reset-admin" in again.stdout
    reset = keel("demo", "--no-serve", "--reset-admin", "--data-dir", str(data_dir), timeout=120)
    assert reset.returncode == 0, reset.stderr
    assert _password(reset.stdout) != first


def _password(stdout: str) -> str:
    m = re.search(r"administrator admin@example\.com, one-time password: (\S+)", stdout)
    assert m, stdout
    return m.group(1)


def test_demo_bad_size_is_refused(data_dir: Path) -> None:
    proc = keel("demo", "--no-serve", "--size", "huge", "--data-dir", str(data_dir))
    assert proc.returncode == 2 and "--size" in proc.stderr and "large" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_serves_and_ctrl_c_stops_everything(data_dir: Path) -> None:
    port = free_port()
    proc = spawn_keel(
        "demo", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", env=keel_env()
    )
    try:
        assert proc.stdout is not None
        printed = ""
        while "one-time password" not in printed:
            line = proc.stdout.readline()
            assert line, "the demo ended before printing the administrator's password"
            printed += line
        password = _password(printed)
        base = f"http://127.0.0.1:{port}"
        assert wait_http(base + "/readyz", timeout=90, proc=proc) == 200
        assert _postmaster_running(data_dir)
        # The printed one-time password signs in, straight to "choose a new password" (LOGIN-7).
        assert asyncio.run(_sign_in(base, "admin@example.com", password)) == (
            303,
            "/must-change-password",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "PostgreSQL stopped" in out
    assert not _postmaster_running(data_dir)


def test_demo_bad_listen_address_is_refused_cleanly(data_dir: Path) -> None:
    proc = keel("demo", "--data-dir", str(data_dir), "--listen", "nowhere", timeout=120)
    assert proc.returncode == 2 and "listen" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not _postmaster_running(data_dir)


async def _sign_in(base: str, email: str, password: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/login") as resp:
            m = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', await resp.text())
        assert m
        form = {"email": email, "password": password, "csrf_token": m.group(1)}
        async with s.post(base + "/login", data=form, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location", "")
