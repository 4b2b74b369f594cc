"""Fixtures for mail tests: real aiosmtpd servers that refuse (the accepting one, `smtp`, is in
tests/conftest.py) and a database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import pytest

from tests.helpers import Recorder, SmtpServer, smtp_server


@pytest.fixture
def smtp_refusing() -> Iterator[SmtpServer]:
    with smtp_server(Recorder(refuse="550 5.1.1 No such user here")) as server:
        yield server


@pytest.fixture
def smtp_busy() -> Iterator[SmtpServer]:
    with smtp_server(Recorder(refuse="451 4.3.0 Try again later")) as server:
        yield server


@pytest.fixture
def connector(
    database_url: str,
) -> Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]:
    @asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            yield conn

    return connect


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c
