"""Shared fixtures for the authority tests: a connection, contexts, hashers, users of each role.

`make_user(conn_or_url, role=…, email=…, password=…) -> (id, password)` writes the row
directly (no audit event), so tests that count audit rows see only what they cause. Its
hashes use the production parameters, computed once per password per test process.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import psycopg
import pytest

from app.audit import Context, derive_key
from app.authority.passwords import Hasher
from app.authority.principal import Principal

DEFAULT_PASSWORD = "correct horse battery staple 42"
_HASHES: dict[str, str] = {}
_SEQ = itertools.count(1)

MakeUser = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def ctx(secret_key: str) -> Context:
    """The machine's operator at the command line (no signed-in actor)."""
    return Context(audit_key=derive_key(secret_key), os_actor="ops@host", argv=("keel", "test"))


def context_for(secret_key: str, principal: Principal) -> Context:
    """A signed-in actor's context, as the web layer would build it."""
    return Context(
        audit_key=derive_key(secret_key),
        actor_id=principal.user_id,
        actor_email=principal.email,
        actor_role=principal.role,
        ip="203.0.113.7",
        request_id="req-authority-tests-0001",
    )


@pytest.fixture
async def hasher() -> AsyncIterator[Hasher]:
    """Production parameters (LOGIN-5); each hash costs ~0.15 s, so use sparingly."""
    h = Hasher()
    yield h
    h.close()


@pytest.fixture
async def fast_hasher() -> AsyncIterator[Hasher]:
    """Cheap parameters for tests that hash many times; still Argon2id."""
    h = Hasher(time_cost=1, memory_cost=8192, parallelism=1)
    yield h
    h.close()


async def hash_once(password: str) -> str:
    if password not in _HASHES:
        h = Hasher(max_in_flight=1)
        try:
            _HASHES[password] = await h.hash(password)
        finally:
            h.close()
    return _HASHES[password]


async def make_user(
    conn_or_url: psycopg.AsyncConnection[Any] | str,
    *,
    role: str = "staff",
    email: str | None = None,
    password: str | None = DEFAULT_PASSWORD,
    active: bool = True,
    groups: Iterable[str] = (),
    must_change_password: bool = False,
) -> tuple[int, str]:
    """Insert a user directly and return (id, password); `password=None` means no password."""
    if isinstance(conn_or_url, str):
        async with await psycopg.AsyncConnection.connect(conn_or_url, autocommit=True) as c:
            return await make_user(
                c, role=role, email=email, password=password, active=active, groups=groups,
                must_change_password=must_change_password,
            )  # fmt: skip
    conn = conn_or_url
    address = (email or f"{role}{next(_SEQ)}@example.com").lower()
    password_hash = await hash_once(password) if password is not None else None
    cur = await conn.execute(
        "INSERT INTO keel_users (email, role, is_active, password_hash, password_changed_at,"
        " must_change_password, full_name) VALUES (%s, %s, %s, %s, now(), %s, %s) RETURNING id",
        (address, role, active, password_hash, must_change_password, f"Test {role.title()}"),
    )
    row = await cur.fetchone()
    assert row is not None
    user_id = int(row[0])
    for name in groups:
        await conn.execute(
            "INSERT INTO keel_group_members (group_id, user_id)"
            " SELECT id, %s FROM keel_groups WHERE lower(name) = lower(%s)",
            (user_id, name),
        )
    return user_id, password or ""


async def principal_of(conn: psycopg.AsyncConnection[Any], user_id: int) -> Principal:
    """The Principal the web layer would load for this user (AUTHZ-5: fresh from the row)."""
    cur = await conn.execute(
        "SELECT email, role, display_name, must_change_password FROM keel_users WHERE id = %s",
        (user_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return Principal(user_id, row[0], row[1], row[2] or row[0], must_change_password=row[3])


@pytest.fixture(name="make_user")
def make_user_fixture() -> MakeUser:
    return make_user


@pytest.fixture
async def admin(conn: psycopg.AsyncConnection[Any]) -> Principal:
    user_id, _ = await make_user(conn, role="administrator", email="admin@example.com")
    return await principal_of(conn, user_id)
