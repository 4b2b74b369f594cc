"""API tokens: made within the owner's permissions, stored hashed, refused once expired or
revoked, Bearer only, rate-limited, and never reaching a re-auth-guarded operation (real
PostgreSQL, real HTTP; the CLI as a real process)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from app import audit
from app.authority import ratelimit, tokens, users
from app.errors import Invalid, PermissionDenied
from tests.admin.api_support import Bearer, token_for
from tests.admin.conftest import SEED_SQL
from tests.admin.test_edit_support import ORIGIN, sign_in
from tests.authority.test_cli_user import run
from tests.helpers import keel_env

BOOKING = {
    "customer_id": 1,
    "status": "pending",
    "amount": 3,
    "scheduled_at": "2025-01-01T09:00:00Z",
}


def _ctx(secret_key: str) -> audit.Context:
    return audit.Context(audit_key=audit.derive_key(secret_key), os_actor="test@host")


async def _seed(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL)


async def test_scope_is_a_subset_of_the_owners_permissions_and_read_only_by_default(
    database_url: str, secret_key: str
) -> None:
    ctx = _ctx(secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        staff = await users.create(conn, ctx, None, email="s@example.com", role="staff")
        await users.grant(conn, ctx, None, staff.id, ["bookings.view", "bookings.change"])
        made, _t = await tokens.create(conn, ctx, None, owner_id=staff.id, name="sync")
        assert made.scope == ["bookings.view"] and made.read_only
        with pytest.raises(Invalid) as refused:
            await tokens.create(
                conn, ctx, None, owner_id=staff.id, name="x", scope=["customers.view"]
            )
        assert "customers.view" in refused.value.problem
        with pytest.raises(Invalid):
            await tokens.create(conn, ctx, None, owner_id=staff.id, name="x", days=400)
        # A staff member makes tokens for themself only; an administrator for a service account.
        other = await users.create(conn, ctx, None, email="svc@example.com", role="staff")
        await users.grant(conn, ctx, None, other.id, ["bookings.view"])
        me = await _principal(conn, staff.id)
        with pytest.raises(PermissionDenied):
            await tokens.create(conn, ctx, me, owner_id=other.id, name="x")
        admin = await users.create(conn, ctx, None, email="a@example.com", role="administrator")
        made, _t = await tokens.create(
            conn, ctx, await _principal(conn, admin.id), owner_id=other.id, name="svc"
        )
        assert made.created_by == admin.id and made.user_id == other.id
        # A `user`-role account never enters the admin: no token.
        plain = await users.create(conn, ctx, None, email="u@example.com", role="user")
        with pytest.raises(Invalid):
            await tokens.create(conn, ctx, None, owner_id=plain.id, name="x")
        cur = await conn.execute(
            "SELECT event_type, metadata->>'name' FROM keel_audit"
            " WHERE event_type LIKE 'api_token%%' ORDER BY id"
        )
        assert await cur.fetchall() == [("api_token_created", "sync"), ("api_token_created", "svc")]


async def _principal(conn: Any, user_id: int) -> Any:
    from app.authority.principal import Principal

    u = await users.get(conn, user_id)
    return Principal(u.id, u.email, u.role, u.email)


async def test_the_token_is_nowhere_in_the_database_in_plaintext(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    token, _id, _uid = await token_for(
        database_url, secret_key, perms=("bookings.view", "bookings.add"),
        scope=("bookings.view", "bookings.add"),
    )  # fmt: skip
    status, _body = await Bearer(client, token).json("POST", "/admin/api/bookings/", json=BOOKING)
    assert status == 201
    secret = token.removeprefix(tokens.PREFIX)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # Every text-like value of every table, tokens, audit and rate counters included.
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for (table,) in await cur.fetchall():
            dump = await (await conn.execute(f'SELECT t::text FROM "{table}" t')).fetchall()
            for (row,) in dump:
                assert secret not in row and secret[:20] not in row, table
        stored = await (await conn.execute("SELECT token_hash FROM keel_api_tokens")).fetchone()
        assert stored is not None and bytes(stored[0]) == tokens.hash_token(token)


async def test_expired_revoked_and_misplaced_tokens_are_refused(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    token, token_id, _uid = await token_for(database_url, secret_key, perms=("bookings.view",))
    api = Bearer(client, token)
    assert (await api.json("GET", "/admin/api/bookings/1"))[0] == 200
    # Only the Authorization header: not a cookie, not the query string.
    for where in (
        {"headers": {"Cookie": f"keel_session={token}"}},
        {"params": {"access_token": token}},
        {"params": {"token": token}},
        {"headers": {"Authorization": f"Token {token}"}},
    ):
        status, body = await Bearer(client, None).json("GET", "/admin/api/bookings/1", **where)
        assert status == 401 and body["problem"], where
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE keel_api_tokens SET created_at = now() - interval '2 days',"
            " expires_at = now() - interval '1 second' WHERE id = %s",
            (token_id,),
        )
    status, body = await api.json("GET", "/admin/api/bookings/1")
    assert status == 401 and "not valid" in body["problem"] and body["fix"]
    token2, token2_id, _uid = await token_for(database_url, secret_key, perms=("bookings.view",))
    api2 = Bearer(client, token2)
    assert (await api2.json("GET", "/admin/api/bookings/1"))[0] == 200
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        done = await tokens.revoke(conn, _ctx(secret_key), None, token2_id)
        listed = await tokens.list_for_user(conn, done.user_id)
    assert listed[0].state() == "revoked" and listed[0].last_used_at is not None
    status, _body = await api2.json("GET", "/admin/api/bookings/1")
    assert status == 401


async def test_a_cookie_less_csrf_less_json_write_needs_a_token(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    perms = ("bookings.view", "bookings.add")
    token, _id, _uid = await token_for(database_url, secret_key, perms=perms, scope=perms)
    status, body = await Bearer(client, token).json("POST", "/admin/api/bookings/", json=BOOKING)
    assert status == 201, body
    status, body = await Bearer(client, None).json("POST", "/admin/api/bookings/", json=BOOKING)
    assert status == 401 and body["problem"]
    # A signed-in browser with its CSRF token is no substitute for a token on API writes.
    browser = await sign_in(client, database_url, secret_key, role="administrator", elevated=True)
    resp = await client.post(
        "/admin/api/bookings/", json=BOOKING, allow_redirects=False,
        headers=browser.headers({"X-CSRF-Token": browser.csrf}),
    )  # fmt: skip
    assert resp.status == 401, await resp.text()
    # The same browser may read the API (and its description) with its session.
    resp = await client.get("/admin/api/bookings/1", headers=browser.headers())
    assert resp.status == 200
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        n = await (await conn.execute("SELECT count(*) FROM bookings")).fetchone()
    assert n == (301,)


async def test_a_token_never_reaches_a_reauth_guarded_operation(
    client: Any, database_url: str, secret_key: str
) -> None:
    """An administrator's token with every permission: the users and groups areas, the
    account pages (tokens, password, sessions), bulk delete (behind the re-auth wall) and
    every other address outside the API are refused; nothing changes."""
    from app.admin.registry import declared_permissions, site_registry

    await _seed(database_url)
    every = [n for n, _ in declared_permissions(site_registry())]
    token, _id, user_id = await token_for(
        database_url, secret_key, role="administrator", scope=every
    )
    api = Bearer(client, token)
    target = await users_id(database_url)
    attempts = [
        ("GET", "/admin/users/"),
        ("POST", "/admin/users/new"),
        ("POST", f"/admin/users/{target}/edit"),
        ("POST", f"/admin/users/{target}/delete"),
        ("POST", "/admin/groups/new"),
        ("GET", "/account/tokens"),
        ("POST", "/account/tokens"),
        ("POST", "/account/password"),
        ("POST", "/account/sessions"),
        ("GET", "/admin/bookings/bulk/delete?ids=1"),
        ("POST", "/admin/bookings/bulk/delete"),
        ("POST", "/admin/bookings/1/delete"),
        ("GET", "/admin/audit/"),
        ("POST", "/reauth"),
        ("POST", "/login"),
    ]
    for method, path in attempts:
        resp = await api.request(method, path, data={"ids": "1", "confirmed": "1"})
        assert resp.status == 403, (method, path, resp.status)
    # The API's own bulk delete does not exist: only declared actions are offered.
    status, _b = await api.json("POST", "/admin/api/bookings/actions/delete", json={"ids": [1]})
    assert status == 404
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        left = await (await conn.execute("SELECT count(*) FROM bookings")).fetchone()
        changed = await (
            await conn.execute("SELECT count(*) FROM keel_audit WHERE actor_id = %s", (user_id,))
        ).fetchone()
    assert left == (300,) and changed == (0,)


async def users_id(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT min(id) FROM keel_users")).fetchone()
    assert row is not None
    return int(row[0])


async def test_tokens_are_rate_limited(
    client: Any, database_url: str, secret_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "PER_TOKEN", ratelimit.Limit("api_token", 3, 60.0))
    token, _id, _uid = await token_for(database_url, secret_key, perms=("bookings.view",))
    api = Bearer(client, token)
    statuses = [(await api.request("GET", "/admin/api/bookings/")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await api.request("GET", "/admin/api/bookings/")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    monkeypatch.setattr(tokens, "BAD_TOKEN_IP", ratelimit.Limit("api_token_bad_ip", 2, 60.0))
    bad = Bearer(client, tokens.PREFIX + "x" * 43)
    statuses = [(await bad.request("GET", "/admin/api/bookings/")).status for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_the_account_page_makes_shows_once_lists_and_revokes(
    client: Any, database_url: str, secret_key: str
) -> None:
    browser = await sign_in(
        client, database_url, secret_key, role="staff", perms=("bookings.view", "bookings.change")
    )
    page = await (await browser.get("/account/tokens")).text()
    assert "No tokens yet" in page and 'value="bookings.view" checked' in page.replace("\n", " ")
    form = {"action": "create", "name": "nightly", "days": "30", "scope": "bookings.view"}
    resp = await browser.post("/account/tokens", form)
    assert resp.status == 303 and resp.headers["Location"].startswith("/reauth")  # password first
    elevated = await sign_in(
        client, database_url, secret_key, role="staff", perms=("bookings.view",), elevated=True
    )
    resp = await elevated.post("/account/tokens", form)
    shown = await resp.text()
    assert resp.status == 200, shown
    token = shown.split("data-new-token>", 1)[1].split("<", 1)[0]
    assert tokens.well_formed(token)
    assert (await Bearer(client, token).json("GET", "/admin/api/bookings/"))[0] == 200
    listed = await (await elevated.get("/account/tokens")).text()
    assert token not in listed and token[:12] in listed and "nightly" in listed
    # Beyond the owner's permissions: refused with the reason, nothing made.
    resp = await elevated.post("/account/tokens", {**form, "scope": "customers.delete"})
    assert resp.status == 400 and "customers.delete" in await resp.text()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        (token_id,) = await (await conn.execute("SELECT max(id) FROM keel_api_tokens")).fetchone()  # type: ignore[misc]
    resp = await elevated.post("/account/tokens", {"action": "revoke", "token_id": str(token_id)})
    assert resp.status == 303
    assert (await Bearer(client, token).json("GET", "/admin/api/bookings/"))[0] == 401
    # Someone else's token cannot be revoked from here.
    resp = await browser.post("/account/tokens", {"action": "revoke", "token_id": str(token_id)})
    assert resp.status == 400


async def test_an_administrator_makes_a_token_for_a_service_account_on_the_page(
    client: Any, database_url: str, secret_key: str
) -> None:
    ctx = _ctx(secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        svc = await users.create(conn, ctx, None, email="svc@example.com", role="staff")
        await users.grant(conn, ctx, None, svc.id, ["bookings.view"])
    admin = await sign_in(client, database_url, secret_key, role="administrator", elevated=True)
    form = {"action": "create", "name": "erp", "days": "90", "scope": "bookings.view",
            "for_email": "svc@example.com"}  # fmt: skip
    resp = await admin.post("/account/tokens", form)
    page = await resp.text()
    assert resp.status == 200, page
    token = page.split("data-new-token>", 1)[1].split("<", 1)[0]
    listed = await (await admin.get("/account/tokens")).text()
    assert "Tokens you made for other accounts" in listed and "svc@example.com" in listed
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        found = await tokens.lookup(conn, token)
    assert found is not None and found[1].email == "svc@example.com"
    # More than the service account holds: refused, whatever the administrator may do.
    resp = await admin.post("/account/tokens", {**form, "scope": "bookings.delete"})
    assert resp.status == 400 and "bookings.delete" in await resp.text()
    # Staff cannot make tokens for others.
    staff = await sign_in(
        client, database_url, secret_key, role="staff", perms=("bookings.view",), elevated=True
    )
    resp = await staff.post("/account/tokens", form)
    assert resp.status == 403 and "administrator" in await resp.text()


async def test_keel_token_create_list_revoke(database_url: str, secret_key: str) -> None:
    env = keel_env(DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")
    ctx = _ctx(secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        svc = await users.create(conn, ctx, None, email="svc@example.com", role="staff")
        await users.grant(conn, ctx, None, svc.id, ["bookings.view", "bookings.change"])
    proc = run(env, "token", "create", "--email", "svc@example.com", "--name", "sync", "--json")
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert tokens.well_formed(made["token"]) and made["scope"] == ["bookings.view"]
    proc = run(env, "token", "create", "--email", "svc@example.com", "--name", "w",
               "--scope", "bookings.view", "bookings.delete")  # fmt: skip
    assert proc.returncode == 2 and "Problem: " in proc.stderr and "bookings.delete" in proc.stderr
    listed = json.loads(run(env, "token", "list", "--email", "svc@example.com", "--json").stdout)
    assert [(t["name"], t["state"]) for t in listed] == [("sync", "active")]
    assert made["token"] not in json.dumps(listed)
    proc = run(env, "token", "revoke", str(made["id"]))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(run(env, "token", "list", "--json").stdout)
    assert [(t["name"], t["state"]) for t in listed] == [("sync", "revoked")]
    proc = run(env, "token", "revoke", "999999")
    assert proc.returncode == 1 and "Problem: " in proc.stderr
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT event_type, os_actor IS NOT NULL FROM keel_audit"
            " WHERE event_type LIKE 'api_token%%' ORDER BY id"
        )
        assert await cur.fetchall() == [("api_token_created", True), ("api_token_revoked", True)]
    assert ORIGIN  # the browser helpers' origin is the test config's
