"""A page's first query sent with its session lookup: one round trip to PostgreSQL, not two.

A signed-in GET looks its session up first (app/web/auth_middleware.py) and only then runs
the page's own queries. Every round trip costs a wait and a wake-up on both sides, about as
much CPU in PostgreSQL as a small query itself. A route may instead name, from its address
alone, the one-row statement its handler runs first (`declare`); the session lookup joins it
to its own query (`sessions.lookup_along`) and keeps the row on the request. The handler asks
for its statement with `take` and gets the kept rows when it is the same statement, or None,
and then runs it itself as before.

A list page's questions are several rows each (the page, the first question of its total, the
user's saved views). Such a route declares a `Batch` instead: its statements go in one
pipeline with the session lookup (`sessions.lookup_with_batch`), and those that read rows
only run when the session is live (`Sent.needs`), so a made-up cookie costs no more than it
did. The handler takes the batch's cursors (`take_batch`) after its checks.

Nothing is decided here: the handler checks the user's permissions before it takes anything,
exactly as it did before it ran the query, so a prefetched row is shown only where the same
row, read a moment later, would have been. The row is this request's (it lives on it and goes
with it), and it is taken once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web

from app.authority import sessions
from app.db.pool import Query

# A statement and its named parameters, compared by value: the handler's and the plan's must
# be equal for the kept row to be used.
Statement = tuple[Query, Mapping[str, Any]]


class Sent(NamedTuple):
    """One statement of a batch, with positional parameters."""

    query: Query
    params: Sequence[Any]
    prepare: bool | None = None
    # What it needs of the session (`sessions.LIVE`, `COLUMN`, `NOTHING`): a statement that
    # reads the company's rows runs only for a live session; one value about the user (their
    # saved views) is a column of the lookup's row, `s.user_id` naming the user; a question to
    # the catalog or the planner (cheap, reads no rows) is sent as it is.
    needs: str = sessions.LIVE


@dataclass(frozen=True, eq=False)
class Batch:
    """A page's statements, and what its planner worked out to name them (`plan`), which the
    handler reuses rather than working it out again."""

    sent: tuple[Sent, ...]
    plan: Any


Planner = Callable[[web.Request], Statement | Batch | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PLANNERS: web.AppKey[dict[Handler, Planner]] = web.AppKey("keel_prefetch_planners")
_KEPT = web.RequestKey("keel_prefetched", tuple)
_KEPT_BATCH = web.RequestKey("keel_prefetched_batch", tuple)
log = logging.getLogger("keel.prefetch")


def declare(app: web.Application, handler: Handler, planner: Planner) -> None:
    """`planner(request)` names the one-row statement `handler` runs first, for a GET of its
    route, with named parameters that do not start with `keel_`; or the `Batch` it runs first.

    It reads only the request's address and the application (never the user, who is not
    known yet) and returns None when it cannot tell."""
    planners = app.get(PLANNERS)
    if planners is None:
        planners = app[PLANNERS] = {}
    planners[handler] = planner


def plan(request: web.Request) -> Statement | Batch | None:
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


def keep_batch(request: web.Request, batch: Batch, results: list[Any] | BaseException) -> None:
    """The batch's cursors and column values, in its order, or the error that stopped it (a
    timeout)."""
    request[_KEPT_BATCH] = (batch, results)


def take_batch(request: web.Request) -> tuple[Any, list[Any]] | None:
    """The planner's `plan` and its statements' cursors and column values, once; None when the
    batch was not sent. A timeout met by the batch is raised here, where the handler would have met it
    running the same statements, after the handler's own checks."""
    kept: tuple[Batch, list[Any] | BaseException] | None = request.pop(_KEPT_BATCH, None)
    if kept is None:
        return None
    batch, results = kept
    if isinstance(results, BaseException):
        raise results
    return batch.plan, results
