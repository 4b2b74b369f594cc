"""The one factory that builds the web application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import ModuleType

from aiohttp import web

from app import mail, sites
from app.admin import routes as admin_routes
from app.admin import setup as admin_setup
from app.authority import setup as authority_setup
from app.config import Config
from app.db import migrate
from app.db.pool import open_pool
from app.errors import KeelError
from app.ops import health
from app.web import (
    account,
    account_tokens,
    flash,
    invite_views,
    keys,
    mfa_views,
    public,
)
from app.web.middleware import MIDDLEWARES, on_prepare
from app.web.render import Renderer
from app.web.static import StaticFiles

log = logging.getLogger("keel.serve")


async def _database(app: web.Application) -> AsyncIterator[None]:
    """Open the pool and refuse to serve an out-of-date schema (DB-5)."""
    config = app[keys.CONFIG]
    async with open_pool(config) as pool:
        app[keys.POOL] = pool
        async with pool.connection() as conn:
            states = await migrate.status(conn, app[health.MIGRATIONS])
            migrate.refuse_modified(states)
            waiting = [s for s in states if s.state == "pending"]
            if waiting:
                raise KeelError(
                    f"{len(waiting)} migration(s) pending, first {waiting[0].migration.filename if waiting[0].migration else waiting[0].version}",
                    why="serving on an older schema than the code expects would fail at random",
                    fix="run `keel migrate` (check with `keel migrate --status`)",
                    retry="keel serve",
                )
            app[keys.SCHEMA_VERSION] = await migrate.schema_version(conn)
        log.info("database ready", extra={"schema": app[keys.SCHEMA_VERSION]})
        yield


# Feature modules, each with setup(app) adding its routes, middleware hooks and contexts.
# Order matters only for middleware hooks and the sidebar; routes do not overlap.
FEATURES: tuple[ModuleType, ...] = (
    authority_setup,
    mail,
    admin_setup,  # catalog and declarations
    admin_routes,  # the admin's route table and sidebar entries
    flash,
    account,
    mfa_views,  # after account: the code step and the set-up page
    account_tokens,  # own API tokens, on the account area
    invite_views,  # invitations: from the users list, and the invitee's page
)


def build_app(config: Config) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=config.max_body_size)
    app[keys.CONFIG] = config
    app.on_response_prepare.append(on_prepare)
    app[health.MIGRATIONS] = migrate.discover()
    site = sites.active()
    static = StaticFiles(site.static_dir if site else None, config.brand_color)
    app[keys.STATIC] = static
    app[keys.RENDERER] = Renderer(config, static.url, site)
    app[keys.RENDERER].env.globals["theme_stylesheets"] = static.theme_stylesheets()
    app.cleanup_ctx.append(_database)
    app.router.add_get("/", public.status_page, name="status")
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/static/{name}", static.handle)
    app.router.add_get("/static/site/{path:.+}", static.handle_site)
    for feature in FEATURES:
        feature.setup(app)
    from app.web import metrics

    metrics.setup(app)  # last: its middleware wraps all the others
    return app
