"""Sliding-window rate limits kept in Postgres, so they hold across hosts (LOGIN-2/3, REC-3, OPS-9)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

_BUCKET = re.compile(r"^[a-z_]{1,40}$")
# A distinct advisory-lock namespace for limits ("keelrate"), so counting and recording one
# event are atomic per (bucket, key) across every host (OPS-9).
_LOCK_NS = 0x6B65656C


@dataclass(frozen=True)
class Limit:
    bucket: str
    limit: int
    window: float  # seconds

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket) or self.limit < 1 or self.window <= 0:
            raise ValueError(f"bad limit {self!r}")


# The limits the specification names.
LOGIN_IP = Limit("login_ip", 30, 60.0)  # LOGIN-3: per client IP, across accounts
LOGIN_FAIL = Limit("login_fail", 5, 600.0)  # LOGIN-2: per account, failures
RESET_REQUEST_IP = Limit("reset_request_ip", 5, 900.0)  # REC-3
RESET_CONSUME_IP = Limit("reset_consume_ip", 10, 300.0)  # REC-3
INVITE_ACCEPT_IP = Limit("invite_accept_ip", 10, 300.0)  # AUTHZ-9, like REC-3
RESET_REQUEST_USER = Limit("reset_request_user", 3, 3600.0)  # REC-3
LONGEST_WINDOW = timedelta(hours=1)  # the sweeper keeps events at least this long


def _key(key: object) -> str:
    return str(key)[:100]


async def _lock(conn: psycopg.AsyncConnection[Any], limit: Limit, key: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NS, f"{limit.bucket}:{key}")
    )


async def count(
    conn: psycopg.AsyncConnection[Any], limit: Limit, key: object, *, now: datetime
) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM keel_rate_events WHERE bucket = %s AND key = %s AND at > %s",
        (limit.bucket, _key(key), now - timedelta(seconds=limit.window)),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def hit(
    conn: psycopg.AsyncConnection[Any], limit: Limit, key: object, *, now: datetime | None = None
) -> float | None:
    """Count one event unless the limit is reached: None when allowed, else seconds to wait.

    Refused events are not recorded, so a client that stops gets in again after the window."""
    at = now or datetime.now(UTC)
    k = _key(key)
    async with conn.transaction():
        await _lock(conn, limit, k)
        cur = await conn.execute(
            "SELECT count(*), min(at) FROM keel_rate_events"
            " WHERE bucket = %s AND key = %s AND at > %s",
            (limit.bucket, k, at - timedelta(seconds=limit.window)),
        )
        row = await cur.fetchone()
        n, oldest = (int(row[0]), row[1]) if row else (0, None)
        if n >= limit.limit and oldest is not None:
            wait: float = (oldest + timedelta(seconds=limit.window) - at).total_seconds()
            return max(1.0, float(math.ceil(wait)))
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key, at) VALUES (%s, %s, %s)",
            (limit.bucket, k, at),
        )
    return None


async def record(
    conn: psycopg.AsyncConnection[Any], limit: Limit, key: object, *, now: datetime | None = None
) -> int:
    """Record one event unconditionally; returns how many are now in the window."""
    at = now or datetime.now(UTC)
    k = _key(key)
    async with conn.transaction():
        await _lock(conn, limit, k)
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key, at) VALUES (%s, %s, %s)",
            (limit.bucket, k, at),
        )
        return await count(conn, limit, k, now=at)


async def forget_one(
    conn: psycopg.AsyncConnection[Any], limit: Limit, key: object, *, at: datetime
) -> None:
    """Take back one provisional event recorded at `at` (a login that turned out right)."""
    await conn.execute(
        "DELETE FROM keel_rate_events WHERE id = (SELECT id FROM keel_rate_events"
        " WHERE bucket = %s AND key = %s AND at = %s LIMIT 1)",
        (limit.bucket, _key(key), at),
    )


async def clear(conn: psycopg.AsyncConnection[Any], limit: Limit, key: object) -> None:
    """Forget every event of (bucket, key): a successful login resets its account (LOGIN-2)."""
    await conn.execute(
        "DELETE FROM keel_rate_events WHERE bucket = %s AND key = %s", (limit.bucket, _key(key))
    )
