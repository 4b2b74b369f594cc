"""A page's first query sent with its session lookup: one round trip to PostgreSQL, not two.

A signed-in GET looks its session up first (app/web/auth_middleware.py) and only then runs
the page's own queries. Every round trip costs a wait and a wake-up on both sides, about as
much CPU in PostgreSQL as a small query itself. A route may instead name, from its address
alone, the one-row statement its handler runs first (`declare`); the session lookup joins it
to its own query (`sessions.lookup_along`) and keeps the row on the request. The handler asks
for its statement with `take` and gets the kept rows when it is the same statement, or None,
and then runs it itself as before.

Nothing is decided here: the handler checks the user's permissions before it takes anything,
exactly as it did before it ran the query, so a prefetched row is shown only where the same
row, read a moment later, would have been. The row is this request's (it lives on it and goes
with it), and it is taken once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from app.db.pool import Query

# A statement and its named parameters, compared by value: the handler's and the plan's must
# be equal for the kept row to be used.
Statement = tuple[Query, Mapping[str, Any]]
Planner = Callable[[web.Request], Statement | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PLANNERS: web.AppKey[dict[Handler, Planner]] = web.AppKey("keel_prefetch_planners")
_KEPT = web.RequestKey("keel_prefetched", tuple)
log = logging.getLogger("keel.prefetch")


def declare(app: web.Application, handler: Handler, planner: Planner) -> None:
    """`planner(request)` names the one-row statement `handler` runs first, for a GET of its
    route, with named parameters that do not start with `keel_`.

    It reads only the request's address and the application (never the user, who is not
    known yet) and returns None when it cannot tell."""
    planners = app.get(PLANNERS)
    if planners is None:
        planners = app[PLANNERS] = {}
    planners[handler] = planner


def plan(request: web.Request) -> Statement | None:
    """What the matched route would run first; None for any other method or route."""
    if request.method != "GET":
        return None
    planners = request.app.get(PLANNERS)
    if not planners:
        return None
    planner = planners.get(request.match_info.handler)
    if planner is None:
        return None
    try:
        return planner(request)
    except Exception:
        # Sending a page's statement early only saves a round trip: a planner that fails
        # must not change what the request gets. The handler runs its query itself.
        log.exception("could not plan the first query of %s", request.path[:200])
        return None


def keep(request: web.Request, statement: Statement, rows: list[Any]) -> None:
    request[_KEPT] = (statement, rows)


def take(request: web.Request, statement: Statement) -> list[Any] | None:
    """The rows `statement` returned with the session lookup, once; None when it was not sent."""
    kept: tuple[Statement, list[Any]] | None = request.pop(_KEPT, None)
    if kept is None or kept[0] != statement:
        return None
    return kept[1]
