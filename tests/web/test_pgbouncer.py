"""Two workers through a real PgBouncer in transaction pooling mode (`pgbouncer = true`)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
import pytest

from app import devdb
from tests.helpers import free_port, keel, keel_env
from tests.web.test_workers import Server, cpu_ticks

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
_INPUT = re.compile(r"<input\b[^>]*>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def pgbouncer(database_url: str) -> Iterator[str]:
    """A pgbouncer of our own in front of the test cluster; the database URL through it."""
    if not os.access(PGBOUNCER, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (scripts/test installs the Debian package)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    target = urlsplit(database_url)
    port = free_port()
    # Not under pytest's tmp_path: its parents are private to us, and pgbouncer may run as
    # another user (below).
    work = Path(tempfile.mkdtemp(prefix="keel-test-pgbouncer-"))
    work.chmod(0o755)
    user = target.username or "postgres"
    (work / "users.txt").write_text(f'"{user}" ""\n')
    (work / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.hostname} port={target.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work / 'users.txt'}\n"
        "pool_mode = transaction\n"
        # Fewer server connections than the two workers' pools together: transactions of
        # different clients really do share server connections.
        "default_pool_size = 4\nmax_client_conn = 200\n"
        f"logfile = {work / 'pgbouncer.log'}\npidfile = {work / 'pgbouncer.pid'}\n"
    )
    command = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root, like PostgreSQL
        runas = devdb._run_as_user()
        assert runas is not None
        shutil.chown(work, runas)
        for f in work.iterdir():
            shutil.chown(f, runas)
        command = [devdb._runuser(), "-u", runas, "--", *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = _through(database_url, port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(url, prepare_threshold=None, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = work / "pgbouncer.log"
                    said = log.read_text() if log.exists() else ""
                    if proc.poll() is not None:
                        said += proc.communicate()[0]
                    raise AssertionError(said or "pgbouncer did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _form(page: str) -> dict[str, str]:
    """The named inputs of the edit form (the one carrying the row version), with values."""
    forms = [f for f in re.findall(r"<form\b.*?</form>", page, re.S) if 'name="_version"' in f]
    assert forms, "no edit form"
    form = forms[0]
    out = {}
    for tag in _INPUT.findall(form):
        attrs = dict(_ATTR.findall(tag))
        if "name" in attrs and attrs.get("type") not in ("submit", "checkbox", "radio"):
            out[attrs["name"]] = html.unescape(attrs.get("value", ""))
    return out


async def test_two_workers_serve_through_pgbouncer_in_transaction_mode(
    pgbouncer: str, database_url: str, secret_key: str, make_user
) -> None:  # type: ignore[no-untyped-def]
    user, password = await make_user("administrator")
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = [
            conn.execute(
                "INSERT INTO customers (name, email, city, created_at)"
                " VALUES (%s, %s, 'Lyon', now()) RETURNING id",
                (f"Customer {i}", f"c{i}@example.com"),
            ).fetchone()[0]  # type: ignore[index]
            for i in range(30)
        ]
    server = Server(pgbouncer, secret_key, KEEL_PGBOUNCER="true")
    server_url = server.url
    try:
        workers = server.wait_workers(2)
        jar = aiohttp.CookieJar(unsafe=True)
        origin = {"Origin": server_url}
        # A connection per request, so the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as s:
            async with s.get(server_url + "/login") as resp:
                token = _TOKEN.search(await resp.text())
            assert token
            async with s.post(
                server_url + "/login",
                data={"email": user.email, "password": password, "csrf_token": token.group(1)},
                headers=origin,
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303
            # Many times the same queries, on fresh connections that land on either worker
            # and on any server connection: a prepared statement would be missing somewhere.
            before = {pid: cpu_ticks(pid) for pid in workers}
            for i in range(40):
                async with s.get(server_url + f"/admin/customers/?q=Customer {i % 7}") as resp:
                    assert resp.status == 200, await resp.text()
            # Both workers served some of them: each spent CPU (about 10 ms a page; a worker
            # that only waits spends next to none).
            spent = {pid: cpu_ticks(pid) - ticks for pid, ticks in before.items()}
            assert all(t >= 3 for t in spent.values()), spent
            for pk in ids[:5]:
                async with s.get(server_url + f"/admin/customers/{pk}/") as resp:
                    assert resp.status == 200
                    form = _form(await resp.text())
                form["city"] = "Grenoble"
                async with s.post(
                    server_url + f"/admin/customers/{pk}/",
                    data=form,
                    headers=origin,
                    allow_redirects=False,
                ) as resp:
                    assert resp.status == 303, await resp.text()
    finally:
        log = server.stop()
    assert "Traceback" not in log and "prepared statement" not in log
    with psycopg.connect(database_url) as conn:
        cities = conn.execute(
            "SELECT city FROM customers WHERE id = ANY(%s) ORDER BY id", (ids[:5],)
        ).fetchall()
    assert [c for (c,) in cities] == ["Grenoble"] * 5


def test_migrate_refuses_pgbouncer_without_a_direct_url(database_url: str, secret_key: str) -> None:
    proc = keel(
        "migrate",
        env=keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, KEEL_PGBOUNCER="1"),
    )
    assert proc.returncode == 1, proc.stderr
    assert "direct connection to PostgreSQL" in proc.stderr and "--database-url" in proc.stderr
    direct = keel(
        "migrate",
        "--database-url",
        database_url,
        env=keel_env(KEEL_SECRET_KEY=secret_key, KEEL_PGBOUNCER="1"),
    )
    assert direct.returncode == 0, direct.stderr
