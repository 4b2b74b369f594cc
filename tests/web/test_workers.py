"""`keel serve --workers N`: real processes on one socket, one supervisor speaking sd_notify."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, SmtpServer, free_port, keel_env, notify_until, wait_http


def children(pid: int) -> set[int]:
    """The live child processes of `pid`, from /proc."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry.name))
    return out


def get(url: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def cpu_ticks(pid: int) -> int:
    """User and system CPU time of `pid` so far, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Server:
    def __init__(self, database_url: str, secret_key: str, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The log goes to a file: a pipe nobody reads fills up and blocks the server.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--workers", str(workers)],
            cwd=REPO,
            text=True,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=keel_env(
                DATABASE_URL=database_url,
                # A comma: a key ring, the first key signing (`secret_keys`).
                **{"KEEL_SECRET_KEYS" if "," in secret_key else "KEEL_SECRET_KEY": secret_key},
                KEEL_LISTEN=f"127.0.0.1:{self.port}",
                KEEL_LOG_FORMAT="json",
                **env,
            ),
        )

    def wait_workers(self, count: int = 2, timeout: float = 60) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            kids = children(self.proc.pid)
            if len(kids) == count and get(self.url + "/healthz") == 200:
                return kids
            time.sleep(0.1)
        raise AssertionError(f"{count} workers did not come up")

    def output(self) -> str:
        """What the server wrote so far (each log line is flushed as it is written)."""
        if self.log.closed:
            return ""
        # Read in place: the server's processes write at the file offset they share with
        # self.log, so seeking it while they run would make their next lines overwrite the
        # start of the log.
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 30) -> None:
        """Until `text` has been logged `count` times."""
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} not logged {count} times"
            time.sleep(0.01)

    def stop(self) -> str:
        """Stop (if still running); what it wrote (the log and any errors)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.output()
        self.log.close()
        return text


def test_two_workers_ready_watchdog_and_stop(
    database_url: str, secret_key: str, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    server = Server(database_url, secret_key, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    try:
        first = notify_until(sock, "READY=1")
        ready = next(m for m in first if "READY=1" in m)
        # READY comes from the supervisor, once both workers listen and have their pools.
        assert f"MAINPID={server.proc.pid}" in ready
        assert "2 of 2 workers ready" in ready
        kids = server.wait_workers(2)
        assert server.proc.pid not in kids
        assert all(get(server.url + "/healthz") == 200 for _ in range(20))
        notify_until(sock, "WATCHDOG=1", limit=5)
        # Workers never talk to systemd themselves: every datagram came from the supervisor.
        server.proc.send_signal(signal.SIGTERM)
        notify_until(sock, "STOPPING=1")
        assert server.proc.wait(timeout=60) == 0
    finally:
        err = server.stop()
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if "with 2 workers" in x)
    assert "memory per worker" in line and "MiB" in line and "pss_total_mib" in line


def test_a_killed_worker_comes_back_while_requests_succeed(
    database_url: str, secret_key: str, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    server = Server(database_url, secret_key, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    try:
        notify_until(sock, "READY=1")
        before = server.wait_workers(2)
        victim = min(before)

        async def scenario() -> tuple[int, int, list[str]]:
            # Steady load from 4 clients, a new connection per request, all along: before the
            # kill, while one worker is gone and while its replacement starts.
            stop = asyncio.Event()
            load = asyncio.create_task(steady_load(server.url + "/healthz", stop, clients=4))
            await asyncio.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = children(server.proc.pid)
                if len(now) == 2 and victim not in now:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("no new worker replaced the killed one")
            await asyncio.to_thread(notify_until, sock, "2 of 2 workers ready", 30)
            await asyncio.sleep(0.5)
            stop.set()
            return await load

        ok, failed, reasons = asyncio.run(scenario())
        assert failed == 0 and ok > 40, (ok, failed, reasons)
        assert (min(before) not in children(server.proc.pid)) and server.proc.poll() is None
    finally:
        err = server.stop()
    assert server.proc.returncode == 0
    assert "exited with signal 9; starting a new one" in err


def test_watchdog_stops_while_a_worker_is_stuck(
    database_url: str, secret_key: str, notify_socket: tuple[socket.socket, str]
) -> None:
    """WATCHDOG=1 reaches systemd only while every worker pings: a frozen worker (SIGSTOP, like
    a wedged event loop) stops it, so systemd's watchdog restarts the service."""
    sock, path = notify_socket
    server = Server(database_url, secret_key, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    try:
        notify_until(sock, "READY=1")
        notify_until(sock, "WATCHDOG=1", limit=5)
        victim = min(server.wait_workers(2))
        os.kill(victim, signal.SIGSTOP)
        try:
            time.sleep(6)  # past the supervisor's 5 s of silence
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                while True:
                    sock.recv(4096)  # what was sent before the worker counted as stuck
            sock.settimeout(3)
            with pytest.raises(TimeoutError):
                while True:
                    assert "WATCHDOG=1" not in sock.recv(4096).decode()
        finally:
            os.kill(victim, signal.SIGCONT)
        sock.settimeout(10)
        notify_until(sock, "WATCHDOG=1", limit=10)
    finally:
        server.stop()


def test_sigterm_drains_both_workers_with_requests_in_flight(
    database_url: str, secret_key: str
) -> None:
    in_flight = 24
    # A pool as large as the requests: each one waits on the lock where the test can see it.
    # Opened in full at start: a pool grows one connection at a time, and on a slow machine
    # that growth ate much of READY_TIMEOUT (below).
    server = Server(
        database_url, secret_key, KEEL_POOL_MIN=str(in_flight), KEEL_POOL_MAX=str(in_flight)
    )
    results: list[int] = []
    lock = threading.Lock()
    try:
        server.wait_workers(2)

        def slow() -> None:
            status = get(server.url + "/readyz", timeout=30)
            with lock:
                results.append(status)

        with (
            psycopg.connect(database_url, autocommit=False) as locker,
            # pg_stat_activity is a snapshot taken once per transaction: the pool connections the
            # workers open after the lock would never show in the locker's. Each of the watcher's
            # queries is its own transaction and sees them.
            psycopg.connect(database_url, autocommit=True) as watcher,
        ):
            # Readiness reads keel_migrations: while this lock is held, requests stay in flight.
            locker.execute("LOCK TABLE keel_migrations IN ACCESS EXCLUSIVE MODE")
            # Each request opens its own connection, and SO_REUSEPORT hashes each connection to
            # a worker: with 24 of them, one worker getting all is a 1-in-4-million chance.
            # No pause between them: /readyz gives up on the database READY_TIMEOUT (2 s) after
            # it starts (app/ops/health.py), and everything from here to the answers after the
            # rollback must fit in that, on a slow machine too.
            threads = [threading.Thread(target=slow) for _ in range(in_flight)]
            for t in threads:
                t.start()
            workers_busy: set[str] = set()
            waiting = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rows = watcher.execute(
                    "SELECT a.application_name, count(*) FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.relation = 'keel_migrations'::regclass AND NOT l.granted"
                    " GROUP BY 1"
                ).fetchall()
                workers_busy = {r[0] for r in rows}
                waiting = sum(r[1] for r in rows)
                if waiting == in_flight:  # every request is in a worker
                    break
                time.sleep(0.02)
            assert waiting == in_flight, f"only {waiting} requests reached the workers"
            server.proc.send_signal(signal.SIGTERM)
            # Both workers have the signal while their requests wait: waited for, not slept on
            # (a fixed pause long enough for a slow machine would eat READY_TIMEOUT).
            server.wait_log("stopping: finishing requests in flight", count=2, timeout=10)
            assert server.proc.poll() is None, "the workers must wait for their requests"
            locker.rollback()
        for t in threads:
            t.join(timeout=30)
        assert server.proc.wait(timeout=30) == 0
    finally:
        err = server.stop()
    assert results == [200] * in_flight, (results, err[-2000:])
    assert workers_busy == {"keel/0", "keel/1"}, "both workers must have held requests"


async def steady_load(
    url: str, stop: asyncio.Event, clients: int = 8
) -> tuple[int, int, list[str]]:
    """`clients` loops of requests until `stop`; (succeeded, failed, a few failure reasons)."""
    import aiohttp

    ok = failed = 0
    reasons: list[str] = []
    timeout = aiohttp.ClientTimeout(total=30)

    async def client() -> None:
        nonlocal ok, failed
        # A connection per request, like nginx without upstream keep-alive: every request is
        # a new connection that the kernel queues on the socket for whichever process accepts.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            while not stop.is_set():
                try:
                    async with s.get(url) as resp:
                        await resp.read()
                        if resp.status == 200:
                            ok += 1
                        else:
                            failed += 1
                            reasons.append(f"status {resp.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failed += 1
                    reasons.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return ok, failed, reasons[:5]


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(f"{name}{{{want}}}" if labels else name) + r" (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


async def _hammer(url: str, count: int, concurrency: int = 8) -> list[int]:
    import aiohttp

    statuses: list[int] = []
    queue = list(range(count))

    async def client() -> None:
        # A connection per request, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=20),
        ) as s:
            while queue:
                queue.pop()
                try:
                    async with s.get(url) as resp:
                        await resp.read()
                        statuses.append(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses.append(-1)
                    print("failed:", type(exc).__name__, exc)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


async def _wrong_sign_ins(base: str, count: int) -> None:
    import aiohttp

    for _ in range(count):
        connector = aiohttp.TCPConnector(force_close=True)
        jar = aiohttp.CookieJar(unsafe=True)  # keeps the pre-session cookie of 127.0.0.1
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as s:
            async with s.get(base + "/login") as resp:
                token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', await resp.text())
            assert token
            form = {"email": "nobody@example.com", "password": "wrong", "csrf_token": token[1]}
            async with s.post(base + "/login", data=form, headers={"Origin": base}) as resp:
                assert resp.status == 401


def test_metrics_add_up_across_two_workers(database_url: str, secret_key: str) -> None:
    server = Server(database_url, secret_key)
    try:
        server.wait_workers(2)
        base = server.url
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            before = resp.read().decode()
        sent = 300
        statuses = asyncio.run(_hammer(base + "/healthz", sent))
        assert statuses == [200] * sent
        missing = asyncio.run(_hammer(base + "/no/such/page-4711", 5, concurrency=1))
        assert missing == [404] * 5
        asyncio.run(_wrong_sign_ins(base, 3))  # whichever workers answer them
        for pk in (4711, 4712, 4713):  # records: one label, the route's template
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", f"/admin/bookings/{pk}/")  # signed out: sent to sign in
            assert conn.getresponse().status in (302, 303)
            conn.close()
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.stop()
    healthz = _metric(text, "keel_http_requests_total", route="/healthz", status_class="2xx")
    earlier = _metric(before, "keel_http_requests_total", route="/healthz", status_class="2xx")
    assert healthz - earlier == sent
    assert (
        _metric(
            text,
            "keel_http_request_duration_seconds_bucket",
            route="/healthz",
            status_class="2xx",
            le="+Inf",
        )
        == healthz
    )
    # Unknown paths share one label: a scanner cannot grow the label set.
    assert _metric(text, "keel_http_requests_total", route="unmatched", status_class="4xx") == 5
    assert "page-4711" not in text
    record = re.search(
        r'^keel_http_requests_total\{route="(/admin/\{[^"]+\}/\{[^"]+\}/)",status_class="3xx"\} (\d+)$',
        text,
        re.M,
    )
    assert record and record.group(2) == "3", text[:3000]
    assert not re.search(r"\{[^}]*47(11|12|13)", text)  # no raw paths, no ids in labels
    assert _metric(text, "keel_http_requests_in_flight") == 1  # the scrape itself
    for name in ("keel_db_pool_used", "keel_db_pool_waiting", "keel_db_pool_timeouts_total"):
        assert re.search(rf"^{name} \d+(\.\d+)?$", text, re.M), name
    assert _metric(text, "keel_signins_total", result="failed") == 3
    assert _metric(text, "keel_signins_total", result="succeeded") == 0
    assert _metric(text, "keel_signins_total", result="locked") == 0
    assert re.search(r"^keel_sessions_active \d+$", text, re.M)
    assert re.search(r"^keel_mail_outbox_oldest_age_seconds \d+(\.\d+)?$", text, re.M)
    assert re.search(r"^keel_audit_rows \d+$", text, re.M)
    assert _metric(text, "keel_audit_verified_id") == _metric(text, "keel_audit_rows") > 0
    assert _metric(text, "keel_workers") == 2
    assert _metric(text, "keel_db_pool_size") >= 2  # both workers' pools
    assert _metric(text, "keel_database_up") == 1
    assert 'keel_signins_total{result="succeeded"}' in text
    assert _metric(text, "keel_mail_outbox_depth") == 0
    assert 'keel_build_info{version="' in text and 'site="demo"' in text
    assert _metric(text, "keel_audit_chain_ok") == 1


def test_metrics_refused_outside_metrics_allow(database_url: str, secret_key: str) -> None:
    server = Server(database_url, secret_key, workers=1, KEEL_METRICS_ALLOW="127.0.0.1/32")
    try:
        assert wait_http(server.url + "/healthz", timeout=60, proc=server.proc) == 200
        conn = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=10, source_address=("127.0.0.2", 0)
        )
        conn.request("GET", "/metrics")
        refused = conn.getresponse()
        body = refused.read().decode()
        conn.close()
        assert get(server.url + "/metrics") == 200
    finally:
        server.stop()
    assert refused.status == 403
    assert "keel_http_requests_total" not in body


def test_each_queued_mail_is_delivered_once_by_two_workers(
    database_url: str, secret_key: str, smtp: SmtpServer
) -> None:
    from app.mail.outbox import enqueue

    count = 60

    async def queue() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            async with conn.transaction():
                for i in range(count):
                    await enqueue(
                        conn,
                        to=f"user{i}@example.com",
                        template="test",
                        context={
                            "when": datetime.now(UTC),
                            "operator": "test",
                            "site_name": "Keel",
                        },
                    )

    asyncio.run(queue())
    server = Server(
        database_url,
        secret_key,
        KEEL_SMTP_HOST=smtp.host,
        KEEL_SMTP_PORT=str(smtp.port),
        KEEL_SMTP_TLS="none",
        KEEL_MAIL_FROM="Keel <keel@example.com>",
    )
    try:
        server.wait_workers(2)
        deadline = time.monotonic() + 60
        with psycopg.connect(database_url) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FROM keel_outbox"
                ).fetchone()
                assert row is not None
                if row[0] == count:
                    break
                time.sleep(0.2)
            time.sleep(2.5)  # one more poll of every worker: nothing is sent twice later
    finally:
        server.stop()
    recipients = sorted(str(m["To"]) for m in smtp.handler.messages)
    assert len(recipients) == count, len(recipients)
    assert len(set(recipients)) == count


def test_two_workers_sweep_together_and_each_row_goes_once(
    database_url: str, secret_key: str
) -> None:
    """Every worker sweeps when it starts (SESS-9). Both are held at the recovery tokens until
    both wait there, then delete the same expired rows at once: SKIP LOCKED gives each row to
    one of them, nothing fails, and what they report adds up to what there was."""
    expired = 3000
    with psycopg.connect(database_url, autocommit=True) as db:
        row = db.execute(
            "INSERT INTO keel_users (email, role, full_name) VALUES ('swept@example.com',"
            " 'staff', 'Swept') RETURNING id"
        ).fetchone()
        assert row is not None
        uid = row[0]
        db.execute(
            "INSERT INTO keel_sessions (token_hash, user_id, created_at, last_seen_at, expires_at)"
            " SELECT sha256(('s' || i)::bytea), %s, now() - interval '2 days',"
            " now() - interval '2 days', now() - interval '1 day'"
            " FROM generate_series(1, %s) i",
            (uid, expired),
        )
        db.execute(
            "INSERT INTO keel_sessions (token_hash, user_id, created_at, last_seen_at, expires_at)"
            " VALUES (sha256('live'::bytea), %s, now(), now(), now() + interval '1 hour')",
            (uid,),
        )
        db.execute(
            "INSERT INTO keel_recovery_tokens (token_hash, user_id, kind, created_at, expires_at)"
            " SELECT sha256(('t' || i)::bytea), %s, 'reset', now() - interval '9 days',"
            " now() - interval '8 days' FROM generate_series(0, %s) i",
            (uid, expired),
        )
        # Token 0 expired yesterday: within the week's grace, it stays.
        db.execute(
            "UPDATE keel_recovery_tokens SET expires_at = now() - interval '1 day'"
            " WHERE token_hash = sha256('t0'::bytea)"
        )
    with (
        psycopg.connect(database_url) as locker,
        # Its own transactions: pg_stat_activity is a snapshot per transaction.
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        # Taken before the server starts: each worker sweeps as soon as it starts.
        locker.execute("LOCK TABLE keel_recovery_tokens IN ACCESS EXCLUSIVE MODE")
        server = Server(database_url, secret_key)
        try:
            server.wait_workers(2)
            waiting: set[str] = set()
            deadline = time.monotonic() + 30
            while waiting != {"keel/0", "keel/1"} and time.monotonic() < deadline:
                time.sleep(0.1)
                rows = watcher.execute(
                    "SELECT DISTINCT a.application_name FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.relation = 'keel_recovery_tokens'::regclass AND NOT l.granted"
                ).fetchall()
                waiting = {r[0] for r in rows}
            assert waiting == {"keel/0", "keel/1"}, "both workers' sweeps must be waiting"
            locker.rollback()
            deadline = time.monotonic() + 30
            left = None
            while left != (1, 1) and time.monotonic() < deadline:
                time.sleep(0.1)
                left = locker.execute(
                    "SELECT (SELECT count(*) FROM keel_sessions WHERE user_id = %(u)s),"
                    " (SELECT count(*) FROM keel_recovery_tokens WHERE user_id = %(u)s)",
                    {"u": uid},
                ).fetchone()
                locker.rollback()
            assert left == (1, 1)
            live = locker.execute(
                "SELECT (SELECT token_hash = sha256('live'::bytea) FROM keel_sessions"
                " WHERE user_id = %(u)s), (SELECT token_hash = sha256('t0'::bytea)"
                " FROM keel_recovery_tokens WHERE user_id = %(u)s)",
                {"u": uid},
            ).fetchone()
            assert live == (True, True)
        finally:
            locker.rollback()  # a failed check must not keep the sweeps waiting on the lock
            log = server.stop()
    assert "sweep failed" not in log and "Traceback" not in log, log[-3000:]
    swept = [json.loads(line) for line in log.splitlines() if '"swept ' in line]
    assert sum(line["sessions"] for line in swept) == expired
    assert sum(line["tokens"] for line in swept) == expired


def test_workers_setting_is_validated(database_url: str, secret_key: str) -> None:
    from tests.helpers import keel

    env = keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key)
    bad = keel("serve", "--workers", "many", env=env)
    assert bad.returncode == 2 and "workers" in bad.stderr and "from 0 to 64" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert keel("serve", "--workers", "65", env=env).returncode == 2


def test_auto_workers_follow_the_usable_cpus() -> None:
    from app.config import MAX_AUTO_WORKERS, Config, load_config, worker_count

    assert worker_count(Config(workers=3)) == 3
    assert load_config(env={"KEEL_WORKERS": "auto"}).workers == 0
    assert worker_count(Config()) == min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
