"""The OpenAPI 3.1 description of the JSON API, generated from the declarations and the catalog.

A pure function of the bound resources, their form fields and what the caller may do: the
document lists only the resources the caller may view and only the operations they may use,
so a token's document is its scope. The route handlers that serve it are in app/admin/api.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.admin import forms
from app.admin.list_params import PER_PAGE_MAX
from app.admin.resources import Action, BoundResource, filter_kind
from app.db.catalog import Column

API = "/admin/api"
JSON = "application/json"
_PROBLEM = {"$ref": "#/components/responses/Problem"}


@dataclass(frozen=True)
class ResourceDoc:
    """One resource as the document shows it: what the caller may do with it."""

    bound: BoundResource
    specs: Sequence[forms.FieldSpec]
    can_add: bool
    can_change: bool
    can_delete: bool
    actions: Sequence[Action]


def schema_name(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("_"))


def _nullable(schema: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if not nullable:
        return schema
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**schema, "type": [*kind, "null"]}
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return schema


def value_schema(spec: forms.FieldSpec) -> dict[str, Any]:
    """A column's JSON value: what detail returns and create/update take."""
    t = spec.type_name
    out: dict[str, Any]
    if t in ("json", "jsonb"):
        return {"description": "any JSON value"}
    elif t == "boolean":
        out = {"type": "boolean"}
    elif t in forms.INT_RANGES:
        lo, hi = forms.INT_RANGES[t]
        out = {"type": "integer", "minimum": lo, "maximum": hi}
    elif t == "numeric":
        # Exact decimals are returned as strings (no float rounding); either is accepted.
        out = {"type": ["string", "number"], "format": "decimal"}
    elif t in ("real", "double precision"):
        out = {"type": "number"}
    elif t == "date":
        out = {"type": "string", "format": "date"}
    elif t in ("timestamptz", "timestamp"):
        out = {"type": "string", "format": "date-time"}
    elif t in ("time", "timetz"):
        out = {"type": "string", "format": "time"}
    elif t == "uuid":
        out = {"type": "string", "format": "uuid"}
    elif spec.choices:
        out = {"type": "string", "enum": list(spec.choices)}
    else:
        out = {"type": "string"}
        if spec.maxlength:
            out["maxLength"] = spec.maxlength
        if spec.widget == "email":
            out["format"] = "email"
    if spec.label:
        out["title"] = spec.label
    if spec.help:
        out["description"] = spec.help
    return _nullable(out, spec.nullable)


def _record(specs: Sequence[forms.FieldSpec]) -> dict[str, Any]:
    props = {}
    for s in specs:
        schema = value_schema(s)
        props[s.name] = {**schema, "readOnly": True} if s.readonly else schema
    return {"type": "object", "properties": props}


def _input(specs: Sequence[forms.FieldSpec], *, creating: bool) -> dict[str, Any]:
    writable = [s for s in specs if not s.readonly]
    out: dict[str, Any] = {
        "type": "object",
        "properties": {s.name: value_schema(s) for s in writable},
        "additionalProperties": False,
    }
    required = [s.name for s in writable if s.required] if creating else []
    if required:
        out["required"] = required
    return out


def _list_row(b: BoundResource, specs: Sequence[forms.FieldSpec]) -> dict[str, Any]:
    by_name = {s.name: s for s in specs}
    names = list(dict.fromkeys([*b.key, *(c.name for c in b.list_columns)]))
    return {
        "type": "object",
        "properties": {n: value_schema(by_name[n]) for n in names if n in by_name},
    }


def _param(name: str, where: str, description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": dict(schema),
    }


def _filter_params(b: BoundResource) -> list[dict[str, Any]]:
    out = []
    for name in b.resource.list_filter:
        col: Column | None = b.resolve_column(name)
        if col is None:
            continue
        kind = filter_kind(col)
        label = b.label(col.name)
        if kind == "choice":
            desc = f"{label}: one or more of {', '.join(col.choices or ())} (repeat the parameter)"
        elif kind == "date":
            desc = f"{label}: today, past_7_days, this_month or a date (YYYY-MM-DD)"
        elif kind == "bool":
            desc = f"{label}: yes or no"
        else:
            desc = f"{label}: equal to this value (repeat the parameter for several)"
        out.append(_param(col.name, "query", desc, {"type": "string", "maxLength": 200}))
        if kind in ("date", "number"):
            for op, word in (("gte", "at least"), ("lte", "at most")):
                out.append(
                    _param(
                        f"{col.name}__{op}",
                        "query",
                        f"{label} {word} this value",
                        {"type": "string"},
                    )
                )
    return out


def _list_params(b: BoundResource) -> list[dict[str, Any]]:
    common = [
        _param("q", "query", "search words (all must match)", {"type": "string", "maxLength": 200}),
        _param("o", "query", "ordering: column names, comma-separated, `-` for descending",
               {"type": "string"}),
        _param("cursor", "query", "the next_cursor or prev_cursor of a previous page",
               {"type": "string", "maxLength": 2000}),
        _param("per_page", "query", "rows per page",
               {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX}),
    ]  # fmt: skip
    if b.resource.search_fields or b.resource.tsvector_field:
        return common + _filter_params(b)
    return common[1:] + _filter_params(b)


def _ok(description: str, schema: Mapping[str, Any], status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": dict(schema)}}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: _PROBLEM for s in ("401", "403", *statuses)}


def _body(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": dict(schema)}}}


def _paths(doc: ResourceDoc) -> dict[str, dict[str, Any]]:
    b, name = doc.bound, schema_name(doc.bound.slug)
    ref = f"#/components/schemas/{name}"
    tag = [b.title]
    base = f"{API}/{b.slug}/"
    paths: dict[str, dict[str, Any]] = {base: {}}
    paths[base]["get"] = {
        "operationId": f"{b.slug}_list",
        "summary": f"List {b.title.lower()}",
        "tags": tag,
        "parameters": _list_params(b),
        "responses": {
            **_ok("One page of rows", {"$ref": f"#/components/schemas/{name}Page"}),
            **_errors("400"),
        },
    }
    writable = b.read_only_reason is None and not b.resource.read_only and b.keyed
    if doc.can_add and writable:
        paths[base]["post"] = {
            "operationId": f"{b.slug}_create",
            "summary": f"Create a record in {b.title.lower()}",
            "tags": tag,
            "requestBody": _body({"$ref": f"#/components/schemas/{name}Create"}),
            "responses": {
                **_ok("The new record", {"$ref": f"{ref}Detail"}, "201"),
                **_errors("400", "409"),
            },
        }
    if not b.keyed:
        return paths
    row = f"{base}{{key}}"
    key_doc = "the record's key" + (": its key values separated by commas" if b.composite else "")
    key_param = [_param("key", "path", key_doc, {"type": "string", "maxLength": 200})]
    paths[row] = {
        "get": {
            "operationId": f"{b.slug}_get",
            "summary": "Read one record with its version",
            "tags": tag,
            "parameters": key_param,
            "responses": {**_ok("The record", {"$ref": f"{ref}Detail"}), **_errors("400", "404")},
        }
    }
    if doc.can_change and writable:
        paths[row]["patch"] = {
            "operationId": f"{b.slug}_update",
            "summary": "Change fields of one record, if it is still at the version read",
            "tags": tag,
            "parameters": key_param,
            "requestBody": _body({"$ref": f"#/components/schemas/{name}Update"}),
            "responses": {
                **_ok("The record as saved", {"$ref": f"{ref}Detail"}),
                **_errors("400", "404"),
                "409": {
                    "description": "Someone else changed the record since it was read, or the"
                    " database refused the change",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Conflict"}}},
                },
            },
        }
    if doc.can_delete and writable:
        paths[row]["delete"] = {
            "operationId": f"{b.slug}_delete",
            "summary": "Delete one record (the database's cascades apply)",
            "tags": tag,
            "parameters": key_param,
            "responses": {
                **_ok("What was deleted", {"$ref": "#/components/schemas/Deleted"}),
                **_errors("404", "409"),
            },
        }
    if writable and not b.composite:
        for action in doc.actions:
            paths[f"{base}actions/{action.name}"] = {
                "post": {
                    "operationId": f"{b.slug}_action_{action.name}",
                    "summary": action.label,
                    "description": "Sets "
                    + ", ".join(f"{k} = {v!r}" for k, v in (action.set_values or {}).items())
                    + " on the given records, in one statement and one audit event.",
                    "tags": tag,
                    "requestBody": _body({"$ref": "#/components/schemas/Selection"}),
                    "responses": {
                        **_ok("The records changed", {"$ref": "#/components/schemas/ActionDone"}),
                        **_errors("400", "409"),
                    },
                }
            }
    return paths


def _schemas(doc: ResourceDoc) -> dict[str, Any]:
    b, name = doc.bound, schema_name(doc.bound.slug)
    out: dict[str, Any] = {
        name: _record(doc.specs),
        f"{name}Detail": {
            "type": "object",
            "required": ["key", "version", "values"],
            "properties": {
                "key": {"type": "string", "description": "the key as it appears in addresses"},
                "version": {
                    "type": "string",
                    "description": "send it back with a change: a stale version is refused",
                },
                "values": {"$ref": f"#/components/schemas/{name}"},
            },
        },
        f"{name}Page": {
            "type": "object",
            "required": ["rows"],
            "properties": {
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["key", "values"],
                        "properties": {
                            "key": {
                                "type": ["string", "null"],
                                "description": "the row's key for its address (null: no key)",
                            },
                            "values": _list_row(b, doc.specs),
                        },
                    },
                },
                "next_cursor": {"type": ["string", "null"]},
                "prev_cursor": {"type": ["string", "null"]},
                "total": {"type": ["integer", "null"]},
                "total_is_estimate": {"type": "boolean"},
                "total_is_capped": {"type": "boolean"},
            },
        },
    }
    if doc.can_add:
        out[f"{name}Create"] = _input(doc.specs, creating=True)
    if doc.can_change:
        out[f"{name}Update"] = {
            "type": "object",
            "required": ["version", "values"],
            "properties": {
                "version": {"type": "string", "pattern": r"^[th]:[0-9A-Za-z:.\-+TZ]{1,64}$"},
                "values": _input(doc.specs, creating=False),
                "original": {
                    "type": "object",
                    "description": "the values as read (optional): a conflict then lists what"
                    " someone else changed since",
                },
            },
            "additionalProperties": False,
        }
    return out


_COMMON_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["error", "problem"],
        "properties": {
            "error": {"type": "string", "description": "the HTTP status in words"},
            "problem": {"type": "string", "description": "what went wrong"},
            "why": {"type": "string"},
            "fix": {"type": "string", "description": "what to do about it"},
            "message": {"type": "string", "description": "the same as problem"},
            "missing": {"type": "string", "description": "the permission or role lacking"},
            "fields": {
                "type": "object",
                "description": "field name → messages, for invalid input",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "request_id": {"type": "string"},
        },
    },
    "Conflict": {
        "type": "object",
        "required": ["error", "problem"],
        "properties": {
            "error": {"type": "string"},
            "problem": {"type": "string"},
            "why": {"type": "string"},
            "fix": {"type": "string"},
            "version": {"type": "string", "description": "the record's current version"},
            "current": {"type": "object", "description": "the record's current values"},
            "changes": {
                "type": "object",
                "description": "field → {from, to}: what changed since the values sent as"
                " `original`",
            },
            "changed_by": {"type": ["string", "null"]},
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted"],
        "properties": {"deleted": {"type": "string"}},
    },
    "Selection": {
        "type": "object",
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": {}}},
        "additionalProperties": False,
    },
    "ActionDone": {
        "type": "object",
        "required": ["done", "count"],
        "properties": {"done": {"type": "array", "items": {}}, "count": {"type": "integer"}},
    },
}


def document(
    docs: Sequence[ResourceDoc], *, version: str, title: str = "Keel admin API"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these resources (already filtered to what the caller sees)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = dict(_COMMON_SCHEMAS)
    for doc in docs:
        paths.update(_paths(doc))
        schemas.update(_schemas(doc))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Every declared resource the caller may view, with the operations"
            " the caller may use. Send `Authorization: Bearer <token>`; writes need a token.",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": [{"bearerToken": []}],
        "tags": [{"name": d.bound.title} for d in docs],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Problem": {
                    "description": "Refused: what went wrong, why, and what to do",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            },
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from your account page or `keel token create`",
                }
            },
        },
    }


def operations(doc: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(method, path, operation) of every operation in a document, in document order."""
    out = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if re.fullmatch(r"get|post|put|patch|delete", method):
                out.append((method, path, op))
    return out
