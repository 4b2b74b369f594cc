"""Sign-in throughput, latency and peak memory of one `keel serve` (LOGIN-5 figures for the README).

    .venv/bin/python bench/login_bench.py [--sequential 20] [--duration 15] [--concurrency 4]

Starts a throwaway PostgreSQL (app/devdb.py), migrates, creates 50 users through the users
service, starts `python -m app serve`, then measures:

1. sequential sign-ins: median and p95 latency of `POST /login` (one Argon2id verify each);
2. throughput: `--concurrency` clients signing in for `--duration` seconds → sign-ins/second;
3. a burst of 50 sign-ins at once: their median latency and the server's peak RSS (VmHWM).

Every request comes from a distinct X-Forwarded-For address through a trusted proxy, so the
per-IP limit (LOGIN-3, 30/minute) measures nothing here; successful sign-ins reset the
per-account counter (LOGIN-2). Each POST carries the pre-session CSRF cookie and token.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import audit  # noqa: E402
from app.authority import users  # noqa: E402
from app.authority.passwords import Hasher  # noqa: E402
from app.db import migrate  # noqa: E402
from app.devdb import LocalPostgres  # noqa: E402
from tests.helpers import free_port, keel_env, wait_http  # noqa: E402

PASSWORD = "benchmark passphrase 2024"
USERS = 50  # the burst signs in 50 different accounts: one account's sign-ins in flight are
# capped by its throttle (at most 5 password checks at a time, LOGIN-2)
_emails = itertools.cycle([f"bench{i}@example.com" for i in range(USERS)])
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
_ips = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))


async def prepare(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate.migrate(conn)
        hasher = Hasher(max_in_flight=1)
        try:
            password_hash = await hasher.hash(PASSWORD)
        finally:
            hasher.close()
        ctx = audit.Context(audit_key=audit.derive_key("bench"), os_actor="bench@localhost")
        for i in range(USERS):  # one hash for all: they share the password
            await users.create(
                conn, ctx, None, email=f"bench{i}@example.com", role="staff",
                password_hash=password_hash, via="cli",
            )  # fmt: skip


async def form(session: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    async with session.get(base + "/login") as resp:
        token = _TOKEN.search(await resp.text())
        cookie = resp.cookies["keel_csrf"].value
    assert token
    return cookie, token.group(1)


async def login(session: aiohttp.ClientSession, base: str, cookie: str, token: str) -> float:
    started = time.perf_counter()
    async with session.post(
        base + "/login",
        data={"email": next(_emails), "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"keel_csrf={cookie}", "X-Forwarded-For": next(_ips)},
        allow_redirects=False,
    ) as resp:
        await resp.read()
        if resp.status != 303:
            raise RuntimeError(f"sign-in answered {resp.status}")
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(base: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    jar = aiohttp.DummyCookieJar()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=conn) as s:
        cookie, token = await form(s, base)
        await login(s, base, cookie, token)  # warm up: the dummy hash, the pool
        idle = rss_mib(pid)
        seq = [await login(s, base, cookie, token) for _ in range(args.sequential)]
        done = 0
        deadline = time.perf_counter() + args.duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await login(s, base, cookie, token)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate = done / (time.perf_counter() - started)
        burst = await asyncio.gather(*(login(s, base, cookie, token) for _ in range(50)))
    return {
        "idle_rss_mib": idle,
        "sequential_median_ms": statistics.median(seq) * 1000,
        "sequential_p95_ms": sorted(seq)[int(len(seq) * 0.95) - 1] * 1000,
        "logins_per_second": rate,
        "burst50_median_ms": statistics.median(burst) * 1000,
        "burst50_max_ms": max(burst) * 1000,
        "peak_rss_mib": peak_rss_mib(pid),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-login-bench-") as tmp:
        Path(tmp).chmod(0o755)
        pg = LocalPostgres(Path(tmp) / "pg", fast=True)
        pg.start()
        server = None
        try:
            with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
                c.execute("CREATE DATABASE keel_bench")
            url = pg.url("keel_bench")
            asyncio.run(prepare(url))
            port = free_port()
            env = keel_env(
                DATABASE_URL=url,
                KEEL_SECRET_KEY=secrets.token_urlsafe(32),
                KEEL_LISTEN=f"127.0.0.1:{port}",
                KEEL_TRUSTED_PROXIES="127.0.0.1/32",
                KEEL_LOG_LEVEL="warning",
            )
            server = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz", timeout=60, proc=server)
            figures = asyncio.run(measure(base, server.pid, args))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            pg.stop()
    for name, value in figures.items():
        print(f"{name:>22}: {value:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
