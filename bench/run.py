"""The admin benchmark (BASELINE.md S1–S7): throwaway Postgres, seed.sql, dist/keel, wrk.

Usage: .venv/bin/python bench/run.py [--seed PATH] [--duration 15] [--skip-build] [--only S1,S5]
       .venv/bin/python bench/run.py --floor [--workers 1,2] [--rounds 2]   (side by side)
Writes bench/results/latest.json and bench/results/latest.md (with --floor: floor.json and
floor.md). Needs `wrk` and `psql`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.devdb import LocalPostgres, free_port  # noqa: E402

SEED = ROOT / "bench" / "floor" / "seed.sql"  # a copy of the shared bench/seed.sql
FLOOR = ROOT / "bench" / "floor" / "server.py"
RESULTS = ROOT / "bench" / "results"
# The bookings and customers tables are the demo site's (app/demo/site, migrations demo:NNNN).
DEMO_SITE = ROOT / "app" / "demo" / "site"
SITE_MIGRATION = DEMO_SITE / "migrations" / "0001_service_desk.sql"
# This process reads the declarations too (S2's cursor is made with the app's own code).
os.environ.setdefault("KEEL_SITE_DIR", str(DEMO_SITE))
SEARCH_EMAIL = "richard.adams.4242@example.org"
PASSWORD = "bench kettle plum 4711"
EMAIL = "bench-admin@example.com"
# BASELINE.md: Django admin 5.2 (gunicorn, 2 sync workers) and the targets for one Keel process.
DJANGO = {
    "S1": "10.7 req/s, p99 950 ms",
    "S2": "1.13 req/s, p99 7208 ms",
    "S3": "0.93 req/s, p99 9019 ms",
    "S4": "13.5 req/s, p99 918 ms",
    "S5": "0.13 req/s (115 with raw_id_fields)",
    "S6": "7.3 logins/s",
    "S7": "124 → 202 MiB (3 processes)",
}
TARGETS = {
    "S1": (370, 45),
    "S2": (350, 45),
    "S3": (200, 60),
    "S4": (325, 50),
    "S5": (1000, 15),
}
LUA = """
wrk.headers["Cookie"] = "{cookie}"
wrk.headers["Accept"] = "text/html"
"""


def site_indexes() -> list[str]:
    """The site migration's extra indexes on the two seeded tables (seed.sql drops them)."""
    text = SITE_MIGRATION.read_text()
    out = []
    for m in re.finditer(r"CREATE INDEX (\w+)\s+ON (customers|bookings)\b([^;]*);", text):
        out.append(f"CREATE INDEX IF NOT EXISTS {m.group(1)} ON {m.group(2)}{m.group(3)}")
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def step(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def prepare_database(pg: LocalPostgres, seed: Path, env: dict[str, str], artifact: Path) -> None:
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE keel")
    subprocess.run([str(artifact), "migrate"], env=env, check=True, capture_output=True)
    step("loading seed.sql (1.1 M rows)…")
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    subprocess.run(
        [psql, "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.url("keel"), "-f", str(seed)],
        check=True,
        capture_output=True,
    )
    step("re-creating the site's extra indexes…")
    with psycopg.connect(pg.url("keel"), autocommit=True) as conn:
        for statement in site_indexes():
            conn.execute(statement)
        conn.execute("VACUUM ANALYZE customers")
        conn.execute("VACUUM ANALYZE bookings")


def create_admin(env: dict[str, str], artifact: Path) -> None:
    """Through the users CLI, as an operator would (`keel user create … --password-stdin`)."""
    subprocess.run(
        [str(artifact), "user", "create", "--email", EMAIL, "--role", "administrator",
         "--password-stdin"],
        env=env, input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip


BURST = 50


def burst_email(i: int) -> str:
    return f"bench-burst-{i}@example.com"


def create_burst_accounts(url: str) -> None:
    """S6's 50 concurrent sign-ins are 50 people: staff accounts with the administrator's
    password, its Argon2id hash copied (computing it 50 times would only slow the set-up)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO keel_users (email, role, is_active, password_hash, password_changed_at,"
            " full_name) SELECT e, 'staff', true, u.password_hash, now(), 'Burst ' || e"
            " FROM keel_users u, unnest(%s::text[]) AS e WHERE u.email = %s",
            ([burst_email(i) for i in range(BURST)], EMAIL),
        )


async def login(base: str) -> str:
    """GET /login for the CSRF token, POST the credentials; returns the session cookie."""
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/login") as resp:
            html = await resp.text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token, "no csrf_token on /login"
        data = {"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)}
        async with http.post(f"{base}/login", data=data, allow_redirects=False) as resp:
            assert resp.status == 303, f"login failed: {resp.status}"
        for cookie in http.cookie_jar:
            if cookie.key.endswith("keel_session"):
                return f"{cookie.key}={cookie.value}"
    raise AssertionError("no session cookie after login")


async def deep_cursor(url: str, secret_key: str) -> str:
    """A cursor whose page starts at row 500,000 of the S1 ordering (S2)."""
    import psycopg

    from app.admin.listing import cursor_key, encode_cursor, parse_query
    from app.admin.setup import check_declarations

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        bound, _ = await check_declarations(conn)
        b = bound["bookings"]
        cur = await conn.execute(
            "SELECT scheduled_at, id FROM bookings ORDER BY scheduled_at DESC, id DESC"
            " OFFSET 499998 LIMIT 1"
        )
        at, row_id = await cur.fetchone()  # type: ignore[misc]
        lq = parse_query(b, {})
        return encode_cursor(cursor_key(secret_key), b, lq, "n", {"scheduled_at": at, "id": row_id})


def wrk(url: str, cookie: str, duration: int, work: Path) -> dict[str, Any]:
    script = work / "cookie.lua"
    script.write_text(LUA.format(cookie=cookie))
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(pct("50"), 2),
        "p99_ms": round(pct("99"), 2),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


class LoginRefused(AssertionError):
    """A benchmark login that did not sign in: S6 would measure refusals, not Argon2."""


async def sign_in_once(http: Any, base: str, email: str = EMAIL) -> float:
    """GET /login, POST the credentials; the POST's seconds. Raises LoginRefused unless the
    answer is 303 with a session cookie (a verified password: Argon2id ran)."""
    async with http.get(f"{base}/login") as resp:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    if token is None:
        raise LoginRefused("no csrf_token on /login")
    data = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    started = time.perf_counter()
    async with http.post(f"{base}/login", data=data, allow_redirects=False) as resp:
        await resp.read()
        signed_in = resp.status == 303 and any(
            name.endswith("keel_session") and morsel.value for name, morsel in resp.cookies.items()
        )
        status = resp.status
    if not signed_in:
        raise LoginRefused(f"POST /login answered {status} without a session cookie")
    return time.perf_counter() - started


async def logins_per_second(base: str, duration: float) -> dict[str, Any]:
    """S6: sequential GET /login + POST credentials, as fast as one client can. Only signed-in
    answers count; any refusal (429 from LOGIN-3, a lock) stops the scenario loudly."""
    import aiohttp

    count, posts = 0, []
    ends = time.monotonic() + duration
    started = time.monotonic()
    while time.monotonic() < ends:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            posts.append(await sign_in_once(http, base) * 1000)
            count += 1
    elapsed = time.monotonic() - started
    return {
        "logins_per_s": round(count / elapsed, 2),
        "logins": count,
        "post_p50_ms": round(statistics.median(posts), 1),
    }


def check(url: str, cookie: str) -> int:
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        return int(resp.status)


async def burst_logins(base: str, n: int = BURST) -> tuple[float, float]:
    """50 concurrent logins of 50 accounts, each verifying its password (Argon2id at full
    cost): seconds until all are answered, and the median POST. Every one must sign in
    (LoginRefused otherwise). One account would not do: LOGIN-2 lets at most 5 attempts on an
    account verify at once and answers the others as locked."""
    import aiohttp

    started = time.perf_counter()

    async def one(i: int) -> float:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            return await sign_in_once(http, base, burst_email(i))

    posts = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started, statistics.median(posts)


def s6_burst(base: str, s1_url: str, cookie: str, work: Path) -> dict[str, Any]:
    """S1 under wrk while a burst of 50 concurrent logins runs (S6's second half)."""
    import threading

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(wrk(s1_url, cookie, 12, work)))
    thread.start()
    time.sleep(2)
    try:
        seconds, post_p50 = asyncio.run(burst_logins(base))
    finally:
        thread.join()
    result["burst_seconds"], result["burst_post_p50_ms"] = round(seconds, 1), round(post_p50 * 1000)
    result["burst_logins"] = 50
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| id | what | Keel (1 process) | target | Django admin 5.2 |",
        "|---|---|---:|---|---|",
    ]
    names = {
        "S1": "bookings list, first page",
        "S2": "page starting at row 500,000",
        "S3": "search for one customer's email",
        "S4": "filter status = cancelled",
        "S5": "edit form of booking 123456",
    }
    for sid, what in names.items():
        r = results.get(sid)
        if not r or "rps" not in r:
            shown = r.get("error", "not run") if r else "not run"
        else:
            shown = f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
            if r.get("errors"):
                shown += f" ({r['errors']} non-2xx)"
        rps, p99 = TARGETS[sid]
        lines.append(
            f"| {sid} | {what} | {shown} | ≥ {rps} req/s, p99 ≤ {p99} ms | {DJANGO[sid]} |"
        )
    s6 = results.get("S6", {})
    burst = results.get("S6_burst", {})
    if s6.get("error"):
        shown6 = f"FAILED: {s6['error']}"
    else:
        shown6 = (
            f"{s6.get('logins_per_s', '—')} logins/s (POST p50 {s6.get('post_p50_ms', '—')} ms);"
            f" S1 p99 {burst.get('p99_ms', '—')} ms while 50 concurrent logins all signed in"
            f" in {burst.get('burst_seconds', '—')} s"
        )
    lines.append(
        f"| S6 | login, sequential | {shown6} | ≥ 7 logins/s; S1 p99 ≤ 150 ms | {DJANGO['S6']} |"
    )
    s7 = results.get("S7", {})
    lines.append(
        f"| S7 | resident memory | idle {s7.get('idle_mib', '—')} MiB → after "
        f"{s7.get('after_mib', '—')} MiB | ≤ 70 → ≤ 150 MiB | {DJANGO['S7']} |"
    )
    load = " ".join(results.get("load_average_before", []))
    lines.append("")
    lines.append(
        f"Run {results.get('date')}, {results.get('cpus')} CPUs, load average before: {load}."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", default=str(SEED), help="seed.sql (default: %(default)s)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per scenario")
    parser.add_argument("--skip-build", action="store_true", help="use the existing dist/keel")
    parser.add_argument("--only", default="", help="comma list of scenarios, e.g. S1,S3")
    parser.add_argument(
        "--floor", action="store_true", help="Keel and the floor server side by side, interleaved"
    )
    parser.add_argument("--workers", default="1,2", help="with --floor: process counts to compare")
    parser.add_argument("--rounds", type=int, default=1, help="with --floor: runs per scenario")
    args = parser.parse_args()
    if args.floor:
        from bench.compare import compare

        compare(args)
        return
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    artifact = ROOT / "dist" / "keel"
    if not args.skip_build or not artifact.exists():
        step("building dist/keel…")
        subprocess.run([sys.executable, str(ROOT / "build.py")], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    work.chmod(0o755)
    pg = LocalPostgres(work / "pg", fast=True)
    pg.start()
    proc: subprocess.Popen[bytes] | None = None
    failed = ""
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "duration_s": args.duration,
        # Other processes compete for the CPU: a busy machine makes every figure meaningless.
        "load_average_before": Path("/proc/loadavg").read_text().split()[:3],
        "cpus": os.cpu_count(),
    }
    try:
        secret = secrets.token_urlsafe(32)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "SHIV_ROOT": str(work / "shiv"),
            "DATABASE_URL": pg.url("keel"),
            "KEEL_SECRET_KEY": secret,
            "KEEL_PUBLIC_URL": base,
            "KEEL_LOG_FORMAT": "json",
            "KEEL_SITE_DIR": str(DEMO_SITE),
            "KEEL_WORKERS": "1",
            # Benchmark only: S6 signs in hundreds of times from one address, which LOGIN-3's
            # per-IP limit (30 a minute) would answer with 429 instead of verifying passwords.
            "KEEL_LOGIN_IP_LIMIT": "100000",
        }
        prepare_database(pg, Path(args.seed), env, artifact)
        create_admin(env, artifact)
        create_burst_accounts(pg.url("keel"))
        step(f"starting keel serve on {base}")
        log = (work / "serve.log").open("wb")
        proc = subprocess.Popen(
            [str(artifact), "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        cookie = asyncio.run(login(base))
        time.sleep(2)
        results["S7"] = {"idle_mib": round(rss_mib(proc.pid), 1)}
        cursor = asyncio.run(deep_cursor(pg.url("keel"), secret))
        from urllib.parse import quote

        urls = {
            "S1": f"{base}/admin/bookings/",
            "S2": f"{base}/admin/bookings/?cursor={cursor}",
            "S3": f"{base}/admin/bookings/?q={quote(SEARCH_EMAIL)}",
            "S4": f"{base}/admin/bookings/?status=cancelled",
            "S5": f"{base}/admin/bookings/123456/",
        }
        for sid, url in urls.items():
            if only and sid not in only:
                continue
            try:
                status = check(url, cookie)
                step(f"{sid}: warm-up answered {status}; wrk {args.duration}s…")
                results[sid] = wrk(url, cookie, args.duration, work)
            except (urllib.error.URLError, subprocess.CalledProcessError, AssertionError) as exc:
                results[sid] = {"error": str(exc)[:200]}
            step(f"{sid}: {results[sid]}")
        if not only or "S6" in only:
            try:
                step("S6: sequential logins…")
                results["S6"] = asyncio.run(logins_per_second(base, args.duration))
                step(f"S6: {results['S6']}")
                step("S6: S1 during a burst of 50 concurrent logins…")
                results["S6_burst"] = s6_burst(base, urls["S1"], cookie, work)
                step(f"S6 burst: {results['S6_burst']}")
            except LoginRefused as exc:
                failed = f"S6: a login was refused ({exc}); the figures would not measure Argon2id"
                results.setdefault("S6", {})["error"] = failed
                step(f"FAILED {failed}")
        results["S7"]["after_mib"] = round(rss_mib(proc.pid), 1)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    print(markdown(results))
    if failed:
        sys.exit(f"[bench] {failed}")


if __name__ == "__main__":
    main()
