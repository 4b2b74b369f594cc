"""Issue 4 acceptance: every admin route of every declared resource, requested as anonymous, as
each of the five roles, and as staff with and without each permission; allowed ⇔ the requirements (docs/requirements.md).

The routes come from the app's own router and the resources from its bound declarations, so a
new route (or a new resource, action or permission) without an expectation here fails the test.

Requirements: AUTHZ-2 (`user` only its own account pages; staff and up enter the admin; administrators
and developers bypass per-resource permissions), AUTHZ-4 (`<slug>.view|add|change|delete` and
`<slug>.<action>`), AUTHZ-8 (a refusal is a 403 naming what is missing; the route guard is the
check), the URL map (the resource URLs), LIST-8/9/10, EDIT-5/8/9, REAUTH-1 (bulk delete behind the
re-auth wall: every signed-in session here is elevated, so the permission is what decides).

Verdicts, strictly: *allowed* is the status a working request gets (200 for a page, 303 after a
successful POST: every POST carries a valid, complete form, so no 400 is accepted as "allowed");
*refused* is 403, or for anonymous the 303 to `/login?return_to=…`. Anything else fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestClient
from psycopg import sql

from app import audit
from app.admin import edit_views, writes
from app.admin.registry import declared_permissions, site_registry
from app.admin.resources import BoundResource
from app.admin.setup import ADMIN
from tests.admin.conftest import SEED_SQL
from tests.admin.test_edit_support import ORIGIN, Browser, sign_in
from tests.web.conftest import login_form

ACTION = "<action>"  # the bulk route's permission is the action's own (delete → delete)
RES = "/admin/{resource}"
# canonical route → {method: the CRUD permission it needs}, with the reason.
EXPECTED: dict[str, tuple[dict[str, str], str]] = {
    f"{RES}/": ({"GET": "view"}, "LIST-1..7, LIST-10 (?format=json)"),
    f"{RES}/export.csv": ({"GET": "view"}, "LIST-9 export of the list"),
    f"{RES}/export.jsonl": ({"GET": "view"}, "LIST-9 export of the list"),
    f"{RES}/saved-filters": ({"POST": "view"}, "LIST-8 saving one's own list query"),
    f"{RES}/saved-filters/{{filter_id}}/delete": ({"POST": "view"}, "LIST-8"),
    f"{RES}/new": ({"GET": "add", "POST": "add"}, "EDIT-1 create"),
    f"{RES}/lookup": ({"GET": "view"}, "EDIT-9 autocomplete requires view"),
    f"{RES}/bulk/{{action}}": ({"GET": ACTION, "POST": ACTION}, "EDIT-8, AUTHZ-4"),
    f"{RES}/bulk-edit": ({"GET": "change", "POST": "change"}, "EDIT-8 bulk edit of fields"),
    f"{RES}/{{pk}}/": ({"GET": "view", "POST": "change"}, "EDIT-1..4"),
    f"{RES}/{{pk}}/delete": ({"GET": "delete", "POST": "delete"}, "EDIT-5"),
    f"{RES}/{{pk}}/history": ({"GET": "view"}, "AUDIT-8 per-object history"),
    f"{RES}/import": (
        {"GET": "add", "POST": "add"},
        "EDIT-10 CSV import: the upload page and upload",
    ),
    f"{RES}/import/{{token}}": (
        {"GET": "add", "POST": "add"},
        "EDIT-10 preview and apply; the guard runs before the upload is looked up, so an "
        "allowed request for an upload that is not the caller's is a 404",
    ),
}
ROLES = ("anonymous", "user", "staff", "supervisor", "administrator", "developer")
BYPASS = ("administrator", "developer")  # AUTHZ-2
PERMISSIONS = [name for name, _ in declared_permissions(site_registry())]
SLUGS = [r.key for r in site_registry()]
UPLOAD = "<file>"  # a form field sent as a multipart file upload, after the CSRF token
NOBODYS = "A" * 24  # an upload token nobody owns
_SERIAL = itertools.count(1)  # keeps unique columns unique across every row the matrix makes


def registered(app: Any) -> dict[str, set[str]]:
    """Canonical path → methods of every resource route, read from the router."""
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.handler is edit_views.without_slash:  # a redirect, checked on its own below
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and path.startswith(f"{RES}/"):
            routes.setdefault(path, set()).add(route.method)
    return routes


@dataclass(frozen=True)
class Probe:
    """One concrete request: which route it exercises, what it needs, what success looks like."""

    route: str
    method: str
    url: str
    perm: str
    ok: int  # the status of a request that was let through and worked
    form: Callable[[], Awaitable[dict[str, str]]] | None = None  # built just before sending
    order: int = 0  # destructive requests last


@dataclass(frozen=True)
class Rows:
    """Rows of one resource made for the matrix: one to view and edit, two to delete."""

    subject: Any
    victims: list[Any]


def const(form: dict[str, str]) -> Callable[[], Awaitable[dict[str, str]]]:
    async def build() -> dict[str, str]:
        return form

    return build


def _key(value: Any) -> str:
    return quote(str(value), safe="")


async def _first_row(conn: psycopg.AsyncConnection[Any], b: BoundResource) -> dict[str, Any]:
    row = await writes.fetch_row(conn, b, await _first_key(conn, b))
    assert row is not None
    return row


async def _first_key(conn: psycopg.AsyncConnection[Any], b: BoundResource) -> Any:
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY 1 LIMIT 1").format(
            sql.Identifier(b.pk), sql.Identifier(b.table.schema, b.table.name)
        )
    )
    found = await cur.fetchone()
    assert found, f"SEED_SQL puts no row in {b.table.name}: the matrix needs one per resource"
    return found[0]


def create_form(b: BoundResource, model: Mapping[str, Any], n: int) -> dict[str, str]:
    """A complete, valid create form: an existing row's values as the form shows them, with
    unique text columns made unique again."""
    shown = edit_views.displayed(b, model)
    form = {s.name: shown[s.name] for s in edit_views.field_specs(b) if not s.readonly}
    form = {name: value for name, value in form.items() if value != ""}
    for unique in b.table.uniques:
        for name in unique.columns:
            if name in form:
                form[name] = f"m{n}{form[name]}"
    return form


async def make_rows(
    database_url: str, secret_key: str, bound: Mapping[str, BoundResource]
) -> dict[str, Rows]:
    """Per resource: a subject row and two victims without dependents, made through the same
    validated path as the create form."""
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="matrix@test")
    out: dict[str, Rows] = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for slug, b in bound.items():
            model = await _first_row(conn, b)
            made = []
            for _ in range(3):
                parsed = edit_views.forms.parse_form(
                    edit_views.field_specs(b), create_form(b, model, next(_SERIAL)), creating=True
                )
                assert parsed.ok, (slug, parsed.errors)
                row = await writes.insert_row(conn, ctx, b, parsed.values)
                made.append(row[b.pk])
            out[slug] = Rows(made[0], made[1:])
    return out


def probes(b: BoundResource, rows: Rows, database_url: str) -> list[Probe]:
    """Every route of one resource made concrete; the expectation table drives the permission."""
    base = f"/admin/{b.slug}"
    subject, (victim, bulk_victim) = _key(rows.subject), rows.victims

    def perm(route: str, method: str, action: str = "") -> str:
        verb = EXPECTED[route][0][method]
        return b.permission(action if verb == ACTION else verb)  # declared overrides apply

    async def edit_form() -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            row = await writes.fetch_row(conn, b, rows.subject)
        assert row is not None
        return {
            **{k: v for k, v in edit_views.displayed(b, row).items() if v != ""},
            "_version": writes.row_version(b.table, row),
            "_original": edit_views.original_json(row),
        }

    async def new_form() -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            row = await writes.fetch_row(conn, b, rows.subject)
        assert row is not None
        return create_form(b, row, next(_SERIAL))

    out = [
        Probe(f"{RES}/", "GET", f"{base}/", perm(f"{RES}/", "GET"), 200),
        Probe(f"{RES}/", "GET", f"{base}/?format=json", perm(f"{RES}/", "GET"), 200),
        Probe(f"{RES}/export.csv", "GET", f"{base}/export.csv", perm(f"{RES}/export.csv", "GET"), 200),
        Probe(f"{RES}/export.jsonl", "GET", f"{base}/export.jsonl", perm(f"{RES}/export.jsonl", "GET"), 200),
        Probe(f"{RES}/new", "GET", f"{base}/new", perm(f"{RES}/new", "GET"), 200),
        Probe(f"{RES}/lookup", "GET", f"{base}/lookup?q=a", perm(f"{RES}/lookup", "GET"), 200),
        Probe(f"{RES}/{{pk}}/", "GET", f"{base}/{subject}/", perm(f"{RES}/{{pk}}/", "GET"), 200),
        Probe(f"{RES}/{{pk}}/history", "GET", f"{base}/{subject}/history", perm(f"{RES}/{{pk}}/history", "GET"), 200),
        Probe(f"{RES}/{{pk}}/delete", "GET", f"{base}/{_key(victim)}/delete", perm(f"{RES}/{{pk}}/delete", "GET"), 200),
        Probe(f"{RES}/saved-filters", "POST", f"{base}/saved-filters", perm(f"{RES}/saved-filters", "POST"), 303,
              const({"name": "Mine", "query": ""})),
        Probe(f"{RES}/saved-filters/{{filter_id}}/delete", "POST", f"{base}/saved-filters/1/delete",
              perm(f"{RES}/saved-filters/{{filter_id}}/delete", "POST"), 303, const({})),
        Probe(f"{RES}/new", "POST", f"{base}/new", perm(f"{RES}/new", "POST"), 303, new_form, 1),
        Probe(f"{RES}/{{pk}}/", "POST", f"{base}/{subject}/", perm(f"{RES}/{{pk}}/", "POST"), 303, edit_form, 1),
        Probe(f"{RES}/{{pk}}/delete", "POST", f"{base}/{_key(victim)}/delete", perm(f"{RES}/{{pk}}/delete", "POST"), 303,
              const({}), 3),
        Probe(f"{RES}/import", "GET", f"{base}/import", perm(f"{RES}/import", "GET"), 200),
        Probe(f"{RES}/import", "POST", f"{base}/import", perm(f"{RES}/import", "POST"), 303,
              const({UPLOAD: "x\n1\n"})),
        Probe(f"{RES}/import/{{token}}", "GET", f"{base}/import/{NOBODYS}", perm(f"{RES}/import/{{token}}", "GET"), 404),
        Probe(f"{RES}/import/{{token}}", "POST", f"{base}/import/{NOBODYS}", perm(f"{RES}/import/{{token}}", "POST"), 404,
              const({"mode": "check"})),
    ]  # fmt: skip
    route = f"{RES}/bulk/{{action}}"
    for action in ["delete", *(a.name for a in b.resource.actions)]:
        target = bulk_victim if action == "delete" else rows.subject
        out += [
            Probe(route, "GET", f"{base}/bulk/{action}?ids={_key(target)}", perm(route, "GET", action), 200),
            Probe(route, "POST", f"{base}/bulk/{action}", perm(route, "POST", action), 303,
                  const({"ids": str(target), "confirmed": "1"}), 2 if action == "delete" else 1),
        ]  # fmt: skip
    if (
        b.resource.bulk_edit is not None
    ):  # the field chooser; applying is tests/admin/test_bulk_edit.py
        route = f"{RES}/bulk-edit"
        out += [
            Probe(route, "GET", f"{base}/bulk-edit?ids={subject}", perm(route, "GET"), 200),
            Probe(route, "POST", f"{base}/bulk-edit", perm(route, "POST"), 200,
                  const({"ids": str(rows.subject)})),
        ]  # fmt: skip
    return sorted(out, key=lambda p: p.order)


class Anonymous:
    """No session: a pre-session CSRF cookie and token, so a refusal is the login wall, not CSRF."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.token = client, token

    async def get(self, path: str) -> Any:
        return await self.client.get(path, allow_redirects=False)

    async def post(self, path: str, data: dict[str, str]) -> Any:
        return await self.client.post(
            path, data=multipart(self.token, data) or {"csrf_token": self.token, **data},
            headers={"Origin": ORIGIN}, allow_redirects=False,
        )  # fmt: skip


def multipart(token: str, data: dict[str, str]) -> aiohttp.FormData | None:
    """An upload form as a browser sends it (the token first), when `data` holds a file."""
    if UPLOAD not in data:
        return None
    form = aiohttp.FormData()
    form.add_field("csrf_token", token)
    form.add_field("file", data[UPLOAD].encode(), filename="matrix.csv", content_type="text/csv")
    return form


async def verdicts(
    who: Browser | Anonymous, batch: list[Probe], *, names_perm: bool = False
) -> dict[Probe, bool]:
    """True (allowed) or False (refused) per probe; any other answer fails the test.

    `names_perm`: a 403 must name the permission that is missing (AUTHZ-8)."""
    out: dict[Probe, bool] = {}
    problems = []
    for p in batch:
        if p.method == "GET":
            resp = await who.get(p.url)
        else:
            data = await p.form() if p.form else {}
            upload = multipart(who.csrf, data) if isinstance(who, Browser) else None
            resp = await who.post(p.url, upload if upload is not None else data)
        body = await resp.text()
        location = resp.headers.get("Location", "")
        if resp.status == p.ok and not location.startswith(("/login", "/reauth")):
            out[p] = True
        elif resp.status == 403 and isinstance(who, Browser):
            out[p] = False
            if names_perm and p.perm not in body:
                problems.append(f"{p.method} {p.url}: the 403 does not name {p.perm}")
        elif isinstance(who, Anonymous) and resp.status == 303 and location.startswith("/login?"):
            out[p] = False
        else:
            problems.append(f"{p.method} {p.url}: {resp.status} {location} {body[:200]!r}")
    assert not problems, problems
    return out


Batch = Callable[..., Awaitable[dict[str, list[Probe]]]]


@pytest.fixture
async def fresh(client: Any, database_url: str, secret_key: str) -> Batch:
    """The seeded database; each call makes new rows for every resource (so each requester
    has its own victims to delete) and returns their probes, per resource slug. `fresh(slug)`
    does so for that one resource only."""
    app = client.server.app
    routes = registered(app)
    assert routes == {path: set(methods) for path, (methods, _) in EXPECTED.items()}, (
        "resource routes and expectations differ: add the new route to EXPECTED with the "
        f"reason; the router has {sorted(routes)}"
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL)
    bound: dict[str, BoundResource] = app[ADMIN]
    assert {f"{slug}.{v}" for slug in bound for v in ("view", "add", "change", "delete")} <= set(
        PERMISSIONS
    )

    async def make(only: str | None = None) -> dict[str, list[Probe]]:
        some = bound if only is None else {only: bound[only]}
        rows = await make_rows(database_url, secret_key, some)
        every = {slug: probes(b, rows[slug], database_url) for slug, b in some.items()}
        if only is None:  # together, the resources exercise every expected route
            covered = {(p.route, p.method) for ps in every.values() for p in ps}
            assert covered == {(r, m) for r, (ms, _) in EXPECTED.items() for m in ms}
        return every

    return make


def flat(every: dict[str, list[Probe]]) -> list[Probe]:
    return [p for ps in every.values() for p in ps]


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_on_every_resource_route(
    client: Any, database_url: str, secret_key: str, fresh: Batch, role: str
) -> None:
    """No permissions held: administrators and developers pass everywhere; anonymous meets the
    login wall; `user` never enters the admin; staff and supervisors are refused everything,
    each refusal naming the permission it lacks."""
    if role == "anonymous":
        who: Browser | Anonymous = Anonymous(client, await login_form(client))
    else:
        who = await sign_in(client, database_url, secret_key, role=role, elevated=True)
    got = await verdicts(who, flat(await fresh()), names_perm=role in ("staff", "supervisor"))
    wrong = [f"{p.method} {p.url}" for p, allowed in got.items() if allowed != (role in BYPASS)]
    assert not wrong, (role, wrong)


@pytest.mark.parametrize("slug", SLUGS)
async def test_staff_with_and_without_each_permission(
    client: Any, database_url: str, secret_key: str, fresh: Batch, slug: str
) -> None:
    """For each permission P of the resource: staff holding only P may use exactly its routes
    that need P; staff holding every other permission of the resource may use all of its routes
    but those. (A route guarded by any other name fails one of the two.)"""
    wrong = []
    for perm in [p for p in PERMISSIONS if p.startswith(f"{slug}.")]:
        others = tuple(p for p in PERMISSIONS if p.startswith(f"{slug}.") and p != perm)
        for held in ((perm,), others):
            who = await sign_in(
                client, database_url, secret_key, role="staff", perms=held, elevated=True
            )
            got = await verdicts(who, (await fresh(slug))[slug], names_perm=True)
            wrong += [
                f"staff with {held}: {p.method} {p.url} needs {p.perm}, got {'in' if ok else 'refused'}"
                for p, ok in got.items()
                if ok != (p.perm in held)
            ]
    assert not wrong, wrong
