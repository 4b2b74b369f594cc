"""OPS-1, DB-5: the real `keel serve` process under systemd's protocols."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from tests.helpers import (
    REPO,
    assert_no_traceback,
    free_port,
    keel,
    keel_env,
    notify_until,
    spawn_keel,
    wait_http,
)


def _env(database_url: str, secret_key: str, **extra: str) -> dict[str, str]:
    return keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, **extra)


def test_notify_ready_watchdog_and_stopping(
    database_url: str, secret_key: str, notify_socket
) -> None:  # type: ignore[no-untyped-def]
    sock, path = notify_socket
    port = free_port()
    env = _env(
        database_url,
        secret_key,
        NOTIFY_SOCKET=path,
        WATCHDOG_USEC="200000",
        KEEL_LISTEN=f"127.0.0.1:{port}",
    )
    proc = spawn_keel("serve", env=env)
    try:
        first = notify_until(sock, "READY=1")
        # READY only once the socket listens and the pool is open.
        assert wait_http(f"http://127.0.0.1:{port}/readyz", timeout=2) == 200
        assert any("STATUS=serving" in m for m in first)
        notify_until(sock, "WATCHDOG=1", limit=3)
        proc.send_signal(signal.SIGTERM)
        notify_until(sock, "STOPPING=1")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_lets_a_slow_request_finish_then_exits_0(
    database_url: str, secret_key: str
) -> None:
    port = free_port()
    env = _env(database_url, secret_key, KEEL_LISTEN=f"127.0.0.1:{port}")
    proc = spawn_keel("serve", env=env)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc) == 200
        result: dict[str, object] = {}
        with psycopg.connect(database_url) as locker:
            # Hold a lock the readiness query needs: the request stays in flight.
            locker.execute("LOCK TABLE keel_migrations IN ACCESS EXCLUSIVE MODE")

            def slow() -> None:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as r:
                    result["status"] = r.status
                    result["body"] = json.loads(r.read())

            t = threading.Thread(target=slow)
            t.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                waiting = locker.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'keel_migrations'::regclass AND NOT granted"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            # It stops listening once it has the signal, while the request goes on. Waited for,
            # not slept on: /readyz gives up on the database READY_TIMEOUT (2 s) after it starts
            # (app/ops/health.py), so the lock must be let go well within that.
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    break
                assert time.monotonic() < deadline, "still listening after SIGTERM"
                time.sleep(0.01)
            assert proc.poll() is None, "the server must wait for the request in flight"
            locker.rollback()
        t.join(timeout=20)
        assert result.get("status") == 200 and result["body"]["status"] == "ready"  # type: ignore[index]
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_pending_migrations(empty_database_url: str, secret_key: str) -> None:
    proc = keel(
        "serve", "--listen", f"127.0.0.1:{free_port()}", env=_env(empty_database_url, secret_key)
    )
    assert proc.returncode == 1
    assert "migration(s) pending" in proc.stderr and "keel migrate" in proc.stderr
    assert_no_traceback(proc)


def test_serve_refuses_missing_or_short_secret_key(database_url: str) -> None:
    proc = keel("serve", env=keel_env(DATABASE_URL=database_url))
    assert proc.returncode == 2 and "secret_key" in proc.stderr and "token_urlsafe" in proc.stderr
    short = keel("serve", env=keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY="abc"))
    assert short.returncode == 2 and "32 are needed" in short.stderr
    assert_no_traceback(short)


def test_serve_bad_flag_and_bad_listen(database_url: str, secret_key: str) -> None:
    proc = keel("serve", "--bogus", env=_env(database_url, secret_key))
    assert proc.returncode == 2 and "Problem: unrecognized arguments: --bogus" in proc.stderr
    bad = keel("serve", "--listen", "not-an-address", env=_env(database_url, secret_key))
    assert bad.returncode == 2 and "listen" in bad.stderr
    assert_no_traceback(bad)


def test_address_in_use_is_a_clear_error(database_url: str, secret_key: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = keel("serve", "--listen", f"127.0.0.1:{port}", env=_env(database_url, secret_key))
    assert proc.returncode == 1 and "cannot listen" in proc.stderr
    assert_no_traceback(proc)


def test_unix_socket_in_a_missing_directory_says_so(
    database_url: str, secret_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "run" / "keel" / "http.sock"
    proc = keel("serve", "--listen", f"unix:{path}", env=_env(database_url, secret_key))
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    assert f"Problem: the directory {path.parent} of the unix socket does not exist" in proc.stderr
    assert "another process" not in proc.stderr
    assert f"mkdir -p {path.parent}" in proc.stderr and "RuntimeDirectory=" in proc.stderr


def test_unix_socket_and_json_logs_under_systemd(
    database_url: str, secret_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "http.sock"
    env = _env(database_url, secret_key, KEEL_LISTEN=f"unix:{path}", INVOCATION_ID="abc")
    proc = spawn_keel("serve", env=env)
    try:
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        s.sendall(
            b"GET /healthz?token=secret HTTP/1.1\r\nHost: x\r\nX-Request-ID: unix-request-0123456789\r\n"
            b"X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
            b"Connection: close\r\n\r\n"
        )
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 200")
        # Only the front-end can reach the unix socket, so its forwarded headers are believed.
        assert b"Strict-Transport-Security" in reply
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "keel.access"]
    assert access, out
    entry = access[0]
    assert entry["path"] == "/healthz" and entry["status"] == 200 and entry["method"] == "GET"
    assert entry["request_id"] == "unix-request-0123456789"
    assert entry["client_ip"] == "203.0.113.7"
    assert {"time", "level", "duration_ms", "bytes"} <= set(entry)
    assert "secret" not in out, "query strings never reach the log"


def test_socket_activation_with_listen_fds(database_url: str, secret_key: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    shim = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'app', 'serve'])"
    )
    import subprocess

    env = _env(database_url, secret_key, KEEL_LISTEN="127.0.0.1:1")  # ignored under activation
    proc = subprocess.Popen(
        [sys.executable, "-c", shim, str(listener.fileno())],
        env=env,
        pass_fds=(listener.fileno(),),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    listener.close()
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc) == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert os.environ.get("LISTEN_FDS") is None
