"""KeelPool.request_connection: one connection lent to the request's own task, never shared."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.config import load_config
from app.db.pool import KeelPool, open_pool

pytestmark = pytest.mark.asyncio


def _config(database_url: str, size: int) -> object:
    return load_config(
        env={},
        flags={"database_url": database_url, "pool_min": size, "pool_max": size},
    )


async def test_the_request_task_reuses_its_connection(database_url: str) -> None:
    async with open_pool(_config(database_url, 2)) as pool:  # type: ignore[arg-type]
        assert isinstance(pool, KeelPool)
        async with pool.request_connection() as held:
            async with pool.connection() as a:
                assert a is held.conn
                # Nested use while it is busy: another connection, as before.
                async with pool.connection() as b:
                    assert b is not a
            async with pool.connection() as again:
                assert again is held.conn

            async def elsewhere() -> object:
                async with pool.connection() as c:
                    return c

            # A task the request starts copies its context, but not its connection.
            assert await asyncio.create_task(elsewhere()) is not held.conn
        assert pool.get_stats()["pool_available"] == 2  # everything went back


async def test_a_failed_transaction_leaves_the_lent_connection_clean(database_url: str) -> None:
    async with open_pool(_config(database_url, 1)) as pool:  # type: ignore[arg-type]
        async with pool.request_connection() as held:
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("CREATE TEMP TABLE t (x int)")
                    await conn.execute("SELECT 1 / 0")
            async with pool.connection() as conn:
                assert conn is held.conn
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                # The failed transaction was rolled back: the table never existed.
                cur = await conn.execute("SELECT to_regclass('pg_temp.t')")
                assert (await cur.fetchone()) == (None,)
            # An error outside a transaction changes nothing either.
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1 / 0")
            async with pool.connection() as conn:
                assert conn is held.conn
        async with pool.connection() as conn:  # and it is back in the pool, usable
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
