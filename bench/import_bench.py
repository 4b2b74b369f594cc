"""CSV import speed: 100,000 rows through `keel import … --apply` (EDIT-10 figure for docs/benchmarks.md).

    .venv/bin/python bench/import_bench.py [--rows 100000]

Starts a throwaway PostgreSQL (app/devdb.py, fsync on: an import is a real write), migrates
with the demo site (its `customers` table: an identity key, a unique email, two trigram GIN
indexes and two b-tree indexes to maintain), writes a CSV of `--rows` new customers, then
times, as separate processes, end to end (Python start-up included):

1. `keel import customers FILE` — the preview: every row checked, nothing written;
2. `keel import customers FILE --apply` — every row added (all or nothing, one transaction);
3. the same people, each in another city — every row matches by the natural key (email) and
   is updated.

Each apply checks the whole file first, then streams it into PostgreSQL with COPY and writes it
with one UPDATE and one INSERT … SELECT, and records one `import_applied` event.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import sites  # noqa: E402
from app.db import migrate  # noqa: E402
from app.devdb import LocalPostgres  # noqa: E402
from tests.helpers import keel_env  # noqa: E402

CITIES = ("Lyon", "Oslo", "Porto", "Graz", "Tromsø")


def write_csv(path: Path, rows: int, shift: int = 0) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Name", "Email", "City"])
        for i in range(rows):
            w.writerow(
                [f"Imported Customer {i}", f"import{i}@example.org", CITIES[(i + shift) % 5]]
            )


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args],
        check=False,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"keel {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"  {proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ''}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-import-bench-") as tmp:
        Path(tmp).chmod(0o755)
        pg = LocalPostgres(Path(tmp) / "pg")
        pg.start()
        try:
            with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
                c.execute("CREATE DATABASE keel_bench")
            url = pg.url("keel_bench")
            site = sites.demo_site()
            sites.activate(site)

            async def prepare() -> None:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await migrate.migrate(conn)

            asyncio.run(prepare())
            data = Path(tmp) / "customers.csv"
            write_csv(data, opts.rows)
            moved = Path(tmp) / "customers-moved.csv"  # the same people, each in another city
            write_csv(moved, opts.rows, shift=1)
            size = data.stat().st_size / (1 << 20)
            env = keel_env(
                DATABASE_URL=url,
                KEEL_SECRET_KEY=secrets.token_urlsafe(32),
                KEEL_SITE_DIR=str(site.root),
                NO_COLOR="1",
            )
            print(f"{opts.rows:,} rows, {size:.1f} MiB, {os.cpu_count()} CPUs")
            results = {
                "preview": timed(["import", "customers", str(data)], env),
                "apply (insert)": timed(["import", "customers", str(data), "--apply"], env),
                "apply (update)": timed(["import", "customers", str(moved), "--apply"], env),
            }
            with psycopg.connect(url, autocommit=True) as c:
                found = c.execute("SELECT count(*) FROM customers").fetchone()
            assert found is not None and found[0] == opts.rows, found
            for name, seconds in results.items():
                print(f"{name:16} {seconds:6.1f} s   {opts.rows / seconds:,.0f} rows/s")
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
