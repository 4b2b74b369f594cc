"""Shared admin fixtures: a connection, the bound demo resources, a small deterministic data set.

The editing engineer may add fixtures in tests/admin/conftest_edit.py (imported below if present)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from app.admin.resources import BoundResource
from app.admin.setup import check_declarations
from tests.web.conftest import hasher, make_user, signed_in  # noqa: F401 - shared fixtures

with contextlib.suppress(ImportError):  # fixtures of the editing side, when they exist
    from tests.admin.conftest_edit import *  # noqa: F403

# 40 customers, 300 bookings spread over 2024 with every status, a few with searchable notes.
SEED_SQL = """
INSERT INTO customers (id, name, email, city, created_at)
SELECT i, 'Customer ' || i, 'person' || i || '@example.org',
       (ARRAY['Lyon','Oslo','Porto','Graz'])[1 + i % 4],
       timestamptz '2024-01-01 00:00+00' + make_interval(days => i)
FROM generate_series(1, 40) AS i;
INSERT INTO bookings (id, customer_id, status, amount, scheduled_at, notes, created_at)
SELECT i, 1 + (i * 7) % 40,
       (ARRAY['pending','confirmed','completed','cancelled','no_show'])[1 + i % 5],
       (i * 13 % 1000) + 0.5,
       timestamptz '2024-01-01 00:00+00' + make_interval(hours => i * 29),
       CASE WHEN i % 10 = 0 THEN 'late arrival window ' || i WHEN i % 7 = 0 THEN '' ELSE 'note ' || i END,
       timestamptz '2023-12-01 00:00+00' + make_interval(hours => i * 29)
FROM generate_series(1, 300) AS i;
SELECT setval(pg_get_serial_sequence('customers', 'id'), 40);
SELECT setval(pg_get_serial_sequence('bookings', 'id'), 300);
INSERT INTO technicians (id, name, email, skill_level, hourly_rate, is_active, hired_on)
VALUES (1, 'Ada Fixer', 'ada@example.org', 'lead', 55.5, true, '2020-03-01'),
       (2, 'Bob Wrench', 'bob@example.org', 'junior', 30, false, '2023-06-15'),
       (3, 'Cy Null', 'cy@example.org', 'senior', 45, true, '2021-01-10');
SELECT setval(pg_get_serial_sequence('technicians', 'id'), 3);
INSERT INTO properties (name, address, kind, technician_id, units, has_parking, last_inspected)
VALUES ('Harbour House', '1 Quay Street', 'house', 1, 1, true, '2024-05-01'),
       ('Mill Offices', '9 Mill Lane', 'office', 2, 12, false, NULL),
       ('Dock Store', '3 Dock Road', 'warehouse', NULL, 1, true, '2023-11-20');
ANALYZE customers, bookings, technicians, properties;
"""
# The statistics of the four tables above (the list pages' estimates and plans read them). An
# `ANALYZE` of the whole database also visited every empty Keel table: 150 of the seed's 180 ms,
# and 200-odd tests seed.


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
async def seeded(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    await conn.execute(SEED_SQL)
    return conn


@pytest.fixture
async def bound(conn: psycopg.AsyncConnection[Any]) -> dict[str, BoundResource]:
    resources, problems = await check_declarations(conn)
    assert [p for p in problems if p.level == "error"] == []
    return resources
