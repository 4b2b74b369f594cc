"""Authority wiring for `serve`: one password hasher per app, default groups on first start (AUTHZ-6, LOGIN-5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import psycopg
from aiohttp import web

from app import audit
from app.authority.groups import ensure_default_groups, grant_resource_defaults
from app.authority.passwords import PRODUCTION, Cost, Hasher, Policy
from app.config import Config
from app.db.migrate import os_actor
from app.errors import KeelError
from app.web import keys

if TYPE_CHECKING:
    from app.ops.doctor import Check

log = logging.getLogger("keel.authority")

# The app's one hasher (bounded thread pool, LOGIN-5) and the policy built from the config.
HASHER = web.AppKey("keel_hasher", Hasher)
POLICY = web.AppKey("keel_password_policy", Policy)
# For the test suite only: cheaper Argon2 parameters for an app whose sign-ins are not about
# hashing. No setting, environment variable or flag reaches it and nothing in app/ sets it; the
# test harness puts it on the app after build_app() (docs/decisions.md, 2026-12-04).
TEST_HASHER_COST = web.AppKey("keel_test_hasher_cost", Cost)


async def _authority(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    cost = app.get(TEST_HASHER_COST, PRODUCTION)
    if cost != PRODUCTION:
        log.warning("password hashing uses test parameters %s: never in production", cost)
    hasher = Hasher(
        time_cost=cost.time_cost, memory_cost=cost.memory_cost, parallelism=cost.parallelism
    )
    app[HASHER] = hasher
    try:
        # Runs after the database context (build_app appends it first), so the pool is open.
        ctx = audit.Context(
            audit_key=audit.derive_key(config.secret_key), os_actor=f"{os_actor()} (keel serve)"
        )
        async with app[keys.POOL].connection() as conn:
            if await ensure_default_groups(conn, ctx):
                log.info("created the default groups administrator, editor and viewer")
            for slug, group, perms in await grant_resource_defaults(conn, ctx):
                log.info("default access to %s for group %s: %s", slug, group, ", ".join(perms))
        yield
    finally:
        hasher.close()


def setup(app: web.Application) -> None:
    app[POLICY] = Policy.from_config(app[keys.CONFIG])
    app.cleanup_ctx.append(_authority)


async def doctor_checks(config: Config) -> list[Check]:
    """OPS-5: somebody must be able to administer the installation (AUTHZ-3's orphan guard
    keeps the last one, but a fresh database starts with none)."""
    from app.authority.users import count_active
    from app.db.pool import connect
    from app.ops.doctor import FAIL, OK, WARN, Check

    try:
        async with connect(config) as conn:
            admins = await count_active(conn, "administrator")
            developers = await count_active(conn, "developer")
    except (KeelError, psycopg.Error) as exc:
        return [Check("administrators", WARN, f"not checked: {str(exc).splitlines()[0][:200]}")]
    if admins + developers == 0:
        return [
            Check(
                "administrators",
                FAIL,
                "no active administrator: nobody can manage users;"
                " run keel user create --email E --role administrator",
            )
        ]
    return [
        Check("administrators", OK, f"{admins} active administrator(s), {developers} developer(s)")
    ]
