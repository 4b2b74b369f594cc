"""The sweeper: deletes expired sessions, old tokens, rate events and sent mail; many hosts at once (SESS-9)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from app import mail
from app.authority import ratelimit

log = logging.getLogger("keel.sweeper")
Conn = psycopg.AsyncConnection[Any]
BATCH = 1000
TOKEN_GRACE = timedelta(days=7)  # SESS-9: recovery tokens stay a week past expiry
MAIL_RETENTION = timedelta(days=30)
INTERVAL = 300.0


@dataclass(frozen=True)
class Swept:
    sessions: int = 0
    tokens: int = 0
    rate_events: int = 0
    mail: int = 0

    @property
    def total(self) -> int:
        return self.sessions + self.tokens + self.rate_events + self.mail


async def _batched(conn: Conn, table: str, where: str, params: tuple[Any, ...]) -> int:
    """`DELETE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` until nothing is left:
    short transactions, and two hosts sweeping at once take different rows (SESS-9)."""
    total = 0
    query = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where}"
        " LIMIT %s FOR UPDATE SKIP LOCKED)"
    )
    while True:
        cur = await conn.execute(query, (*params, BATCH))
        total += cur.rowcount
        if cur.rowcount < BATCH:
            return total


async def sweep(conn: Conn, *, idle: float, now: datetime | None = None) -> Swept:
    """One pass. Sessions go once past their absolute expiry or idle timeout (revoked ones
    too: their revocation is in the audit log, which outlives them)."""
    at = now or datetime.now(UTC)
    n_sessions = await _batched(
        conn,
        "keel_sessions",
        "expires_at < %s OR last_seen_at < %s",
        (at, at - timedelta(seconds=idle)),
    )
    n_tokens = await _batched(conn, "keel_recovery_tokens", "expires_at < %s", (at - TOKEN_GRACE,))
    n_rate = await _batched(conn, "keel_rate_events", "at < %s", (at - ratelimit.LONGEST_WINDOW,))
    n_mail = await mail.purge_sent(conn, older_than=MAIL_RETENTION, now=at)
    return Swept(n_sessions, n_tokens, n_rate, n_mail)


async def run_forever(
    connect: Callable[[], AbstractAsyncContextManager[Conn]],
    stop: asyncio.Event,
    *,
    idle: float,
    interval: float = INTERVAL,
) -> None:
    """Sweep every `interval` seconds until `stop` is set; a failed pass is logged and retried."""
    while not stop.is_set():
        try:
            async with connect() as conn:
                swept = await sweep(conn, idle=idle)
            if swept.total:
                log.info("swept %s rows", swept.total, extra=swept.__dict__)
        except Exception:
            log.exception("sweep failed; retrying next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
