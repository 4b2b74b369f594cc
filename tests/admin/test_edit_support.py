"""Helpers for the editing pages' HTTP tests: real users, real sessions, real CSRF tokens.

Named test_* to sit with the editing tests; it holds no tests itself."""

from __future__ import annotations

import html
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from app import audit
from app.authority import sessions, users
from app.web.csrf import token_for_cookie

ORIGIN = "http://127.0.0.1:8000"  # the test config's public_url (SEC-1 Origin check)


class Browser:
    """One signed-in user: sends the session cookie, the CSRF token and a same-site Origin."""

    def __init__(self, client: Any, token: str, secret_key: str, email: str) -> None:
        self.client, self.token, self.email = client, token, email
        self.csrf = token_for_cookie(secret_key, token)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Cookie": f"keel_session={self.token}", "Origin": ORIGIN, **(extra or {})}

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(
            path, headers=self.headers(kw.pop("headers", None)), allow_redirects=False, **kw
        )

    async def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        if isinstance(data, dict):
            data = {"csrf_token": self.csrf, **data}
        elif isinstance(data, list):
            data = [("csrf_token", self.csrf), *data]
        return await self.client.post(
            path, data=data, headers=self.headers(kw.pop("headers", None)),
            allow_redirects=False, **kw,
        )  # fmt: skip


async def sign_in(
    client: Any,
    database_url: str,
    secret_key: str,
    *,
    role: str = "administrator",
    perms: tuple[str, ...] = (),
    elevated: bool = False,
    email: str | None = None,
) -> Browser:
    """A user with `role` and direct `perms`, and a live session (elevated on request)."""
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="test@host")
    email = email or f"{role}-{len(perms)}-{secrets.token_hex(3)}@example.com"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        user = await users.create(conn, ctx, None, email=email, role=role)
        if perms:
            await users.grant(conn, ctx, None, user.id, perms)
        now = datetime.now(UTC)
        token, _session = await sessions.create(
            conn,
            user_id=user.id,
            absolute=3600,
            trust="elevated" if elevated else "authenticated",
            elevated_until=now + timedelta(minutes=10) if elevated else None,
        )
    return Browser(client, token, secret_key, email)


def hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert m, f"no hidden {name}"
    return html.unescape(m.group(1))


async def one(database_url: str, query: str, params: Any = None) -> Any:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return row[0] if row and len(row) == 1 else row


async def execute(database_url: str, query: str, params: Any = None) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(query, params)
