"""Health checks of an installation, one result per check (OPS-5)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app import sites
from app.config import Config, ring_problem
from app.db import migrate
from app.db.pool import connect
from app.errors import KeelError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_SERVER = 140000


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def check_secret_key(config: Config) -> Check:
    problem = ring_problem(config)
    if problem:
        return Check("secret key", FAIL, f"{problem}; serve refuses to start without a usable key")
    if len(config.ring) > 1:
        return Check("secret key", OK, f"a ring of {len(config.ring)} keys, each 32+ bytes")
    return Check("secret key", OK, "present, 32+ bytes")


def check_public_url(config: Config) -> Check:
    if not config.public_url:
        return Check("public url", WARN, "public_url is not set; recovery mail cannot carry links")
    if not config.public_url.startswith("https://"):
        return Check("public url", WARN, f"{config.public_url} is not HTTPS; cookies lose Secure")
    return Check("public url", OK, config.public_url)


def check_extraction_dir() -> Check:
    from app.ops.extraction import extraction_root

    root = Path(extraction_root())
    target = root if root.exists() else root.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".keel-doctor-"):
            pass
    except OSError as exc:
        return Check(
            "extraction directory",
            FAIL,
            f"{target} is not writable ({exc.strerror}); set SHIV_ROOT",
        )
    return Check("extraction directory", OK, f"{root} is writable")


# Sessions, locks, tokens and the audit log compare this host's time with the database's.
CLOCK_SKEW_WARN = 2.0
CLOCK_SKEW_FAIL = 60.0


async def check_clock(conn: psycopg.AsyncConnection) -> Check:
    before = time.time()
    cur = await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
    row = await cur.fetchone()
    after = time.time()
    skew = float(row[0]) - (before + after) / 2 if row else 0.0
    shown = f"this host is {abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} the database"
    if abs(skew) >= CLOCK_SKEW_FAIL:
        return Check(
            "clock", FAIL, f"{shown}; sessions and locks expire at the wrong time: fix NTP"
        )
    if abs(skew) >= CLOCK_SKEW_WARN:
        return Check("clock", WARN, f"{shown}; check NTP (timedatectl)")
    return Check("clock", OK, f"agrees with the database (skew {abs(skew) * 1000:.0f} ms)")


# What the demo's first migration created, when an earlier Keel applied it to every database.
LEGACY_DEMO_TABLES = ("bookings", "properties", "technicians", "customers")


def check_site() -> Check:
    """Which site this executable serves: the operator's first question about a new install."""
    try:
        site = sites.active()
    except KeelError as exc:
        return Check("site", FAIL, f"{exc.problem}: {exc.why}")
    if site is None:
        return Check(
            "site",
            WARN,
            "no site: the admin shows Keel's own pages only; declare your tables with "
            "`keel new` and `keel build` (keel docs your-tables)",
        )
    where = "built in" if site.embedded else f"from {site.root}"
    return Check("site", OK, f"{site.name} {site.version} ({where})")


def explain_unknown(unknown: list[str]) -> list[Check]:
    """Applied migrations this executable has no file for, grouped by where they came from."""
    site = sites.active()
    legacy = [v for v in unknown if v.startswith(f"{migrate.LEGACY_DEMO}:")]
    ours = [v for v in unknown if v.split(":")[0] in (migrate.CORE, site.name if site else "")]
    other = sorted({v.split(":")[0] for v in unknown} - {migrate.LEGACY_DEMO, migrate.CORE}
                   - ({site.name} if site else set()))  # fmt: skip
    checks = []
    if legacy:
        checks.append(
            Check(
                "demo tables",
                WARN,
                f"{', '.join(legacy)}: an earlier Keel created its demo tables "
                f"({', '.join(LEGACY_DEMO_TABLES)}) in this database; Keel leaves them alone. "
                "If nothing of yours uses them: "
                f"DROP TABLE {', '.join(LEGACY_DEMO_TABLES)}; "
                "DELETE FROM keel_migrations WHERE version LIKE 'site:%'",
            )
        )
    if ours:
        checks.append(Check("migrations from a newer build", WARN, ", ".join(ours)))
    if other:
        checks.append(
            Check(
                "migrations of another site",
                WARN,
                f"this database has migrations of {', '.join(other)}, and this executable "
                f"serves {site.name if site else 'no site'}: is it the right executable?",
            )
        )
    return checks


async def check_database(config: Config) -> list[Check]:
    try:
        async with connect(config) as conn:
            version = conn.info.server_version
            shown = f"PostgreSQL {version // 10000}.{version % 10000}"
            checks = [
                Check(
                    "database",
                    OK if version >= MIN_SERVER else WARN,
                    f"reachable, {shown}"
                    + ("" if version >= MIN_SERVER else "; Keel needs 14 or newer"),
                )
            ]
            states = await migrate.status(conn)
            checks.append(await check_clock(conn))
    except KeelError as exc:
        return [Check("database", FAIL, f"{exc.problem}: {exc.why}")]
    except psycopg.Error as exc:
        return [Check("database", FAIL, str(exc).strip().splitlines()[0])]
    modified = [s.migration.filename for s in states if s.state == "modified" and s.migration]
    waiting = [s.version for s in states if s.state == "pending"]
    unknown = [s.version for s in states if s.state == "unknown"]
    if modified:
        checks.append(
            Check(
                "migrations", FAIL, f"applied files changed since they ran: {', '.join(modified)}"
            )
        )
    elif waiting:
        checks.append(
            Check(
                "migrations", FAIL, f"{len(waiting)} pending (from {waiting[0]}); run keel migrate"
            )
        )
    else:
        checks.append(
            Check("migrations", OK, f"{len(states) - len(unknown)} applied, none modified")
        )
    if unknown:
        checks.extend(explain_unknown(unknown))
    return checks


# Checks owned by the subsystems that own the tables; imported only when doctor runs, so
# `keel --help` stays fast. They need a reachable database with current migrations.
SUBSYSTEM_CHECKS = (
    "app.authority.setup:doctor_checks",
    "app.admin.setup:doctor_checks",
    "app.audit:doctor_check",
    "app.keyring:doctor_check",
    "app.mail:doctor_checks",
)


def _subsystem_checks() -> list[Callable[[Config], Awaitable[list[Check]]]]:
    import importlib

    found = []
    for spec in SUBSYSTEM_CHECKS:
        module, name = spec.split(":")
        found.append(getattr(importlib.import_module(module), name))
    return found


async def run_checks(
    config: Config, extra: list[Callable[[Config], Awaitable[list[Check]]]] | None = None
) -> list[Check]:
    checks = [
        Check("configuration", OK, f"loaded ({_config_source(config)})"),
        check_secret_key(config),
        check_site(),
        check_public_url(config),
    ]
    database = await check_database(config)
    checks.extend(database)
    if all(c.status != FAIL for c in database):
        for more in _subsystem_checks() if extra is None else extra:
            checks.extend(await more(config))
    else:
        checks.append(
            Check(
                "administrators, declarations, audit, mail", WARN, "not checked: database not ready"
            )
        )
    checks.append(check_extraction_dir())
    return checks


def _config_source(config: Config) -> str:
    files = {v for v in config.sources.values() if v.startswith("file ")}
    return ", ".join(sorted(files)) if files else "defaults and environment"
