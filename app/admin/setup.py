"""Admin wiring: load the catalog once the pool is open, validate declarations, add routes (RES-2)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg
from aiohttp import web

from app.admin import joins
from app.admin.listing import cursor_ring_key
from app.admin.registry import site_registry
from app.admin.resources import (
    BoundResource,
    Problem,
    Registry,
    bind,
    display_column_of,
    validate,
)
from app.config import Config
from app.db.catalog import Table, load_catalog
from app.errors import KeelError, NotFound
from app.web import keys

if TYPE_CHECKING:
    from app.ops.doctor import Check

log = logging.getLogger("keel.admin")

ADMIN = web.AppKey("admin", dict[str, BoundResource])  # slug → bound resource, in menu order
REGISTRY = web.AppKey("admin_registry", Registry)  # tests may set it before start-up
WARNINGS = web.AppKey("admin_warnings", list[Problem])
CURSOR_KEY = web.AppKey("admin_cursor_key", bytes)  # HMAC key of list page cursors (LIST-3)
DISPLAYS = web.AppKey("admin_displays", dict[str, str])  # schema.table → column naming its rows
SLUGS = web.AppKey("admin_slugs", dict[str, str])  # schema.table → resource slug, for FK links


async def load_tables(conn: psycopg.AsyncConnection[Any], registry: Registry) -> dict[str, Table]:
    """The declared tables, their inline and join tables, and every table their foreign keys
    point to."""
    names = registry.tables() + [i.table for r in registry for i in r.inlines]
    names += [m.through for r in registry for m in (r.many_to_many or ())]
    catalog = await load_catalog(conn, list(dict.fromkeys(names)))
    # Tables pointing at a declared one may be join tables of a many-to-many (app/admin/m2m.py).
    referrers = [t for t in joins.candidates(catalog.values()) if t not in catalog]
    catalog.update(await load_catalog(conn, referrers))
    targets = {fk.target for t in catalog.values() for fk in t.foreign_keys}
    missing = [t for t in sorted(targets) if t not in catalog]
    catalog.update(await load_catalog(conn, missing))
    return catalog


async def check_declarations(
    conn: psycopg.AsyncConnection[Any], registry: Registry | None = None
) -> tuple[dict[str, BoundResource], list[Problem]]:
    """Bound resources and every RES-2 problem; `keel doctor` calls this too (OPS-5)."""
    registry = site_registry() if registry is None else registry
    catalog = await load_tables(conn, registry)
    return bind(registry, catalog), validate(registry, catalog)


def refuse_errors(problems: list[Problem]) -> None:
    errors = [p for p in problems if p.level == "error"]
    if errors:
        listed = "; ".join(str(p) for p in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise KeelError(
            f"resource declarations do not match the database: {listed}{more}",
            why="every table and column a declaration names must exist in the database",
            fix="correct the site's resources.py, or run `keel migrate` if a migration is pending",
            retry="keel doctor",
        )


async def _admin(app: web.Application) -> AsyncIterator[None]:
    if REGISTRY not in app:
        app[REGISTRY] = site_registry()
    async with app[keys.POOL].connection() as conn:
        bound, problems = await check_declarations(conn, app[REGISTRY])
    refuse_errors(problems)
    for p in problems:
        log.warning("declaration: %s", p)
    app[ADMIN] = bound
    app[WARNINGS] = problems
    app[CURSOR_KEY] = cursor_ring_key(app[keys.CONFIG].ring)
    app[DISPLAYS] = displays_of(bound)
    app[SLUGS] = {b.table.qualified: b.slug for b in bound.values()}
    yield


def displays_of(bound: dict[str, BoundResource]) -> dict[str, str]:
    """`schema.table` → the column that names its rows (declared, else a name-like column)."""
    out: dict[str, str] = {}
    for b in bound.values():
        out[b.table.qualified] = b.display_column
    for b in bound.values():
        for target in b.related.values():
            out.setdefault(target.qualified, display_column_of(target))
    return out


def setup(app: web.Application) -> None:
    """Catalog and declarations at start-up; the routes are added by app.admin.routes."""
    app.cleanup_ctx.append(_admin)


def get_resource(request: web.Request, slug: str | None = None) -> BoundResource:
    """The bound resource named in the path (`{resource}`), or 404."""
    name = slug if slug is not None else request.match_info.get("resource", "")
    bound = request.app[ADMIN].get(name)
    if bound is None:
        raise NotFound(f"there is no resource called {name[:60]!r}")
    return bound


async def doctor_checks(config: Config) -> list[Check]:
    """OPS-5 / RES-2: every declared name exists in this database's catalog."""
    from app.admin.drift import drift_checks
    from app.db.pool import connect
    from app.ops.doctor import FAIL, OK, WARN, Check

    try:
        registry = site_registry()
        async with connect(config) as conn:
            bound, problems = await check_declarations(conn, registry)
            drift = await drift_checks(conn, registry, bound)
    except (KeelError, psycopg.Error) as exc:
        return [Check("declarations", WARN, f"not checked: {str(exc).splitlines()[0][:200]}")]
    errors = [p for p in problems if p.level == "error"]
    checks = [Check("declarations", WARN, f"{p}") for p in problems if p.level != "error"]
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        checks.insert(0, Check("declarations", FAIL, "; ".join(str(p) for p in errors[:3]) + more))
    else:
        checks.insert(0, Check("declarations", OK, f"{len(bound)} resources match the catalog"))
    return checks + drift
