"""Migration runner: numbered SQL (Keel's, then the site's), one transaction each, checksums, a lock."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg

from app import sites
from app.db.sqlsplit import split_sql
from app.errors import KeelError

# Keel's own schema is the source "core"; a site's migrations are recorded under its name.
CORE = "core"
# An earlier Keel applied the demo's tables to every database as `site:0001`; such rows are
# left alone (never rolled back or re-applied) and `keel doctor` explains them.
LEGACY_DEMO = "site"
Source = tuple[str, Traversable]
LOCK_KEY = 0x6B65656C_6D696772  # "keelmigr": one advisory lock per database
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS keel_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    source: str
    number: int
    name: str
    sql: str

    @property
    def version(self) -> str:
        return f"{self.source}:{self.number:04d}"

    @property
    def filename(self) -> str:
        return f"{self.source}/{self.number:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    migration: Migration | None
    version: str
    state: str  # applied | pending | modified | unknown (applied, file missing)
    applied_at: str = ""


def core_source() -> Source:
    return (CORE, resources.files("app.db") / "migrations")


def sources_for(site: sites.Site | None) -> list[Source]:
    """Keel's migrations first, then the site's (the site's tables may refer to Keel's)."""
    out = [core_source()]
    if site is not None:
        out.append((site.name, site.migrations_dir))
    return out


def discover(sources: Sequence[Source] | None = None) -> list[Migration]:
    """Every migration in application order (Keel's, then the active site's); malformed
    names are errors."""
    found: list[Migration] = []
    for source, root in sources_for(sites.active()) if sources is None else sources:
        seen: dict[int, str] = {}
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            m = _NAME.match(entry.name)
            if not m:
                raise KeelError(
                    f"migration file {source}/{entry.name} has a malformed name",
                    why="migrations are ordered by a four-digit number",
                    fix="rename it like 0007_add_invoices.sql (lowercase, digits, underscores)",
                )
            number = int(m.group(1))
            if number in seen:
                raise KeelError(
                    f"two {source} migrations share number {number:04d}: {seen[number]} and {entry.name}",
                    fix="renumber the newer one",
                )
            seen[number] = entry.name
            found.append(Migration(source, number, m.group(2), entry.read_text(encoding="utf-8")))
    return found


async def _applied(conn: psycopg.AsyncConnection) -> dict[str, tuple[str, str]]:
    exists = await (
        await conn.execute("SELECT to_regclass('keel_migrations') IS NOT NULL")
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    cur = await conn.execute(
        "SELECT version, checksum, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS') FROM keel_migrations"
    )
    return {v: (c, at) for v, c, at in await cur.fetchall()}


async def status(
    conn: psycopg.AsyncConnection, migrations: list[Migration] | None = None
) -> list[Status]:
    migrations = discover() if migrations is None else migrations
    applied = await _applied(conn)
    out = []
    for m in migrations:
        if m.version not in applied:
            out.append(Status(m, m.version, "pending"))
        elif applied[m.version][0] != m.checksum:
            out.append(Status(m, m.version, "modified", applied[m.version][1]))
        else:
            out.append(Status(m, m.version, "applied", applied[m.version][1]))
    known = {m.version for m in migrations}
    out.extend(
        Status(None, v, "unknown", at) for v, (_c, at) in sorted(applied.items()) if v not in known
    )
    return out


def refuse_modified(states: list[Status]) -> None:
    modified = [s for s in states if s.state == "modified"]
    if modified:
        names = ", ".join(s.migration.filename for s in modified if s.migration)
        raise KeelError(
            f"applied migration changed since it ran: {names}",
            why="migration history is append-only; an edited file no longer describes the schema",
            fix="restore the original file and put the change in a new, higher-numbered migration",
        )


async def pending(
    conn: psycopg.AsyncConnection, migrations: list[Migration] | None = None
) -> list[Migration]:
    states = await status(conn, migrations)
    refuse_modified(states)
    return [s.migration for s in states if s.state == "pending" and s.migration]


async def schema_version(conn: psycopg.AsyncConnection) -> str:
    """The newest applied version per source, Keel's first, e.g. 'core:0007 acme:0002'."""
    applied = await _applied(conn)
    latest: dict[str, str] = {}
    for version in sorted(applied):
        latest[version.split(":")[0]] = version
    order = sorted(latest, key=lambda source: (source != CORE, source))
    return " ".join(latest[s] for s in order) or "empty"


def os_actor() -> str:
    """`user@host` of the operator (CLI-5); under sudo, the person behind it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != user:
        return f"{sudo_user}@{socket.gethostname()} (as {user})"
    return f"{user}@{socket.gethostname()}"


async def _run_one(conn: psycopg.AsyncConnection, m: Migration) -> None:
    statements = split_sql(m.sql)
    async with conn.transaction():
        for st in statements:
            try:
                await conn.execute(st.text.encode(), prepare=False)
            except psycopg.Error as exc:
                line = st.line
                pos = getattr(exc.diag, "statement_position", None)
                if pos and pos.isdigit():
                    line += st.text.count("\n", 0, int(pos) - 1)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise MigrationFailed(m, line, first) from None
        await conn.execute(
            "INSERT INTO keel_migrations (version, name, checksum, applied_by) VALUES (%s, %s, %s, %s)",
            (m.version, m.name, m.checksum, os_actor()),
        )


class MigrationFailed(KeelError):
    def __init__(self, m: Migration, line: int, message: str) -> None:
        self.location = f"{m.filename}:{line}"
        super().__init__(
            f"migration {m.filename} failed at line {line}: {message}",
            why="the migration was rolled back completely; nothing of it is applied",
            fix=f"correct {self.location}, or the data it trips over",
            retry="keel migrate",
        )


async def migrate(
    conn: psycopg.AsyncConnection,
    *,
    progress: Callable[[str], None] = lambda _msg: None,
    migrations: list[Migration] | None = None,
) -> list[Migration]:
    """Apply every pending migration under the advisory lock; returns what was applied.

    `conn` must be in autocommit mode: each file gets its own transaction and the lock is
    held by the session, so two hosts migrating at once serialise."""
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
    if not row or not row[0]:
        progress("another `keel migrate` is running; waiting for it to finish…")
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        await conn.execute("SET statement_timeout = 0")
        await conn.execute(BOOTSTRAP)
        todo = await pending(conn, migrations)
        for m in todo:
            progress(f"applying {m.filename}")
            await _run_one(conn, m)
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def plan_text(todo: list[Migration]) -> str:
    parts = []
    for m in todo:
        parts.append(
            f"-- {m.filename} (checksum {m.checksum[:12]})\nBEGIN;\n{m.sql.rstrip()}\nCOMMIT;\n"
        )
    return "\n".join(parts)


async def adopt_legacy_demo(conn: psycopg.AsyncConnection, site: sites.Site) -> int:
    """Re-label the demo tables an earlier Keel recorded as `site:NNNN` as the demo site's.

    Only for the demo's own database (`keel demo`), and only rows whose checksum is the
    demo file's: the tables are there already, so the migration must not run again."""
    exists = await (
        await conn.execute("SELECT to_regclass('keel_migrations') IS NOT NULL")
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    renamed = 0
    for m in discover([(site.name, site.migrations_dir)]):
        cur = await conn.execute(
            "UPDATE keel_migrations SET version = %s WHERE version = %s AND checksum = %s",
            (m.version, f"{LEGACY_DEMO}:{m.number:04d}", m.checksum),
        )
        renamed += cur.rowcount
    return renamed


async def legacy_demo_tables(conn: psycopg.AsyncConnection) -> list[str]:
    """Versions applied by an earlier Keel's built-in demo (`site:NNNN`), if any."""
    applied = await _applied(conn)
    return sorted(v for v in applied if v.startswith(f"{LEGACY_DEMO}:"))
