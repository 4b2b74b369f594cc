"""`GET /metrics` in the Prometheus text format, summed over every worker.

Request counts, latencies, in-flight requests and pool figures live in one anonymous shared
memory block made before the workers fork: one slot per worker, written only by that worker,
read by whichever worker answers the scrape. Labels are route templates (the resource's
canonical path, never the raw path) and status classes, fixed when the app is built, so the
block has a fixed layout and the label set is bounded. Facts that live in the database (the
mail outbox, sessions, the audit chain) are read from it at scrape time, so every worker and
every host reports the same; sign-ins are counted as they are answered, like requests. See docs/decisions.md, "Metrics".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from app.web import keys
from app.web.requestinfo import client_ip_and_scheme, in_networks

log = logging.getLogger("keel.metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
UNMATCHED = "unmatched"  # 404s and 405s that matched no route: one label, not their paths
CELL = 2 + len(BOUNDS) + 1  # count, sum of seconds, one counter per bucket (+Inf last)
# Per-worker figures after the request cells.
IN_FLIGHT, POOL_SIZE, POOL_AVAILABLE, POOL_WAITING, POOL_MAX, POOL_TIMEOUTS = range(6)
# Sign-in form posts answered, by result: counters of this server's workers, like the
# requests, not counts of the audit log (which every host would report, and which a scrape
# would have to count again as it grows).
SIGNINS = {"succeeded": 6, "failed": 7, "locked": 8}
GAUGES = 9
POOL_EVERY = 1.0  # seconds between pool figure updates
DB_TIMEOUT = 2.0
VERIFY_EVERY = 60.0  # the audit head check runs at most this often per worker


class Board:
    """The shared block: `slots` rows of route × class cells, then the per-worker gauges."""

    def __init__(self, routes: list[str], slots: int) -> None:
        self.routes = tuple(routes)
        self.route_index = {r: i for i, r in enumerate(self.routes)}
        self.unmatched = self.route_index[UNMATCHED]
        self.gauges_at = len(self.routes) * len(CLASSES) * CELL
        self.per_slot = self.gauges_at + GAUGES
        self.slots = slots
        # Anonymous and MAP_SHARED: forked workers write the very same pages.
        self.memory = mmap.mmap(-1, 8 * self.per_slot * slots)
        self.values = memoryview(self.memory).cast("d")

    def slot(self, index: int) -> Slot:
        return Slot(self, index)

    def total(self, offset: int) -> float:
        """One cell (or gauge) summed over every worker's slot."""
        v, step = self.values, self.per_slot
        return sum(v[offset + i * step] for i in range(self.slots))


class Slot:
    """One worker's row of the board."""

    def __init__(self, board: Board, index: int) -> None:
        self.board, self.values = board, board.values
        self.base = index * board.per_slot
        self.gauges = self.base + board.gauges_at
        self.values[self.gauges + IN_FLIGHT] = 0  # a restarted worker has nothing in flight
        # Counters continue from what the previous worker in this slot counted.
        self.timeouts_before = self.values[self.gauges + POOL_TIMEOUTS]

    def observe(self, route: str, status: int, seconds: float) -> None:
        board = self.board
        r = board.route_index.get(route, board.unmatched)
        c = min(max(status // 100, 1), 5) - 1
        at = self.base + (r * len(CLASSES) + c) * CELL
        v = self.values
        v[at] += 1
        v[at + 1] += seconds
        v[at + 2 + bisect_left(BOUNDS, seconds)] += 1

    def gauge(self, which: int, value: float) -> None:
        self.values[self.gauges + which] = value

    def add(self, which: int, delta: float) -> None:
        self.values[self.gauges + which] += delta


class State:
    """This process's place on the board (module state: set before and after the fork)."""

    board: Board | None = None
    slot_index = 0
    slot: Slot | None = None


def count_signin(result: str) -> None:
    """One sign-in form post answered: "succeeded", "failed" or "locked"."""
    slot = State.slot
    if slot is not None:
        slot.add(SIGNINS[result], 1)


def routes_of(app: web.Application) -> list[str]:
    """The label values for `route`: every route template, plus one for unmatched paths."""
    names = {resource.canonical for resource in app.router.resources()}
    return [*sorted(names), UNMATCHED]


def share_across(routes: list[str], slots: int) -> None:
    """In the supervisor, before the fork: one block for every worker."""
    State.board = Board(routes, slots)


def use_slot(index: int) -> None:
    """In a worker, after the fork: which row of the block is its own."""
    State.slot_index = index


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: counts every request the application sees, error pages and refusals
    included. Connections the cap turns away and requests aiohttp's parser refuses are answered
    before any handler and are not counted (`keel.connections` logs the first)."""
    slot = State.slot
    if slot is None:
        return await handler(request)
    started = time.perf_counter()
    slot.add(IN_FLIGHT, 1)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        slot.add(IN_FLIGHT, -1)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        slot.observe(route, status, time.perf_counter() - started)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Attach this process to its slot, then keep its pool figures fresh."""
    routes = routes_of(app)
    if State.board is None:
        State.board = Board(routes, 1)  # a single process: a block of one slot
    elif list(State.board.routes) != routes:
        log.warning("routes differ from the supervisor's: unknown ones count as unmatched")
    slot = State.slot = State.board.slot(State.slot_index)
    task = asyncio.create_task(_pool_figures(app, slot), name="keel-metrics-pool")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        State.slot = None


async def _pool_figures(app: web.Application, slot: Slot) -> None:
    while True:
        update_pool(app, slot)
        await asyncio.sleep(POOL_EVERY)


def update_pool(app: web.Application, slot: Slot) -> None:
    pool = app.get(keys.POOL)
    if pool is None:
        return
    stats = pool.get_stats()
    slot.gauge(POOL_SIZE, stats.get("pool_size", 0))
    slot.gauge(POOL_AVAILABLE, stats.get("pool_available", 0))
    slot.gauge(POOL_WAITING, stats.get("requests_waiting", 0))
    slot.gauge(POOL_MAX, stats.get("pool_max", 0))
    # requests_errors: waits that timed out or found the queue full, since this pool opened.
    slot.gauge(POOL_TIMEOUTS, slot.timeouts_before + stats.get("requests_errors", 0))


# ---- the scrape ---------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_num(value)}")
        else:
            self.lines.append(f"{name} {_num(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _requests(board: Board, out: Text) -> None:
    cells = []
    for r, route in enumerate(board.routes):
        for c, klass in enumerate(CLASSES):
            at = (r * len(CLASSES) + c) * CELL
            count = board.total(at)
            if count:
                cells.append((route, klass, at, count))
    out.family("keel_http_requests_total", "counter", "Requests answered, by route and status.")
    for route, klass, _at, count in cells:
        out.sample("keel_http_requests_total", count, route=route, status_class=klass)
    out.family(
        "keel_http_request_duration_seconds", "histogram", "Time to answer, by route and status."
    )
    for route, klass, at, count in cells:
        running = 0.0
        for b, bound in enumerate((*BOUNDS, float("inf"))):
            running += board.total(at + 2 + b)
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.sample(
                "keel_http_request_duration_seconds_bucket",
                running,
                route=route,
                status_class=klass,
                le=le,
            )
        out.sample(
            "keel_http_request_duration_seconds_sum",
            board.total(at + 1),
            route=route,
            status_class=klass,
        )
        out.sample(
            "keel_http_request_duration_seconds_count", count, route=route, status_class=klass
        )
    g = board.gauges_at
    out.one("keel_http_requests_in_flight", "gauge", "Requests being answered now.", board.total(g))
    out.one("keel_workers", "gauge", "Worker processes configured.", board.slots)
    size, available = board.total(g + POOL_SIZE), board.total(g + POOL_AVAILABLE)
    out.one("keel_db_pool_size", "gauge", "Open pooled connections, all workers.", size)
    out.one("keel_db_pool_used", "gauge", "Pooled connections lent to requests.", size - available)
    out.one(
        "keel_db_pool_max", "gauge", "Most pooled connections, all workers.", board.total(g + 4)
    )
    out.one(
        "keel_db_pool_waiting",
        "gauge",
        "Requests waiting for a connection.",
        board.total(g + POOL_WAITING),
    )
    out.one(
        "keel_db_pool_timeouts_total",
        "counter",
        "Requests that got no connection in time (answered 503).",
        board.total(g + POOL_TIMEOUTS),
    )
    out.family("keel_signins_total", "counter", "Sign-in form posts answered, by result.")
    for result, which in SIGNINS.items():
        out.sample("keel_signins_total", board.total(g + which), result=result)


_DB_FACTS = """
SELECT (SELECT count(*) FROM keel_outbox WHERE status IN ('pending', 'sending')),
       (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
          FROM keel_outbox WHERE status IN ('pending', 'sending')),
       (SELECT count(*) FROM keel_sessions WHERE revoked_at IS NULL AND expires_at > now()),
       (SELECT coalesce(max(id), 0) FROM keel_audit)
"""


class _Verified:
    """The audit head check, remembered between scrapes (it reads up to 1,000 rows)."""

    at = 0.0
    ok: bool | None = None
    last_id = 0


async def _database(app: web.Application, out: Text) -> None:
    from app import audit

    config = app[keys.CONFIG]
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            async with app[keys.POOL].connection(timeout=DB_TIMEOUT) as conn:
                row = await (await conn.execute(_DB_FACTS)).fetchone()
                now = time.monotonic()
                if config.secret_key and (
                    _Verified.ok is None or now - _Verified.at > VERIFY_EVERY
                ):
                    result = await audit.verify(
                        conn, audit.ring_keys(config.ring), last=audit.DOCTOR_ROWS
                    )
                    _Verified.at, _Verified.ok = now, result.ok
                    _Verified.last_id = int(result.head_id or 0) if result.ok else 0
    except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
        log.warning("metrics: the database did not answer: %s", type(exc).__name__)
        out.one("keel_database_up", "gauge", "Whether the database answered this scrape.", 0)
        return
    assert row is not None
    outbox, oldest, sessions, audit_rows = row
    out.one("keel_database_up", "gauge", "Whether the database answered this scrape.", 1)
    out.one("keel_mail_outbox_depth", "gauge", "Mail waiting to be sent.", outbox)
    out.one(
        "keel_mail_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest mail waiting (0 when none).",
        float(oldest),
    )
    out.one("keel_sessions_active", "gauge", "Sessions not revoked nor expired.", sessions)
    out.one("keel_audit_rows", "gauge", "Id of the newest audit row.", audit_rows)
    if _Verified.ok is not None:
        out.one(
            "keel_audit_chain_ok",
            "gauge",
            "Whether the newest audit rows verify (checked at most once a minute).",
            1 if _Verified.ok else 0,
        )
        out.one(
            "keel_audit_verified_id",
            "gauge",
            "Id of the newest audit row found to verify (0 when the check failed).",
            _Verified.last_id,
        )


def _build(app: web.Application, out: Text) -> None:
    from app import sites
    from app.buildinfo import build_info

    info = build_info()
    site = sites.active()
    out.family("keel_build_info", "gauge", "The running build; the value is always 1.")
    out.sample(
        "keel_build_info",
        1,
        version=info.get("version", ""),
        build_id=info.get("build_id", ""),
        site=site.name if site else "",
        site_version=site.version if site else "",
    )


async def metrics_page(request: web.Request) -> web.Response:
    config = request.app[keys.CONFIG]
    ip = request.get(keys.CLIENT_IP)
    if ip is None:
        ip, _https = client_ip_and_scheme(request, config.trusted_proxies)
    if not in_networks(ip, config.metrics_allow):
        raise web.HTTPForbidden(text="Metrics are served only to the addresses in metrics_allow.")
    out = Text()
    _build(request.app, out)
    board = State.board
    if board is not None:
        if State.slot is not None:
            update_pool(request.app, State.slot)
        _requests(board, out)
    await _database(request.app, out)
    return web.Response(
        body=out.render().encode(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def setup(app: web.Application) -> None:
    """Last in build_app: the counting middleware goes first, around everything else."""
    app.middlewares.insert(0, count_requests)
    app.router.add_get("/metrics", metrics_page, name="metrics")
    app.cleanup_ctx.append(_metrics_ctx)
