"""Replacing a running server under load on a socket held like systemd holds keel.socket's."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, keel_env, wait_http
from tests.web.test_workers import children, steady_load

# Like systemd: put the socket at fd 3 and name this very process in LISTEN_PID.
_EXEC = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "os.dup2(fd, 3)\n"
    "os.close(fd)\n"
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
# The server before the upgrade runs from the source tree; the one after it is the executable
# build.py made (another build of the code, as an upgrade brings).
SOURCE = (sys.executable, "-m", "app")


@pytest.fixture
def held_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    yield sock
    sock.close()


def _activated(
    sock: socket.socket, env: dict[str, str], log: object, program: tuple[str, ...], *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _EXEC, str(sock.fileno()), *program, "serve", *args],
        pass_fds=(sock.fileno(),),
        env=env,
        cwd=REPO,
        text=True,
        stdout=log,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
    )


def _wait_ready(notify: socket.socket, proc: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    notify.settimeout(0.5)
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            msg = notify.recv(4096).decode()
        except TimeoutError:
            continue
        if "READY=1" in msg:
            return
    raise AssertionError("no READY=1")


def test_replacing_the_server_on_a_held_socket_drops_no_request(
    database_url: str,
    secret_key: str,
    held_socket: socket.socket,
    tmp_path: Path,
    keel_artifact: tuple[Path, str],
) -> None:
    port = held_socket.getsockname()[1]
    notify_paths = [tmp_path / "old.sock", tmp_path / "new.sock"]
    notifies = []
    for path in notify_paths:
        n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        n.bind(str(path))
        notifies.append(n)
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]  # noqa: SIM115
    procs: list[subprocess.Popen[str]] = []

    def env(i: int) -> dict[str, str]:
        return keel_env(
            DATABASE_URL=database_url,
            KEEL_SECRET_KEY=secret_key,
            KEEL_LOG_LEVEL="warning",
            NOTIFY_SOCKET=str(notify_paths[i]),
            SHIV_ROOT=str(tmp_path / "shiv"),
        )

    new_build = (str(keel_artifact[0]),)

    try:
        procs.append(_activated(held_socket, env(0), logs[0], SOURCE, "--workers", "2"))
        _wait_ready(notifies[0], procs[0])

        async def scenario() -> tuple[int, int, list[str]]:
            stop = asyncio.Event()
            load = asyncio.create_task(steady_load(f"http://127.0.0.1:{port}/readyz", stop))
            await asyncio.sleep(1.0)
            # The new build starts on the same socket while the old one still serves…
            procs.append(_activated(held_socket, env(1), logs[1], new_build, "--workers", "2"))
            await asyncio.to_thread(_wait_ready, notifies[1], procs[1])
            await asyncio.sleep(0.5)
            # …then the old one is asked to stop and drains.
            procs[0].send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(procs[0].wait, 60)
            assert code == 0
            await asyncio.sleep(1.5)  # the new build alone
            stop.set()
            return await load

        ok, failed, reasons = asyncio.run(scenario())
        assert procs[1].poll() is None and len(children(procs[1].pid)) == 2
        # What serves now is the new build: the executable, not the source tree.
        with open(f"/proc/{procs[1].pid}/cmdline", "rb") as f:
            assert new_build[0].encode() in f.read().split(b"\0")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for n in notifies:
            n.close()
        output = []
        for log in logs:
            log.seek(0)
            output.append(log.read())
            log.close()
    assert ok > 50, (ok, output)
    assert failed == 0, (failed, reasons, output)
    assert "Traceback" not in "".join(output)


def test_readyz_stays_200_on_a_newer_schema_and_503_on_a_pending_one(
    database_url: str, secret_key: str
) -> None:
    """docs/operations.md: a rolled-back (older) build stays in service on a newer schema; its
    own pending migration makes it unready."""
    from tests.web.test_workers import Server

    server = Server(database_url, secret_key, workers=1)
    try:
        assert wait_http(server.url + "/healthz", timeout=60, proc=server.proc) == 200
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO keel_migrations (version, name, checksum, applied_by)"
                " VALUES ('core:9999', 'from_a_newer_build', 'x', 'test')"
            )
        with urllib.request.urlopen(server.url + "/readyz", timeout=10) as resp:
            body = json.loads(resp.read())
            assert resp.status == 200
        assert body["status"] == "ready" and body["pending"] == 0 and body["newer"] == 1
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM keel_migrations WHERE version = 'core:0008'")
        try:
            urllib.request.urlopen(server.url + "/readyz", timeout=10)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read())["pending"] == 1
        # An applied migration of its own whose text was edited since: unready too.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO keel_migrations (version, name, checksum, applied_by)"
                " SELECT 'core:0008', name, checksum, applied_by FROM keel_migrations"
                " WHERE version = 'core:0007'"
            )
        try:
            urllib.request.urlopen(server.url + "/readyz", timeout=10)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            body = json.loads(exc.read())
            assert body["pending"] == 1 and body["status"] == "unavailable", body
    finally:
        server.stop()
