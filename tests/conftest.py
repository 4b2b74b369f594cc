"""Test harness: a real throwaway PostgreSQL started by the suite itself.

One cluster per test process (per xdist worker); one migrated template database per
process; every test that asks for a database gets a fresh clone of the template
(`CREATE DATABASE … TEMPLATE …`), which is isolated and takes a few milliseconds.
`KEEL_TEST_DATABASE_URL` points the suite at an existing server instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from app import sites
from app.config import Config
from app.db import migrate
from app.devdb import LocalPostgres
from app.web import render
from tests.helpers import SmtpServer, cheap_app, make_config, smtp_server

# Longest files first across the xdist workers (see tests/schedule.py).
pytest_plugins = ["tests.schedule", "tests.cpu_meter"]

TEMPLATE = "keel_test_template"
# Most tests use the demo site's tables as fixtures, so the suite serves the demo site (also in
# the subprocesses it starts). Tests of plain Keel, or of a site of their own, say so explicitly.
os.environ["KEEL_SITE_DIR"] = str(sites.demo_site().root)
# Every edit page a test opens is drawn both ways, kept shape and in full, and must match
# (app/web/render.py, `Renderer.shaped_response`).
render.CHECK_SHAPES = True


@dataclass
class PgServer:
    """Where the test cluster is; `url(db)` names a database on it."""

    base_url: str
    # One connection for creating and dropping the tests' databases, kept for the run: a new
    # one costs a backend start (about 7 ms), twice a test, over a thousand tests.
    _kept: psycopg.Connection | None = None

    def url(self, dbname: str) -> str:
        head, _, _ = self.base_url.rpartition("/")
        return f"{head}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def _connection(self) -> psycopg.Connection:
        """The kept connection; a new one if that one was closed or broke."""
        if self._kept is None or self._kept.closed or self._kept.broken:
            self._kept = self.admin()
        return self._kept

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn = self._connection()
        # PostgreSQL 15 copies a template block by block through the WAL by default: about
        # 0.1 s of server CPU for our 9 MB template, on every test. Copying the files costs a
        # quarter of that (and its checkpoint is cheap with fsync off), and most tests make a
        # database. Older servers (KEEL_TEST_DATABASE_URL) only copy files.
        if conn.info.server_version >= 150000:
            query += sql.SQL(" STRATEGY FILE_COPY")
        conn.execute(query)
        return name

    def drop_database(self, name: str) -> None:
        self._connection().execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _memory_dir() -> str | None:
    """Where the throwaway cluster lives: in memory (/dev/shm) when the machine has room there.

    Every test clones a database and drops it: on a disk that is thousands of files created and
    unlinked per minute (with `discard` mounts, each unlink also trims the disk), which cost
    about a fifth of the suite's time. The data is thrown away anyway. `KEEL_TEST_PGDIR` names
    another directory; without room in memory the system's temporary directory is used."""
    chosen = os.environ.get("KEEL_TEST_PGDIR")
    if chosen:
        return chosen
    shm = "/dev/shm"
    try:
        room = os.statvfs(shm)
    except OSError:
        return None
    enough = room.f_bavail * room.f_frsize >= 2 << 30  # a worker's cluster holds about 70 MB
    return shm if enough and os.access(shm, os.W_OK | os.X_OK) else None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("KEEL_TEST_DATABASE_URL")
    if external:
        server = PgServer(external)
        yield server
        server.close()
        return
    base = Path(tempfile.mkdtemp(prefix="keel-test-pg-", dir=_memory_dir()))
    base.chmod(0o755)  # the cluster may run as an unprivileged user when we are root
    cluster = LocalPostgres(base / "cluster", fast=True)
    cluster.start()
    from tests import cpu_meter  # registered as a plugin above: imported (and rewritten) by now

    cpu_meter.watch_postmaster(cluster.pid)
    server = PgServer(cluster.url("postgres"))
    try:
        yield server
    finally:
        server.close()
        cpu_meter.postmaster_stopping(cluster.pid)
        cluster.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A migrated database that test databases are cloned from."""
    name = f"{TEMPLATE}_{os.getpid()}"
    pg_server.drop_database(name)
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(pg_server.url(name), autocommit=True)
        async with conn:
            await migrate.migrate(conn)

    asyncio.run(run())
    return name


@pytest.fixture
def database_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    name = pg_server.create_database(template_db)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def empty_database_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free local port that keeps every message it receives."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def secret_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def config(database_url: str, secret_key: str) -> Config:
    return make_config(database_url, secret_key, pool_min="1")


@pytest.fixture
async def client(config: Config, aiohttp_client: object) -> AsyncIterator[object]:
    """A real HTTP client against the app from the one factory, on a real socket."""
    # Sign-ins here are not about hashing: a cheap Argon2 set (tests/authority checks the real one).
    yield await aiohttp_client(cheap_app(config))  # type: ignore[operator]


# -- the built executable, shared by every test file that runs it ------------------------------


@pytest.fixture(scope="session")
def keel_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """dist/keel built by build.py from the working tree, once per test run: (path, output).

    Building takes from 20 s to a minute. Under xdist every worker asks for it: the first
    builds it under a lock in the run's shared temporary directory, the others reuse the file."""
    import fcntl
    import subprocess
    import sys

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if worker else base) / "keel-artifact"
    shared.mkdir(exist_ok=True)
    output, log = shared / "keel", shared / "build.log"
    with (shared / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not output.exists():
            repo = Path(__file__).resolve().parents[1]
            result = subprocess.run(
                [sys.executable, str(repo / "build.py"), "--output", str(output)],
                cwd=repo,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            log.write_text(result.stdout, encoding="utf-8")
    return output, log.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def host_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin/ with a bare CPython of the build's version, as on a fresh host.

    A venv without pip of the base interpreter: neither the dev venv's packages nor the
    base interpreter's site-packages can stand in for something missing from the artifact."""
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("hostpy")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(home / "py")], check=True, timeout=120)
    return home / "py" / "bin"
