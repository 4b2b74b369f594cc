"""LOGIN-2/3 numbers come from the configuration: an operator can tighten or relax them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from app.config import Config
from tests.helpers import cheap_app
from tests.web.conftest import sign_in


@pytest.fixture
def tuned(config: Config) -> Config:
    return replace(
        config,
        login_lock_failures=3,
        login_lock_window=300.0,
        login_lock_duration=120.0,
        login_ip_limit=6,
    )


async def test_configured_lock_threshold_and_ip_limit_apply(
    tuned: Config, aiohttp_client, make_user, database_url
) -> None:
    import psycopg

    client: TestClient = await aiohttp_client(cheap_app(tuned))
    user, password = await make_user("staff")
    for _ in range(3):
        assert (await sign_in(client, user.email, "not the password")).status == 401
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT locked_until - last_failed_login_at FROM keel_users WHERE id = %s", (user.id,)
        )
        (lock_length,) = await cur.fetchone()
    assert lock_length.total_seconds() == 120, "three failures lock for the configured 2 minutes"
    assert (await sign_in(client, user.email, password)).status == 401, "locked: even right fails"
    # Four attempts from this address so far; the fifth and sixth are allowed, not the seventh.
    for _ in range(2):
        assert (await sign_in(client, user.email, password)).status == 401
    over = await sign_in(client, user.email, password)
    assert over.status == 429 and int(over.headers["Retry-After"]) > 0
