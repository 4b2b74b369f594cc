"""Fixtures for page tests: users of each role and real signed-in HTTP clients.

Use `signed_in` in any page test:

    async def test_x(signed_in):
        s = await signed_in("administrator")          # its own cookie jar on the app's server
        resp = await s.get("/admin/")
        resp = await s.post("/admin/things/new", {"name": "x"})   # csrf_token added for you
        s.user.id, s.user.email, s.password, s.csrf

`make_user(role, …)` creates a user without signing in; `login_form(client)` returns the
pre-session CSRF token of a fresh login page.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from app import audit
from app.authority import users
from app.authority.passwords import Hasher
from app.config import Config
from app.web import csrf
from tests.helpers import cheap_hasher, notify_listener

_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
DEFAULT_PASSWORD = "plum orbit kettle 4711"
_HASHES: dict[str, str] = {}  # hash each password once per test process


def page_token(html: str) -> str:
    m = _TOKEN.search(html)
    assert m, "no csrf_token in the page"
    return m.group(1)


async def login_form(client: TestClient) -> str:
    """GET /login and return the form's CSRF token (the pre-session cookie is now set)."""
    resp = await client.get("/login")
    assert resp.status == 200, await resp.text()
    return page_token(await resp.text())


@dataclass
class SignedIn:
    client: TestClient
    user: users.User
    password: str
    secret_key: str

    @property
    def cookie(self) -> str:
        for morsel in self.client.session.cookie_jar:
            if morsel.key in ("keel_session", "__Host-keel_session"):
                return morsel.value
        raise AssertionError("not signed in: no session cookie")

    @property
    def csrf(self) -> str:
        """The token forms of this session carry (SEC-1)."""
        return csrf.token_for_cookie(self.secret_key, self.cookie)

    async def get(self, path: str, **kw: Any) -> ClientResponse:
        kw.setdefault("allow_redirects", False)
        return await self.client.get(path, **kw)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> ClientResponse:
        """POST a form with this session's csrf_token added; redirects are not followed."""
        kw.setdefault("allow_redirects", False)
        return await self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kw)


def _ctx(secret_key: str) -> audit.Context:
    return audit.Context(audit_key=audit.derive_key(secret_key), os_actor="tests@localhost")


MakeUser = Callable[..., Awaitable[tuple[users.User, str]]]


@pytest.fixture
async def hasher() -> AsyncIterator[Hasher]:
    """The cheap set the `client` app uses, so its sign-ins verify cheaply and never rehash."""
    h = cheap_hasher()
    yield h
    h.close()


@pytest.fixture
def make_user(database_url: str, secret_key: str, hasher: Hasher) -> MakeUser:
    """`await make_user("staff", email=…, password=…, groups=[…], must_change=…, active=…)`
    → (User, password), created through the users service."""

    async def make(
        role: str = "administrator",
        *,
        email: str | None = None,
        password: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        must_change: bool = False,
        active: bool = True,
        full_name: str = "",
    ) -> tuple[users.User, str]:
        password = password or DEFAULT_PASSWORD
        email = email or f"{role}-{secrets.token_hex(4)}@example.com"
        if password not in _HASHES:
            _HASHES[password] = await hasher.hash(password)
        password_hash = _HASHES[password]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            user = await users.create(
                conn, _ctx(secret_key), None, email=email, role=role,
                password_hash=password_hash, must_change_password=must_change,
                profile={"full_name": full_name} if full_name else None, groups=groups, via="cli",
            )  # fmt: skip
            if not active:
                await conn.execute(
                    "UPDATE keel_users SET is_active = false WHERE id = %s", (user.id,)
                )
                user = await users.get(conn, user.id)
        return user, password

    return make


async def sign_in(client: TestClient, email: str, password: str) -> ClientResponse:
    token = await login_form(client)
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )


@pytest.fixture
async def signed_in(
    client: TestClient, config: Config, make_user: MakeUser
) -> AsyncIterator[Callable[..., Awaitable[SignedIn]]]:
    """`await signed_in(role, **make_user_options)`: a new user of that role, signed in over
    HTTP on its own client (cookie jar) against the `client` fixture's server."""
    extra: list[TestClient] = []

    async def make(role: str = "administrator", **kw: Any) -> SignedIn:
        user, password = await make_user(role, **kw)
        own = TestClient(client.server)
        await own.start_server()
        extra.append(own)
        resp = await sign_in(own, user.email, password)
        assert resp.status == 303, await resp.text()
        return SignedIn(own, user, password, config.secret_key)

    yield make
    for c in extra:
        await c.session.close()  # not c.close(): that would stop the shared server


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """(socket, path): a NOTIFY_SOCKET to hand to `keel serve`; read it with
    `tests.helpers.notify_until`."""
    path = tmp_path / "notify.sock"
    with notify_listener(path) as sock:
        yield sock, str(path)
