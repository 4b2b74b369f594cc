"""The demo: a local PostgreSQL, migrations, demo data and the server on one machine (OPS-8)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from app import audit, sites
from app.authority.users import DEMO_ADMIN_EMAIL, ensure_demo_admin
from app.cli.common import out_from, run_async
from app.cli.output import Out
from app.config import Config, load_config
from app.db import migrate
from app.db.migrate import os_actor
from app.db.pool import connect
from app.demo.data import console_progress, seed_demo
from app.devdb import LocalPostgres
from app.ops.logging import setup_logging
from app.web.server import serve

DEMO_DB = "keel"


def _secret_key(data_dir: Path) -> str:
    """Kept in the data directory so the audit chain stays verifiable across demo runs."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


async def _prepare(
    pg: LocalPostgres, config: Config, out: Out, *, size: str, reset_admin: bool
) -> None:
    conn = await psycopg.AsyncConnection.connect(pg.url(), autocommit=True)
    async with conn:
        exists = await (
            await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,))
        ).fetchone()
        if not exists:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    async with connect(config) as db:
        site = sites.active()
        if site is not None and await migrate.adopt_legacy_demo(db, site):
            out.ok("demo tables from an earlier Keel adopted (kept as they are)")
        applied = await migrate.migrate(db, progress=out.line)
        out.ok(
            f"database ready ({len(applied)} migration(s) applied, schema {await migrate.schema_version(db)})"
        )
        loaded = await seed_demo(db, size=size, progress=console_progress(out.stream))
        if any(loaded.values()):
            out.ok("demo data loaded: " + ", ".join(f"{n:,} {t}" for t, n in loaded.items()))
        else:
            out.ok("demo data already present (kept)")
        ctx = audit.Context(
            audit_key=audit.derive_key(config.secret_key), os_actor=f"{os_actor()} (keel demo)"
        )
        created = await ensure_demo_admin(db, ctx, fresh_password=reset_admin)
        if created:
            email, password = created
            out.result(f"✓ administrator {email}, one-time password: {password}")
            out.line("  (shown once; you choose your own password at first sign-in)")
        else:
            out.line(
                f"  sign in as {DEMO_ADMIN_EMAIL}; forgot the password? keel demo --reset-admin"
            )


def run_demo(args: argparse.Namespace) -> int:
    out = out_from(args)
    # The demo is a site like any other, served only here: a plain `keel migrate` elsewhere
    # never creates its tables.
    sites.activate(sites.demo_site())
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = LocalPostgres(data_dir / "postgres")
    out.line(f"Starting PostgreSQL in {pg.root} …")
    pg.start()
    try:
        out.ok(f"PostgreSQL running on 127.0.0.1:{pg.port}")
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KEEL_DATABASE_URL")
        }
        config = load_config(
            config_path=getattr(args, "config", None),
            env=env,
            flags={
                "database_url": pg.url(DEMO_DB),
                "listen": args.listen,
                "public_url": f"http://{args.listen}",
                "secret_key": _secret_key(data_dir),
            },
        ).with_values(demo=True)
        run_async(_prepare(pg, config, out, size=args.size, reset_admin=args.reset_admin))
        if args.no_serve:
            out.result(pg.url(DEMO_DB))
            return 0
        setup_logging("text", config.log_level)
        out.line(f"Keel demo on http://{args.listen}  (Ctrl-C stops the server and PostgreSQL)")
        run_async(serve(config))
        return 0
    finally:
        pg.stop()
        out.ok("PostgreSQL stopped")
