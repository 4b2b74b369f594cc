"""Connections: the bounded async pool for `serve` and short-lived connections for the CLI (DB-6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from app.config import Config, redact_url
from app.db import adapt
from app.errors import ConfigError, DatabaseUnavailable

CONNECT_TIMEOUT = 5
# Shown in pg_stat_activity; a worker under the supervisor says which one it is (keel/0, …).
APPLICATION_NAME = "keel"


def _require_url(config: Config) -> str:
    if not config.database_url:
        raise ConfigError(
            "database_url",
            "is not set",
            "set DATABASE_URL or KEEL_DATABASE_URL, or database_url in the configuration file",
        )
    return config.database_url


def connection_kwargs(config: Config) -> dict[str, object]:
    """Arguments for every pooled connection; PgBouncer in transaction mode changes two."""
    kwargs: dict[str, object] = {
        "autocommit": True,
        "application_name": APPLICATION_NAME,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    if config.pgbouncer:
        # Each transaction may run on another server connection: a statement prepared on one
        # is unknown on the next, so psycopg must never prepare. PgBouncer also refuses the
        # `options` startup parameter; the timeouts are set on the role instead (ALTER ROLE …
        # SET, docs/operations.md "PgBouncer").
        kwargs["prepare_threshold"] = None
    else:
        kwargs["options"] = _session_options(config)
    return kwargs


def _session_options(config: Config) -> str:
    # Startup options rather than SET after connect: they hold for every transaction and
    # survive a server-side reset; under PgBouncer set them on the role instead (see docs).
    return (
        f"-c statement_timeout={int(config.statement_timeout * 1000)} "
        f"-c idle_in_transaction_session_timeout={int(config.idle_in_transaction_timeout * 1000)}"
    )


def explain_connect_error(exc: Exception, url: str) -> DatabaseUnavailable:
    """Turn a libpq failure into Problem/Why/Fix (CLI-1) without leaking the password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    shown = redact_url(url)
    if "does not exist" in text and "database" in text:
        return DatabaseUnavailable(
            f"the database in {shown} does not exist",
            why=text,
            fix="create it (createdb -O <owner> <name>) or correct database_url",
            retry="keel migrate",
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return DatabaseUnavailable(
            f"PostgreSQL refused the credentials for {shown}",
            why=text,
            fix="check the user and password in database_url (or its credential file)",
        )
    return DatabaseUnavailable(
        f"cannot reach the database at {shown}",
        why=text,
        fix="check that PostgreSQL is running and that database_url names the right host and port",
    )


@asynccontextmanager
async def connect(
    config: Config, *, autocommit: bool = True
) -> AsyncIterator[psycopg.AsyncConnection]:
    """One short-lived connection for a CLI command; closed on exit."""
    url = _require_url(config)
    try:
        conn = await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="keel-cli",
            prepare_threshold=None if config.pgbouncer else 5,
        )
    except psycopg.Error as exc:
        raise explain_connect_error(exc, url) from None
    try:
        yield conn
    finally:
        await conn.close()


Conn = psycopg.AsyncConnection[Any]
# What `execute` takes (psycopg.abc.Query less the template strings it does not).
Query = str | bytes | sql.SQL | sql.Composed


class Held:
    """One request's connection, checked out once and lent to every `connection()` the
    request's own task asks for (see `KeelPool.request_connection`)."""

    __slots__ = ("busy", "conn", "pool", "task")

    def __init__(self, pool: KeelPool, conn: Conn) -> None:
        self.pool = pool
        self.conn: Conn | None = conn
        self.task = asyncio.current_task()
        self.busy = False

    async def release(self) -> None:
        """Give the connection back now; later `connection()` calls use the pool as usual."""
        conn, self.conn = self.conn, None
        if conn is not None:
            await self.pool.putconn(conn)  # the pool rolls back or discards a broken one


_HELD: ContextVar[Held | None] = ContextVar("keel_request_connection", default=None)


class KeelPool(AsyncConnectionPool):
    """The request pool, with one connection per request.

    A signed-in page used to check out one connection for its session lookup and another for
    its own queries: two pool round trips, and twice the chance to wait in line. Now the
    session middleware checks out one with `request_connection()` and every `connection()`
    the same request makes reuses it. A request therefore never holds two pool connections
    at once: nested use while the held one is busy (or use from another task, such as one a
    handler started, which copies the context) goes to the pool as before."""

    def request_connection(self) -> _RequestConnection:
        """`async with pool.request_connection() as held:` the request's one connection."""
        return _RequestConnection(self)

    def connection(self, timeout: float | None = None) -> _Lent:  # type: ignore[override]
        """`async with pool.connection() as conn:` the request's held connection when it is
        free and this is the request's own task, otherwise one from the pool as usual."""
        return _Lent(self, timeout)


# The two context managers below are classes rather than @asynccontextmanager generators:
# they are entered for every query of every page, and a generator-based one costs a
# generator, a wrapper object and two extra coroutine steps each time.


class _RequestConnection:
    __slots__ = ("held", "pool", "token")

    def __init__(self, pool: KeelPool) -> None:
        self.pool = pool

    async def __aenter__(self) -> Held:
        self.held = Held(self.pool, await self.pool.getconn())
        self.token = _HELD.set(self.held)
        return self.held

    async def __aexit__(self, *exc: object) -> None:
        _HELD.reset(self.token)
        await self.held.release()


class _Lent:
    __slots__ = ("conn", "held", "outer", "pool", "timeout")

    def __init__(self, pool: KeelPool, timeout: float | None) -> None:
        self.pool, self.timeout = pool, timeout
        self.held: Held | None = None
        self.outer: AbstractAsyncContextManager[Conn] | None = None

    async def __aenter__(self) -> Conn:
        held = _HELD.get()
        if (
            held is None
            or held.conn is None
            or held.busy
            or held.pool is not self.pool
            or held.task is not asyncio.current_task()
        ):
            self.outer = AsyncConnectionPool.connection(self.pool, self.timeout)
            return await self.outer.__aenter__()
        self.held, self.conn = held, held.conn
        held.busy = True
        return held.conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if self.outer is not None:
            return await self.outer.__aexit__(kind, exc, tb)
        held = self.held
        assert held is not None
        try:
            # Commit when the block ended normally, roll back when it raised (the pool's own
            # `connection()` does the same); the error itself goes on.
            await _tidy(held, self.conn, commit=kind is None)
        finally:
            held.busy = False
        return None


async def _tidy(held: Held, conn: Conn, *, commit: bool) -> None:
    """What the pool's own `connection()` does on exit (commit, or roll back on an error),
    for the lent connection; one left in any other state goes back to the pool now, which
    closes and replaces it."""
    if conn.pgconn.transaction_status == TransactionStatus.IDLE:
        return
    if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            await (conn.commit() if commit else conn.rollback())
    if conn.pgconn.transaction_status != TransactionStatus.IDLE:
        await held.release()


@asynccontextmanager
async def open_pool(config: Config) -> AsyncIterator[KeelPool]:
    """The request pool, opened explicitly and closed on exit; bounded, with timeouts."""
    url = _require_url(config)
    # A direct probe first: the pool only says "timeout", libpq says why.
    async with connect(config):
        pass
    pool = KeelPool(
        url,
        min_size=config.pool_min,
        max_size=config.pool_max,
        timeout=config.pool_timeout,
        max_waiting=config.pool_max * 20,
        kwargs=connection_kwargs(config),
        open=False,
        name="keel",
        configure=adapt.configure,  # dates and timestamps at ±infinity load (app/db/adapt.py)
    )
    try:
        await pool.open(wait=True, timeout=max(config.pool_timeout, CONNECT_TIMEOUT))
    except Exception as exc:
        await pool.close()
        raise explain_connect_error(exc, url) from None
    try:
        yield pool
    finally:
        await pool.close()
