"""Foundation figures for the README: artifact size, cold and warm start, idle RSS of `serve`.

Usage: .venv/bin/python bench/foundation.py [--artifact dist/keel] [--runs 15]
Starts its own throwaway PostgreSQL; builds dist/keel first if it is missing.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.devdb import LocalPostgres, free_port  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", default=str(ROOT / "dist" / "keel"))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    artifact = Path(args.artifact)
    if not artifact.exists():
        subprocess.run([sys.executable, str(ROOT / "build.py")], check=True)
    work = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    work.chmod(0o755)
    host = work / "hostpy"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(host)], check=True)
    env = {"PATH": f"{host / 'bin'}:/usr/bin:/bin", "HOME": str(work)}

    cold = []
    for i in range(max(3, args.runs // 3)):
        cold.append(timed([str(artifact), "version"], {**env, "SHIV_ROOT": str(work / f"cold{i}")}))
    warm_env = {**env, "SHIV_ROOT": str(work / "warm")}
    timed([str(artifact), "version"], warm_env)
    warm = [timed([str(artifact), "version"], warm_env) for _ in range(args.runs)]

    pg = LocalPostgres(work / "pg", fast=True)
    pg.start()
    try:
        import psycopg

        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE keel")
        serve_env = {
            **warm_env,
            "DATABASE_URL": pg.url("keel"),
            "KEEL_SECRET_KEY": secrets.token_urlsafe(32),
        }
        subprocess.run([str(artifact), "migrate"], env=serve_env, check=True, capture_output=True)
        port = free_port()
        proc = subprocess.Popen(
            [str(artifact), "serve", "--listen", f"127.0.0.1:{port}"],
            env=serve_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(20):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        time.sleep(2)
        idle = rss_mib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    size = artifact.stat().st_size
    print(f"| artifact size | {size / 1048576:.1f} MiB ({size:,} bytes) |")
    print(
        f"| cold start, `keel version` (extraction) | {statistics.median(cold):.0f} ms (median of {len(cold)}) |"
    )
    print(
        f"| warm start, `keel version` | {statistics.median(warm):.0f} ms (median of {len(warm)}) |"
    )
    print(f"| idle RSS of `keel serve` | {idle:.0f} MiB |")


if __name__ == "__main__":
    main()
