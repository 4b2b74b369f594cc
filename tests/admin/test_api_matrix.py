"""The route × role matrix, extended to API tokens: every JSON API route of every declared
resource, called with tokens of each scope; allowed ⇔ the token's scope names the permission
the route needs (and its owner still holds it). A refusal is a 403 naming what is missing.

The routes come from the app's router, so a new API route without an expectation here fails.
An administrator's token is limited by its scope like anyone's: the role's bypass of
per-resource permissions never widens a token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from app import audit
from app.admin import edit_views, writes
from app.admin.setup import ADMIN
from app.authority import users
from tests.admin.api_support import Bearer, token_for
from tests.admin.conftest import SEED_SQL
from tests.admin.test_route_matrix import PERMISSIONS, SLUGS, Rows, create_form, make_rows

API = "/admin/api"
ENTRY = ""  # routes any token of an admin account may use: the description
ACTION = "<action>"
EXPECTED: dict[str, dict[str, str]] = {
    f"{API}/": {"GET": ENTRY},
    f"{API}/openapi.json": {"GET": ENTRY},
    f"{API}/{{resource}}/": {"GET": "view", "POST": "add"},
    f"{API}/{{resource}}/actions/{{action}}": {"POST": ACTION},
    f"{API}/{{resource}}/{{pk}}": {"GET": "view", "PATCH": "change", "DELETE": "delete"},
}


def registered(app: Any) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and path.startswith(f"{API}/"):
            routes.setdefault(path, set()).add(route.method)
    return routes


@dataclass(frozen=True)
class Probe:
    route: str
    method: str
    url: str
    perm: str  # "" for the description
    ok: int
    body: Callable[[], Awaitable[Any]] | None = None
    order: int = 0


def _json_values(b: Any, form: dict[str, str]) -> dict[str, Any]:
    """A create form's text as the API's JSON values."""
    out: dict[str, Any] = {}
    for spec in edit_views.field_specs(b):
        if spec.readonly:
            continue
        if spec.widget == "checkbox":
            out[spec.name] = form.get(spec.name) == "on"
        elif spec.name in form:
            text = form[spec.name]
            out[spec.name] = json.loads(text) if spec.type_name in ("json", "jsonb") else text
    return out


def probes(b: Any, rows: Rows, database_url: str) -> list[Probe]:
    base = f"{API}/{b.slug}"
    subject = quote(str(rows.subject), safe="")
    victim = quote(str(rows.victims[0]), safe="")

    async def new_body() -> Any:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            row = await writes.fetch_row(conn, b, rows.subject)
        assert row is not None
        return _json_values(b, create_form(b, row, abs(hash((b.slug, id(row)))) % 10**6))

    async def patch_body() -> Any:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            row = await writes.fetch_row(conn, b, rows.subject)
        assert row is not None
        return {"version": writes.row_version(b.table, row), "values": {}}

    async def ids() -> Any:
        return {"ids": [rows.subject]}

    res = f"{API}/{{resource}}"
    out = [
        Probe(f"{res}/", "GET", f"{base}/", b.permission("view"), 200),
        Probe(f"{res}/{{pk}}", "GET", f"{base}/{subject}", b.permission("view"), 200),
        Probe(f"{res}/", "POST", f"{base}/", b.permission("add"), 201, new_body, 1),
        Probe(f"{res}/{{pk}}", "PATCH", f"{base}/{subject}", b.permission("change"), 200,
              patch_body, 1),
        Probe(f"{res}/{{pk}}", "DELETE", f"{base}/{victim}", b.permission("delete"), 200, None, 3),
    ]  # fmt: skip
    for action in b.resource.actions:
        out.append(
            Probe(f"{res}/actions/{{action}}", "POST", f"{base}/actions/{action.name}",
                  b.permission(action.name), 200, ids, 2)
        )  # fmt: skip
    return sorted(out, key=lambda p: p.order)


ENTRY_PROBES = [
    Probe(f"{API}/", "GET", f"{API}/", ENTRY, 200),
    Probe(f"{API}/openapi.json", "GET", f"{API}/openapi.json", ENTRY, 200),
]


async def verdicts(api: Bearer, batch: list[Probe]) -> dict[Probe, bool]:
    out: dict[Probe, bool] = {}
    problems = []
    for p in batch:
        body = await p.body() if p.body else None
        resp = await api.request(p.method, p.url, json=body)
        text = await resp.text()
        if resp.status == p.ok:
            out[p] = True
        elif resp.status == 403 and p.perm and json.loads(text).get("missing") == p.perm:
            out[p] = False
        else:
            problems.append(f"{p.method} {p.url}: {resp.status} {text[:300]!r}")
    assert not problems, problems
    return out


@pytest.fixture
async def fresh(client: Any, database_url: str, secret_key: str) -> Any:
    app = client.server.app
    routes = registered(app)
    assert routes == {path: set(methods) for path, methods in EXPECTED.items()}, (
        f"API routes and expectations differ: the router has {sorted(routes)}"
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL)
    bound = app[ADMIN]

    async def make() -> dict[str, list[Probe]]:
        rows = await make_rows(database_url, secret_key, bound)
        every = {slug: probes(b, rows[slug], database_url) for slug, b in bound.items()}
        covered = {(p.route, p.method) for ps in every.values() for p in ps}
        covered |= {(p.route, p.method) for p in ENTRY_PROBES}
        assert covered == {(r, m) for r, ms in EXPECTED.items() for m in ms}
        return every

    return make


@pytest.mark.parametrize("slug", SLUGS)
async def test_administrator_tokens_of_each_single_permission(
    client: Any, database_url: str, secret_key: str, fresh: Any, slug: str
) -> None:
    """An administrator's token scoped to one permission P uses exactly the routes needing P."""
    wrong = []
    for perm in [p for p in PERMISSIONS if p.startswith(f"{slug}.")]:
        token, _i, _u = await token_for(
            database_url, secret_key, role="administrator", scope=(perm,)
        )
        got = await verdicts(Bearer(client, token), (await fresh())[slug] + ENTRY_PROBES)
        wrong += [
            f"token {perm}: {p.method} {p.url} needs {p.perm or 'entry'}, "
            f"got {'in' if ok else 'refused'}"
            for p, ok in got.items()
            if ok != (p.perm in (perm, ENTRY))
        ]
    assert not wrong, wrong


async def test_the_default_read_only_scope_reads_everything_and_changes_nothing(
    client: Any, database_url: str, secret_key: str, fresh: Any
) -> None:
    """Staff holding every permission, with a default (read-only) token."""
    token, _i, _u = await token_for(database_url, secret_key, perms=PERMISSIONS)
    every = await fresh()
    got = await verdicts(Bearer(client, token), [p for ps in every.values() for p in ps])
    wrong = [f"{p.method} {p.url}" for p, ok in got.items() if ok != p.perm.endswith(".view")]
    assert not wrong, wrong


async def test_a_permission_taken_from_the_owner_is_taken_from_the_token(
    client: Any, database_url: str, secret_key: str, fresh: Any
) -> None:
    """Scope is a ceiling, not a grant: the owner must still hold it, read on every request."""
    held = tuple(p for p in PERMISSIONS if p.startswith("customers."))
    token, _i, user_id = await token_for(database_url, secret_key, perms=held, scope=held)
    batch = (await fresh())["customers"]
    assert all((await verdicts(Bearer(client, token), batch)).values())
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="test@host")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await users.revoke(conn, ctx, None, user_id, list(held))
    batch = (await fresh())["customers"]
    assert not any((await verdicts(Bearer(client, token), batch)).values())


async def test_a_token_reaches_no_address_outside_the_api(
    client: Any, database_url: str, secret_key: str
) -> None:
    """Every other route of the application, each method, with an administrator's token of
    every permission: 403 (or 404 where the address names nothing), never a page."""
    import re

    token, _i, user_id = await token_for(
        database_url, secret_key, role="administrator", scope=PERMISSIONS
    )
    api = Bearer(client, token)
    seen = []
    for route in client.server.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or not path or path.startswith(f"{API}/"):
            continue
        url = re.sub(r"\{resource\}", "bookings", path)
        url = re.sub(r"\{token\}", "a" * 24, url)  # an import preview's key has its own shape
        url = re.sub(r"\{[^}]+\}", "1", url)
        resp = await api.request(route.method, url, data={"csrf_token": "x"})
        seen.append((route.method, path, resp.status))
    wrong = [s for s in seen if s[2] not in (403,)]
    assert len(seen) > 40 and not wrong, wrong
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM keel_audit WHERE actor_id = %s", (user_id,))
        assert await cur.fetchone() == (0,)
