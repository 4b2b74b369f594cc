"""The active site's registry and the permissions it declares, without touching the database."""

from __future__ import annotations

from app import sites
from app.admin.resources import CRUD_ACTIONS, Registry


def site_registry() -> Registry:
    """The `REGISTRY` of the site this process serves; an empty one when there is no site."""
    site = sites.active()
    return Registry() if site is None else site.registry()


def declared_permissions(registry: Registry | None = None) -> list[tuple[str, str]]:
    """`<slug>.view|add|change|delete` plus `<slug>.<action>` per declared action, with a description."""
    registry = site_registry() if registry is None else registry
    out: list[tuple[str, str]] = []
    verbs = {"view": "View", "add": "Add", "change": "Change", "delete": "Delete"}
    for r in registry:
        title = (r.title or r.key).lower()
        for action in CRUD_ACTIONS:
            out.append((f"{r.key}.{action}", f"{verbs[action]} {title}"))
        for a in r.actions:
            out.append((f"{r.key}.{a.name}", f"{a.label} ({title})"))
        # A declaration may map an action to another permission name: it must be grantable
        # too, or only the roles that bypass permissions could ever use that action.
        known = {name for name, _ in out}
        for action, perm in sorted(r.permissions.items()):
            if perm not in known:
                out.append((perm, f"{action.capitalize()} {title} (declared)"))
                known.add(perm)
    return out
