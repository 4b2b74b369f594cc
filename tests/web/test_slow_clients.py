"""Half-sent requests cannot exhaust the server or flood its log (OPS-1, SEC-3).

One anonymous client opens 600 connections to a real `keel serve` limited to 512 file
descriptors, sends part of a request head on each and stops. Another client must still be
served at once, the half-sent connections must be closed after `http_header_timeout`, and the
log must stay small. Everything stays on loopback: the attacker is 127.0.0.2.
"""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, keel_env, wait_http

ATTACK = 600
NOFILE = 512


def _half_sent(port: int) -> socket.socket | None:
    sock = socket.socket()
    sock.settimeout(5)
    try:
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Waiting: ")
    except OSError:
        sock.close()
        return None
    return sock


def _closed_by_server(sock: socket.socket, wait: float = 0.5) -> bool:
    """True when the server has closed this connection (EOF, a reset or a short answer)
    within `wait` seconds; `wait=0`: by now."""
    sock.settimeout(wait)
    try:
        while sock.recv(4096):
            pass
        return True
    except (TimeoutError, BlockingIOError):  # the latter: nothing yet, with wait=0
        return False
    except OSError:
        return True


def _serve(port: int, log_path: Path, **settings: str) -> subprocess.Popen[bytes]:
    env = keel_env(KEEL_LISTEN=f"127.0.0.1:{port}", KEEL_LOG_FORMAT="json", **settings)
    with log_path.open("wb") as log:  # a file, not a pipe: a flood must not block the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    # Set from outside, at once: the server has not opened its listening socket yet.
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    return proc


def _get(url: str) -> int:
    """Status of a GET on a new connection; a quick 503 counts as an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("cap", ["per_client", "total"])
def test_half_sent_requests_are_cut_off_and_others_still_served(
    database_url: str, secret_key: str, tmp_path: Path, cap: str
) -> None:
    """`per_client`: the attacker's address reaches its own cap and everyone else is served.
    `total`: without that cap it fills the server's, which answers 503 at once instead of
    running out of descriptors, and serves again once the header timeout has passed."""
    port = free_port()
    log_path = tmp_path / "keel.log"
    settings = {"KEEL_HTTP_MAX_CONNECTIONS_PER_CLIENT": "100000"} if cap == "total" else {}
    proc = _serve(
        port, log_path, DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key,
        KEEL_HTTP_HEADER_TIMEOUT="3s", **settings,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    attack: list[socket.socket] = []
    try:
        wait_http(base + "/healthz", proc=proc)
        started = time.monotonic()
        for _ in range(ATTACK):
            sock = _half_sent(port)
            if sock is not None:
                attack.append(sock)
        assert time.monotonic() - started < 30
        # While the attacker holds what it could, someone else is served at once.
        t0 = time.monotonic()
        # (Under the total cap that may be a 503, but at once, never a hang.)
        assert _get(base + "/healthz") in ((200,) if cap == "per_client" else (200, 503))
        # Past the total cap asyncio may pause accepting for a second (descriptors ran out).
        assert time.monotonic() - t0 < (2 if cap == "per_client" else 4)
        # The half-sent connections are closed once the header timeout has passed.
        time.sleep(3.5)
        still_open = [s for s in attack if not _closed_by_server(s)]
        assert not still_open, f"{len(still_open)} of {len(attack)} half-sent connections open"
        t0 = time.monotonic()
        assert _get(base + "/healthz") == 200
        assert time.monotonic() - t0 < 2
    finally:
        for sock in attack:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log_text[-2000:]
    assert "Traceback" not in log_text, log_text[-3000:]
    assert len(log_text) < 20_000, f"{len(log_text)} bytes of log: {log_text[:3000]}"
    # Connections being refused still take a descriptor for a moment, so a flood past the
    # total cap may briefly exhaust them: then one line per interval, never one per accept.
    assert log_text.count("no file descriptors left") <= (0 if cap == "per_client" else 2)
    limit = "from that address, the limit" if cap == "per_client" else "open, the limit"
    assert limit in log_text, log_text


def test_withheld_bodies_and_idle_connections_are_closed(
    database_url: str, secret_key: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "keel.log"
    proc = _serve(
        port, log_path, DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key,
        KEEL_HTTP_BODY_TIMEOUT="2s", KEEL_HTTP_KEEPALIVE_TIMEOUT="3s",
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        # A head that promises 1000 bytes of form, then 10 of them.
        withheld = socket.create_connection(("127.0.0.1", port), timeout=5)
        withheld.sendall(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nemail=a%40b"
        )
        # One complete request, kept alive, then nothing; and one that half-sends its second.
        idle, half = (
            socket.create_connection(("127.0.0.1", port), timeout=5),
            socket.create_connection(("127.0.0.1", port), timeout=5),
        )
        for sock in (idle, half):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Waiting: ")
        time.sleep(1)
        # All three as they are now: waiting half a second on each in turn looked at them up
        # to 2.5 s in, half a second before their 2 s and 3 s: too close on a slow machine.
        assert not any(_closed_by_server(s, wait=0) for s in (withheld, idle, half)), (
            "closed too early"
        )
        time.sleep(3)
        for name, sock in (("withheld body", withheld), ("idle", idle), ("half", half)):
            # Closed by the 2 s and 3 s set here; left alone, the defaults are 60 s and 75 s.
            assert _closed_by_server(sock, wait=5), name
            sock.close()
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log_text[-2000:]
    assert "Traceback" not in log_text, log_text[-3000:]
    assert "the request body did not arrive within 2s" in log_text
