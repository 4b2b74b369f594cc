"""Connections a client cannot hoard: a deadline for the request head, caps in total and per
client address, a deadline for the body, and log lines that cannot flood (OPS-1, SEC-3).

aiohttp closes a connection that has no complete request only after its keep-alive timeout
and never limits how many are open; one anonymous client holding hundreds of half-sent
requests used every file descriptor, after which asyncio logged a traceback per refused
accept. `Guard` wraps aiohttp's protocol factory (`web.Server`) without changing it: it counts
connections, answers over-limit ones with a bare 503 and closes them, and closes a connection
whose first request head is not complete in time. Later requests on a kept-alive connection
are bounded by aiohttp's keep-alive timer (`http_keepalive_timeout`), which partial data does
not reset.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from app.config import Config
from app.web import keys
from app.web.requestinfo import in_networks

log = logging.getLogger("keel.connections")
# Descriptors kept free for everything that is not an admitted client connection: the
# listening sockets, the database pool, the log, mail; and connections being refused, of which
# asyncio accepts up to a listen backlog (aiohttp's sites: 128) at a time, a batch or two
# before the first is closed.
RESERVED_DESCRIPTORS = 64 + 2 * 128
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: keel\r\nRetry-After: 5\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\n"
    b"Too many connections; retry soon.\n"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Quiet:
    """At most one log line per `every` seconds for one kind of event; the next one says how
    many were left out, so a flood costs a few lines, not megabytes."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = -float("inf")
        self._skipped = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._skipped += 1
            return
        if self._skipped:
            msg += f" ({self._skipped} more like it in the last {now - self._last:.0f}s)"
        self._last, self._skipped = now, 0
        log.warning(msg, *args)


class QuietFilter(logging.Filter):
    """For asyncio's logger: a refused accept (no descriptors left) logs once per interval,
    without the traceback it would print for each attempt."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self._quiet = Quiet(every)

    def filter(self, record: logging.LogRecord) -> bool:
        if "accept() out of system resource" not in record.getMessage():
            return True
        self._quiet.warning("cannot accept connections: no file descriptors left")
        return False


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_connections: int
    max_per_client: int
    trusted_proxies: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            header_timeout=config.http_header_timeout,
            max_connections=fit_descriptors(config.http_max_connections, config.pool_max),
            max_per_client=config.http_max_connections_per_client,
            trusted_proxies=config.trusted_proxies,
        )


def fit_descriptors(wanted: int, pool_max: int) -> int:
    """The connection cap, lowered so that connections alone never exhaust descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(8, soft - RESERVED_DESCRIPTORS - pool_max)
    if room < wanted:
        log.info(
            "http_max_connections lowered from %d to %d to fit the file descriptor limit %d",
            wanted, room, soft,
        )  # fmt: skip
        return room
    return wanted


class Guard:
    """The protocol factory handed to the listening sockets, around aiohttp's."""

    def __init__(self, inner: Callable[[], asyncio.Protocol], limits: Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.open = 0
        self.per_client: Counter[str] = Counter()
        self.refused = Quiet()
        self.timed_out = Quiet()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def client_key(self, transport: asyncio.BaseTransport) -> str | None:
        """The address the per-client cap counts by; None when exempt (unix socket, proxy)."""
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer:
            return None
        host = str(peer[0])
        if self.limits.trusted_proxies and in_networks(host, self.limits.trusted_proxies):
            return None
        return host


class _Connection(asyncio.Protocol):
    """One client connection: admitted or refused, then passed through to aiohttp."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.client: str | None = None
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        g, self.transport = self.guard, transport
        client = g.client_key(transport)
        if g.open >= g.limits.max_connections:
            g.refused.warning("refused a connection: %d open, the limit", g.open)
            self._refuse()
            return
        if client is not None and g.per_client[client] >= g.limits.max_per_client:
            g.refused.warning(
                "refused a connection from %s: %d open from that address, the limit",
                client, g.per_client[client],
            )  # fmt: skip
            self._refuse()
            return
        g.open += 1
        self.client = client
        if client is not None:
            g.per_client[client] += 1
        self.deadline = asyncio.get_running_loop().call_later(
            g.limits.header_timeout, self._head_too_slow
        )
        self.inner = g.inner()
        self.inner.connection_made(transport)

    def _refuse(self) -> None:
        assert self.transport is not None
        self.transport.write(_REFUSAL)
        self.transport.close()

    def _head_too_slow(self) -> None:
        self.deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.guard.timed_out.warning(
                "closed a connection from %s: no complete request within %gs",
                self.client or "a proxy", self.guard.limits.header_timeout,
            )  # fmt: skip
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.deadline is not None:
            # The first request head ends with an empty line; until then every byte is head.
            seen = self.tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self.deadline.cancel()
                self.deadline = None
            else:
                self.tail = seen[-3:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.inner is None:
            return  # refused: never counted
        g = self.guard
        g.open -= 1
        if self.client is not None:
            g.per_client[self.client] -= 1
            if g.per_client[self.client] <= 0:
                del g.per_client[self.client]
        self.inner.connection_lost(exc)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose sites accept through a `Guard`. Sites take their protocol factory
    from `runner.server`; the runner itself keeps using the real aiohttp server for shutdown."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self._limits = limits
        self._guard: Guard | None = None

    @property
    def server(self) -> web.Server | None:
        inner = super().server
        if inner is None:
            return None
        if self._guard is None or self._guard.inner is not inner:
            self._guard = Guard(inner, self._limits)
        # Sites only call it to make protocols: the guard is such a factory.
        return self._guard  # type: ignore[return-value]


_body_cut = Quiet()


def body_deadline(request: web.Request) -> asyncio.TimerHandle | None:
    """Close the connection when the body has not fully arrived `http_body_timeout` after
    the head: a client trickling or withholding it would hold the handler forever. The timer
    is started before the handler runs and cancelled when it has answered
    (app/web/middleware.py); None for a request with no body still to come."""
    if not request.body_exists or request.content.is_eof():
        return None
    timeout = request.app[keys.CONFIG].http_body_timeout

    def cut() -> None:
        transport = request.transport
        if not request.content.is_eof() and transport is not None:
            _body_cut.warning(
                "closed a connection: the request body did not arrive within %gs", timeout
            )
            transport.abort()

    return asyncio.get_running_loop().call_later(timeout, cut)
