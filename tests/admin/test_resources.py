"""Declarations are checked against the catalog at start (RES-1, RES-2) and name their permissions."""

from __future__ import annotations

import psycopg
import pytest

from app.admin import Action, Inline, Resource, register
from app.admin.registry import declared_permissions, site_registry
from app.admin.resources import bind, validate
from app.db.catalog import load_catalog
from app.errors import KeelError

TABLES = ["bookings", "customers", "technicians", "properties", "skills"]


async def _catalog(url: str) -> dict:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await load_catalog(conn, TABLES)


async def test_the_demo_site_declarations_are_valid_without_warnings(database_url):
    problems = validate(site_registry(), await _catalog(database_url))
    assert problems == []


async def test_every_wrong_name_is_reported_with_resource_option_and_name(database_url):
    registry = register(
        Resource(
            "bookings",
            list_display=("id", "nope"),
            list_filter=("notes",),
            search_fields=("amount", "customer.nope", "customer.city"),
            ordering=("-missing",),
            readonly_fields=("ghost",),
            labels={"phantom": "X"},
            display_field="nobody",
            tsvector_field="notes",
            permissions={"frobnicate": "x.y", "view": "not a perm"},
            inlines=(Inline("customers", "id"),),
            actions=(
                Action("view", "Bad name"),
                Action("wrong", "Bad value", {"status": "maybe", "id": 3}),
            ),
            list_per_page=0,
        ),
        Resource("no_such_table"),
    )
    found = {
        (p.level, p.resource, p.option, p.name)
        for p in validate(registry, await _catalog(database_url))
    }
    expected_errors = {
        ("bookings", "list_display", "nope"),
        ("bookings", "list_filter", "notes"),
        ("bookings", "search_fields", "amount"),
        ("bookings", "search_fields", "customer.nope"),
        ("bookings", "ordering", "missing"),
        ("bookings", "readonly_fields", "ghost"),
        ("bookings", "labels", "phantom"),
        ("bookings", "display_field", "nobody"),
        ("bookings", "tsvector_field", "notes"),
        ("bookings", "permissions", "frobnicate"),
        ("bookings", "permissions", "view"),
        ("bookings", "inlines", "id"),
        ("bookings", "actions", "view"),
        ("bookings", "actions", "status"),
        ("bookings", "actions", "id"),
        ("bookings", "list_per_page", "0"),
        ("no_such_table", "table", "no_such_table"),
    }
    assert {("error", *e) for e in expected_errors} <= found
    # customers.city has no trigram index: searching it works but scans, so only a warning.
    assert ("warning", "bookings", "search_fields", "customer.city") in found


def test_register_refuses_reserved_and_duplicate_slugs():
    with pytest.raises(KeelError, match="cannot use the slug 'users'") as reserved:
        register(Resource("users"))
    assert "built-in page" in reserved.value.why
    with pytest.raises(KeelError, match="share the slug"):
        register(Resource("bookings"), Resource("public.bookings"))
    with pytest.raises(KeelError, match="not a Resource"):
        register("bookings")  # type: ignore[arg-type]


def test_declared_permissions_cover_crud_and_actions_without_a_database():
    perms = dict(declared_permissions())
    for slug in ("bookings", "customers", "technicians", "properties"):
        for action in ("view", "add", "change", "delete"):
            assert f"{slug}.{action}" in perms
    assert "bookings.confirm" in perms and "technicians.deactivate" in perms
    assert perms["bookings.view"] == "View bookings"


def test_a_permission_named_in_a_declaration_can_be_granted():
    """RES-1/AUTHZ-4: `permissions={"delete": "bookings.purge"}` registers bookings.purge, so
    the group grid offers it; otherwise only administrators could ever delete."""
    registry = register(Resource("bookings", permissions={"delete": "bookings.purge"}))
    perms = dict(declared_permissions(registry))
    assert "bookings.purge" in perms and perms["bookings.purge"].startswith("Delete bookings")
    assert list(perms).count("bookings.purge") == 1


async def test_bound_resources_resolve_relations_and_display_names(database_url):
    bound = bind(site_registry(), await _catalog(database_url))
    b = bound["bookings"]
    assert [c.name for c in b.list_columns] == [
        "id",
        "customer_id",
        "status",
        "amount",
        "scheduled_at",
    ]
    fk_col, target, col = b.resolve_related("customer.email")
    assert (fk_col.name, target.name, col.name) == ("customer_id", "customers", "email")
    assert b.label("customer_id") == "Customer" and b.label("amount") == "Amount"
    assert bound["customers"].display_column == "name"
    assert b.permission("confirm") == "bookings.confirm"
