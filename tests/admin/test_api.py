"""The JSON API over the demo resources: the same checks, services, audit events and errors
as the pages (real PostgreSQL, real HTTP, a bearer token and nothing else)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.admin.api_support import Bearer, token_for
from tests.admin.conftest import SEED_SQL

ALL_BOOKINGS = ("bookings.view", "bookings.add", "bookings.change", "bookings.delete")


async def _seed(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL)


async def _script(client: Any, database_url: str, secret_key: str, *perms: str) -> Bearer:
    token, _id, _uid = await token_for(
        database_url, secret_key, perms=perms or ALL_BOOKINGS, scope=perms or ALL_BOOKINGS
    )
    return Bearer(client, token)


async def test_list_filters_search_order_and_cursor(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    api = await _script(client, database_url, secret_key, "bookings.view")
    status, page = await api.json("GET", "/admin/api/bookings/?status=cancelled&per_page=10&o=id")
    assert status == 200, page
    assert [r["values"]["id"] for r in page["rows"]] == list(range(3, 53, 5))
    assert [r["key"] for r in page["rows"]][:2] == ["3", "8"]
    assert {r["values"]["status"] for r in page["rows"]} == {"cancelled"}
    status, nxt = await api.json(
        "GET",
        f"/admin/api/bookings/?status=cancelled&per_page=10&o=id&cursor={page['next_cursor']}",
    )
    assert status == 200 and nxt["rows"][0]["values"]["id"] == 53
    status, found = await api.json("GET", "/admin/api/bookings/?q=arrival&per_page=500")
    assert status == 200 and len(found["rows"]) == 30
    # A bad parameter: the list's own allow-list, as JSON Problem/Why/Fix with the field.
    status, bad = await api.json("GET", "/admin/api/bookings/?colour=red")
    assert status == 400 and "colour" in bad["fields"] and bad["problem"]
    # A tampered cursor is refused, not trusted.
    status, bad = await api.json("GET", "/admin/api/bookings/?cursor=abc")
    assert status == 400, bad


async def test_create_read_update_conflict_delete(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    token, token_id, user_id = await token_for(
        database_url, secret_key, perms=ALL_BOOKINGS, scope=ALL_BOOKINGS
    )
    api = Bearer(client, token)
    status, made = await api.json(
        "POST",
        "/admin/api/bookings/",
        json={"customer_id": 3, "status": "pending", "amount": 12.5,
              "scheduled_at": "2025-01-02T10:00:00+00:00"},
    )  # fmt: skip
    assert status == 201, made
    key = made["key"]
    assert made["values"]["amount"] == "12.50" and made["values"]["customer_id"] == 3
    assert made["values"]["scheduled_at"] == "2025-01-02T10:00:00.000000Z"
    status, got = await api.json("GET", f"/admin/api/bookings/{key}")
    assert status == 200 and got["version"] == made["version"]
    # Update at the version read.
    status, saved = await api.json(
        "PATCH",
        f"/admin/api/bookings/{key}",
        json={
            "version": got["version"],
            "values": {"status": "confirmed"},
            "original": got["values"],
        },
    )
    assert status == 200 and saved["values"]["status"] == "confirmed", saved
    # The same stale version again: 409 with what changed since the values read.
    status, stale = await api.json(
        "PATCH",
        f"/admin/api/bookings/{key}",
        json={"version": got["version"], "values": {"notes": "late"}, "original": got["values"]},
    )
    assert status == 409, stale
    # Only the real change: times and decimals read and sent back compare equal.
    assert stale["changes"] == {"status": {"from": "pending", "to": "confirmed"}}
    assert stale["version"] == saved["version"] and stale["problem"] and stale["fix"]
    # Validation errors: field → messages, the form's own words.
    status, bad = await api.json(
        "PATCH",
        f"/admin/api/bookings/{key}",
        json={"version": saved["version"], "values": {"status": "lost", "amount": "x", "nope": 1}},
    )
    assert status == 400, bad
    assert set(bad["fields"]) == {"status", "amount", "nope"}
    assert all(isinstance(v, list) and v for v in bad["fields"].values())
    status, bad = await api.json("POST", "/admin/api/bookings/", json={"status": "pending"})
    assert status == 400 and "customer_id" in bad["fields"], bad
    # Delete, then it is gone.
    status, gone = await api.json("DELETE", f"/admin/api/bookings/{key}")
    assert status == 200 and gone == {"deleted": key}
    status, missing = await api.json("GET", f"/admin/api/bookings/{key}")
    assert status == 404 and missing["problem"]
    # Every change is audited as the token's owner, naming the token.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT event_type, actor_id, metadata->>'api_token_id', session_id FROM keel_audit"
            " WHERE target_resource = 'bookings' AND target_id = %s ORDER BY id",
            (key,),
        )
        rows = await cur.fetchall()
    assert rows == [
        ("create", user_id, str(token_id), None),
        ("update", user_id, str(token_id), None),
        ("delete", user_id, str(token_id), None),
    ]


async def test_declared_action_and_delete_conflict(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    perms = ("bookings.view", "bookings.confirm", "customers.view", "customers.delete")
    api = await _script(client, database_url, secret_key, *perms)
    status, done = await api.json(
        "POST", "/admin/api/bookings/actions/confirm", json={"ids": [1, 2]}
    )
    assert status == 200 and done == {"done": [1, 2], "count": 2}, done
    status, got = await api.json("GET", "/admin/api/bookings/1")
    assert got["values"]["status"] == "confirmed"
    # No such action; bulk delete is not an API action (it needs the re-auth wall).
    status, body = await api.json("POST", "/admin/api/bookings/actions/delete", json={"ids": [1]})
    assert status == 404, body
    # A customer with bookings: the database refuses, the API says why (409, not a 500).
    status, body = await api.json("DELETE", "/admin/api/customers/1")
    assert status == 409 and body["problem"], body
    status, body = await api.json("POST", "/admin/api/bookings/actions/confirm", json={"ids": []})
    assert status == 400 and body["fields"]["ids"]


async def test_not_json_and_unknown_resource(
    client: Any, database_url: str, secret_key: str
) -> None:
    api = await _script(client, database_url, secret_key)
    status, body = await api.json("POST", "/admin/api/bookings/", data=b"{nope")
    assert status == 400 and body["problem"] == "The request body is not JSON."
    status, body = await api.json("GET", "/admin/api/nothing/")
    assert status == 404 and body["problem"]


async def test_read_only_mode_and_read_only_resources_refuse_api_writes(
    aiohttp_client: Any, database_url: str, secret_key: str
) -> None:
    """Global read-only mode and a resource declared read-only refuse API writes as they refuse
    the forms (403, Problem as JSON); the OpenAPI document then offers no writes there."""
    from dataclasses import replace

    from app.admin.registry import site_registry
    from app.admin.resources import register
    from app.admin.setup import REGISTRY
    from app.web.app import build_app
    from tests.admin.test_readonly import make_config

    await _seed(database_url)
    perms = ("technicians.view", "technicians.add", "customers.view", "customers.add")
    token, _i, _u = await token_for(database_url, secret_key, perms=perms, scope=perms)
    glob = await aiohttp_client(build_app(make_config(database_url, secret_key, read_only=True)))
    status, body = await Bearer(glob, token).json(
        "POST", "/admin/api/customers/", json={"name": "C", "email": "c@x.test", "city": "Oslo"}
    )
    assert status == 403 and "Read-only mode is on" in body["problem"], body
    app = build_app(make_config(database_url, secret_key))
    app[REGISTRY] = register(
        *(replace(r, read_only=True) if r.table == "technicians" else r for r in site_registry())
    )
    api = Bearer(await aiohttp_client(app), token)
    status, body = await api.json(
        "POST", "/admin/api/technicians/", json={"name": "N", "email": "n@x.test"}
    )
    assert status == 403 and "read-only" in body["problem"], body
    status, _b = await api.json(
        "POST", "/admin/api/customers/", json={"name": "C", "email": "c@x.test", "city": "Oslo"}
    )
    assert status == 201
    status, doc = await api.json("GET", "/admin/api/openapi.json")
    assert set(doc["paths"]["/admin/api/technicians/"]) == {"get"}
    assert set(doc["paths"]["/admin/api/customers/"]) == {"get", "post"}
