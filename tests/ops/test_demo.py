"""OPS-8: `keel demo` starts its own PostgreSQL, migrates, serves; Ctrl-C stops everything."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    proc = keel("demo", "--no-serve", "--data-dir", str(data_dir), timeout=120)
    assert proc.returncode == 0, proc.stderr
    url = _printed_url(proc.stdout)
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert not _postmaster_running(data_dir), "PostgreSQL must be stopped when the demo ends"
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
    again = keel("demo", "--no-serve", "--data-dir", str(data_dir), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 migration(s) applied" in again.stdout


def test_demo_serves_and_ctrl_c_stops_everything(data_dir: Path) -> None:
    port = free_port()
    proc = spawn_keel(
        "demo", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", env=keel_env()
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/readyz", timeout=90, proc=proc) == 200
        assert _postmaster_running(data_dir)
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


def test_demo_ignores_database_url_from_environment(data_dir: Path) -> None:
    env = keel_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing")
    proc = keel("demo", "--no-serve", "--data-dir", str(data_dir), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "nobody" not in _printed_url(proc.stdout)
