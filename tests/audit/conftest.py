"""Fixtures for the audit tests: a connection to a fresh migrated database and a context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from app.audit import Context, derive_key


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def key(secret_key: str) -> bytes:
    return derive_key(secret_key)


@pytest.fixture
def ctx(key: bytes) -> Context:
    return Context(
        audit_key=key,
        actor_id=1,
        actor_email="Admin@Example.com",
        actor_role="administrator",
        session_id=7,
        ip="203.0.113.9",
        user_agent="Firefox 128 on Linux",
        request_id="req-0123456789abcdef",
    )
