"""Two real `keel serve` processes on one database behave as one (OPS-9, LOGIN-2/3, AUTHZ-5,
MFA-3).

The two servers are started once for the file, on one database (starting a server costs more
CPU than most of these tests): each test makes users of its own, and starts with no rate-limit
events, since every browser here signs in from 127.0.0.1.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import psycopg
import pyotp
import pytest

from app import audit
from app.authority import mfa, users
from tests.helpers import free_port, keel_env, spawn_keel, wait_http

_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def database_url(pg_server: Any, template_db: str) -> Iterator[str]:
    """One fresh, migrated database for this file's tests and its two servers."""
    name = pg_server.create_database(template_db)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def secret_key() -> str:
    """The servers' key, so the tests' audit contexts and MFA key ring match theirs."""
    return secrets.token_urlsafe(32)


@pytest.fixture(autouse=True)
def no_rate_events(database_url: str) -> None:
    """Each test starts with no per-address or per-account counts (LOGIN-2/3) from another."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM keel_rate_events")


@pytest.fixture(scope="module")
def servers(database_url: str, secret_key: str) -> Iterator[tuple[str, str]]:
    """Two serve processes sharing the test database, each on its own port."""
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for _ in range(2):
            port = free_port()
            env = keel_env(
                DATABASE_URL=database_url,
                KEEL_SECRET_KEY=secret_key,
                KEEL_LISTEN=f"127.0.0.1:{port}",
                KEEL_PUBLIC_URL="http://keel.test",
                KEEL_LOG_FORMAT="json",
            )
            procs.append(spawn_keel("serve", env=env))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            assert wait_http(url + "/healthz", timeout=60, proc=proc) == 200
        yield urls[0], urls[1]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Browsers (cookie jars) that may talk to either server: the cookie is per host name,
    and both servers are 127.0.0.1, like two hosts behind one load balancer."""
    sessions: list[aiohttp.ClientSession] = []

    def make() -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(s)
        return s

    yield make
    for s in sessions:
        await s.close()


async def _token(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url) as resp:
        m = _TOKEN.search(await resp.text())
    assert m, url
    return m.group(1)


async def _login(s: aiohttp.ClientSession, base: str, email: str, password: str) -> int:
    token = await _token(s, base + "/login")
    async with s.post(
        base + "/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    ) as resp:
        return resp.status


async def _status(s: aiohttp.ClientSession, url: str) -> int:
    async with s.get(url, allow_redirects=False) as resp:
        return resp.status


def _ctx(secret_key: str) -> audit.Context:
    return audit.Context(audit_key=audit.derive_key(secret_key), os_actor="ops@third-host")


async def test_throttle_and_ip_limit_hold_across_two_servers(
    servers, browser, make_user, database_url
) -> None:
    """LOGIN-2: failures on A and B add up; LOGIN-3: the per-IP count is shared."""
    a, b = servers
    user, password = await make_user("staff")
    s = browser()
    for i in range(5):
        assert await _login(s, (a, b)[i % 2], user.email, "wrong password") == 401
    assert await _login(s, a, user.email, password) == 401, "locked on A after failures on both"
    assert await _login(s, b, user.email, password) == 401
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM keel_rate_events WHERE bucket = 'login_ip'")
        (seen,) = await cur.fetchone()
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key) SELECT 'login_ip', '127.0.0.1'"
            " FROM generate_series(1, %s)",
            (29 - seen,),
        )
    assert await _login(s, a, "nobody@example.com", "x") == 401  # the 30th, counted on A
    assert await _login(s, b, "nobody@example.com", "x") == 429  # refused on B
    assert await _login(s, a, "nobody@example.com", "x") == 429


async def test_a_change_through_one_server_applies_on_the_other_at_once(
    servers, browser, make_user, database_url, secret_key
) -> None:
    """AUTHZ-5, SESS-4: revocation, deactivation and permission removal are seen on the very
    next request to the other server (no cache anywhere)."""
    a, b = servers
    user, password = await make_user("staff")
    one, two = browser(), browser()
    assert await _login(one, a, user.email, password) == 303
    assert await _login(two, b, user.email, password) == 303
    assert await _status(one, b + "/account") == 200, "a session made on A works on B"
    # Session revoked through A's own-sessions page → refused on B.
    token = await _token(one, a + "/account/sessions")
    async with one.post(
        a + "/account/sessions",
        data={"action": "revoke_others", "csrf_token": token},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
    assert await _status(two, b + "/account") == 303
    # Permission granted, then removed, by another host → B follows at once.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await users.grant(conn, _ctx(secret_key), None, user.id, ["customers.view"])
    assert await _status(one, b + "/admin/customers/") == 200
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await users.revoke(conn, _ctx(secret_key), None, user.id, ["customers.view"])
    assert await _status(one, b + "/admin/customers/") == 403
    # Deactivated by another host → A and B refuse the next request.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await users.set_active(conn, _ctx(secret_key), None, user.id, False)
    assert await _status(one, a + "/account") == 303
    assert await _status(one, b + "/account") == 303


async def _code_step(s: aiohttp.ClientSession, base: str, code: str) -> tuple[int, str]:
    token = await _token(s, base + "/mfa")
    async with s.post(
        base + "/mfa", data={"code": code, "csrf_token": token}, allow_redirects=False
    ) as resp:
        return resp.status, resp.headers.get("Location", "")


async def test_an_authenticator_code_used_on_one_server_is_refused_on_the_other(
    servers, browser, make_user, database_url, secret_key
) -> None:
    """MFA-3 replay: a code signs in once per user, whichever server sees it again."""
    a, b = servers
    user, password = await make_user("staff")
    ring = mfa.KeyRing.from_secret_keys(secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        secret = await mfa.start_enrolment(conn, ring, user.id)
        # Set up with the previous step's code, so the current one is still unused.
        await mfa.confirm_enrolment(
            conn, _ctx(secret_key), ring, user.id, pyotp.TOTP(secret).at(time.time() - 30)
        )
    code = pyotp.TOTP(secret).now()
    one, two = browser(), browser()
    assert await _login(one, a, user.email, password) == 303
    assert await _code_step(one, a, code) == (303, "/admin/")
    assert await _status(one, a + "/admin/") == 200
    assert await _login(two, b, user.email, password) == 303
    assert (await _code_step(two, b, code))[0] == 401  # the same code, on server B
    assert await _status(two, b + "/admin/") == 303  # still owing its code
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM keel_audit WHERE event_type = 'mfa_code_consumed'"
            " AND target_id = %s",
            (str(user.id),),
        )
        assert await cur.fetchone() == (1,)
