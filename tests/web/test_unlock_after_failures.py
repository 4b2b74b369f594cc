"""Unlocking an account the throttle locked lets the right password in at once (LOGIN-2).

The throttle counts failed sign-ins in `keel_rate_events`; an unlock that only reset the
user's columns left those rows, and the right password was still refused for up to
`login_lock_window`. Both ways to unlock are tested with a real sign-in right after.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from app.config import Config
from tests.helpers import keel, keel_env
from tests.web.conftest import sign_in
from tests.web.test_admin_users_actions import REASON, elevate

pytestmark = pytest.mark.asyncio


async def lock_out(client: TestClient, config: Config, email: str, password: str) -> None:
    """Fail until the throttle locks the account; then even the right password is refused."""
    for _ in range(config.login_lock_failures):
        assert (await sign_in(client, email, "wrong " + password)).status == 401
    assert (await sign_in(client, email, password)).status == 401


async def test_unlock_on_the_users_page_lets_the_user_in_at_once(
    signed_in, make_user, client, config
):
    admin = await signed_in("administrator")
    await elevate(admin)
    staff, password = await make_user("staff")
    await lock_out(client, config, staff.email, password)
    resp = await admin.post(f"/admin/users/{staff.id}/unlock", {"reason": REASON})
    assert resp.status == 303
    assert (await sign_in(client, staff.email, password)).status == 303


async def test_keel_user_unlock_lets_the_user_in_at_once(
    make_user, client, config, database_url, secret_key
):
    staff, password = await make_user("staff")
    await lock_out(client, config, staff.email, password)
    env = keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")
    args = ("user", "unlock", "--email", staff.email, "--reason", REASON, "--yes")
    proc = await asyncio.to_thread(keel, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (await sign_in(client, staff.email, password)).status == 303
