"""Fixtures for mail tests: real aiosmtpd servers (accepting, refusing) and a database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from app.mail import SmtpSettings
from tests.helpers import Recorder, free_port  # Recorder: shared with the page tests


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Recorder

    def settings(self) -> SmtpSettings:
        return SmtpSettings(self.host, self.port, tls="none", sender="Keel <keel@example.com>")


def _serve(handler: Recorder) -> Iterator[SmtpServer]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from _serve(Recorder())


@pytest.fixture
def smtp_refusing() -> Iterator[SmtpServer]:
    yield from _serve(Recorder(refuse="550 5.1.1 No such user here"))


@pytest.fixture
def smtp_busy() -> Iterator[SmtpServer]:
    yield from _serve(Recorder(refuse="451 4.3.0 Try again later"))


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
