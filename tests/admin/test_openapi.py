"""The OpenAPI 3.1 document: valid against the specification's schema, limited to what the
caller may use, and complete: a client built only from the document (its paths, methods,
parameters and schemas; no address written here) drives every operation it lists, for every
demo resource, and every answer matches the schema the document gives for it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from app.admin.openapi import operations
from app.admin.registry import site_registry
from tests.admin.api_support import Bearer, token_for
from tests.admin.conftest import SEED_SQL

_SERIAL = itertools.count(1)


async def _seed(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_SQL)


async def _document(client: Any, token: str) -> dict[str, Any]:
    resp = await Bearer(client, token).request("GET", "/admin/api/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_the_document_validates_and_shows_only_what_the_caller_may_use(
    client: Any, database_url: str, secret_key: str
) -> None:
    admin, _i, _u = await token_for(
        database_url, secret_key, role="administrator", scope=_every_permission()
    )
    doc = await _document(client, admin)
    validate(doc)  # raises on any departure from the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0"
    ops = {(m, p) for m, p, _op in operations(doc)}
    slugs = {r.key for r in site_registry()}
    assert {p.split("/")[3] for _m, p in ops} == slugs
    assert {m for m, _p in ops} == {"get", "post", "patch", "delete"}

    # A read-only token of a staff member who may view bookings only: one resource, reads only.
    reader, _i, _u = await token_for(
        database_url, secret_key, perms=("bookings.view", "customers.add")
    )
    doc = await _document(client, reader)
    validate(doc)
    assert {(m, p) for m, p, _op in operations(doc)} == {
        ("get", "/admin/api/bookings/"),
        ("get", "/admin/api/bookings/{key}"),
    }
    assert "BookingsCreate" not in doc["components"]["schemas"]


def _every_permission() -> list[str]:
    from app.admin.registry import declared_permissions

    return [name for name, _ in declared_permissions(site_registry())]


# ---- a client generated from the document --------------------------------------------------


class DocumentClient:
    """Knows nothing but the document: finds operations by (method, path template), fills in
    path parameters, builds bodies from the request schemas and checks answers against the
    response schemas."""

    def __init__(self, api: Bearer, doc: Mapping[str, Any]) -> None:
        self.api, self.doc = api, doc
        self.components = doc["components"]
        self.called: set[str] = set()

    def schema(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.components["schemas"][name]
        return schema

    def check(self, schema: Mapping[str, Any], value: Any) -> None:
        OAS31Validator({**schema, "components": self.components}).validate(value)

    async def call(
        self, method: str, path: str, op: Mapping[str, Any], *, key: str | None = None,
        body: Any = None,
    ) -> Any:  # fmt: skip
        url = path
        for param in op.get("parameters", ()):
            if param["in"] == "path":
                assert key is not None, f"{op['operationId']} needs {param['name']}"
                url = url.replace("{" + param["name"] + "}", key)
        assert not re.search(r"\{[^}]+\}", url), url
        if body is not None:
            self.check(op["requestBody"]["content"]["application/json"]["schema"], body)
        status, answer = await self.api.json(method.upper(), url, json=body)
        assert str(status) in op["responses"], (op["operationId"], status, answer)
        assert 200 <= status < 300, (op["operationId"], status, answer)
        self.check(op["responses"][str(status)]["content"]["application/json"]["schema"], answer)
        self.called.add(op["operationId"])
        return answer

    def writable(self, op: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
        """A body for a create operation: the model record's values of the fields the request
        schema takes, text made unique (any text may be a unique column)."""
        schema = self.schema(op["requestBody"]["content"]["application/json"]["schema"])
        n = next(_SERIAL)
        out = {}
        for name, prop in schema["properties"].items():
            value = model.get(name)
            if (
                isinstance(value, str)
                and "enum" not in prop
                and prop.get("format")
                in (
                    None,
                    "email",
                )
            ):
                limit = prop.get("maxLength", 200)
                value = f"u{n}{value}"[:limit]
            if value is None and name not in schema.get("required", ()):
                continue
            out[name] = value
        return out


async def test_a_client_from_the_document_drives_every_operation(
    client: Any, database_url: str, secret_key: str
) -> None:
    await _seed(database_url)
    token, _i, _u = await token_for(
        database_url, secret_key, role="administrator", scope=_every_permission()
    )
    api = Bearer(client, token)
    doc = await _document(client, token)
    gen = DocumentClient(api, doc)
    by_path: dict[str, dict[str, Mapping[str, Any]]] = {}
    for method, path, op in operations(doc):
        by_path.setdefault(path, {})[method] = op
    collections = [p for p, ops in by_path.items() if "get" in ops and "{" not in p]
    assert len(collections) == len(site_registry())
    for base in collections:
        page = await gen.call("get", base, by_path[base]["get"])
        assert page["rows"], base
        row_path = next(p for p in by_path if p.startswith(base) and "{" in p)
        item = by_path[row_path]
        model = await gen.call("get", row_path, item["get"], key=page["rows"][0]["key"])
        made = await gen.call(
            "post",
            base,
            by_path[base]["post"],
            body=gen.writable(by_path[base]["post"], model["values"]),
        )
        # Update the new record at the version it came with (the same values, made unique).
        update = gen.schema(item["patch"]["requestBody"]["content"]["application/json"]["schema"])
        allowed = update["properties"]["values"]["properties"]
        values = {
            k: v
            for k, v in gen.writable(by_path[base]["post"], model["values"]).items()
            if k in allowed
        }
        await gen.call(
            "patch", row_path, item["patch"], key=made["key"],
            body={"version": made["version"], "values": values, "original": made["values"]},
        )  # fmt: skip
        for path, ops in by_path.items():
            if path.startswith(f"{base}actions/"):
                await gen.call("post", path, ops["post"], body={"ids": [made["key"]]})
        await gen.call("delete", row_path, item["delete"], key=made["key"])
    every = {op["operationId"] for _m, _p, op in operations(doc)}
    assert gen.called == every, sorted(every - gen.called)
