"""Shared helpers for the JSON API tests: accounts with API tokens, a bearer client."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import psycopg

from app import audit
from app.authority import tokens, users


async def token_for(
    database_url: str,
    secret_key: str,
    *,
    role: str = "staff",
    perms: Iterable[str] = (),
    scope: Iterable[str] | None = None,
    days: int = 30,
    email: str | None = None,
) -> tuple[str, int, int]:
    """A new account with `role` and direct `perms`, and a token for it: (token, token id,
    user id). `scope` None is the read-only default."""
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="test@host")
    email = email or f"api-{role}-{secrets.token_hex(4)}@example.com"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        user = await users.create(conn, ctx, None, email=email, role=role)
        held = list(perms)
        if held:
            await users.grant(conn, ctx, None, user.id, held)
        made, token = await tokens.create(
            conn, ctx, None, owner_id=user.id, name="test", days=days, scope=scope
        )
    return token, made.id, user.id


class Bearer:
    """A script: no cookies, no CSRF token, no Origin; only `Authorization: Bearer`."""

    def __init__(self, client: Any, token: str | None) -> None:
        self.client, self.token = client, token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        self.client.session.cookie_jar.clear()
        return await self.client.request(
            method, path, headers={**self.headers(), **kw.pop("headers", {})},
            allow_redirects=False, **kw,
        )  # fmt: skip

    async def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        resp = await self.request(method, path, **kw)
        body = await resp.json(content_type=None)
        return resp.status, body
