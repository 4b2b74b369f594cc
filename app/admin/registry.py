"""The site's registry and the permissions it declares, without touching the database (AUTHZ-4)."""

from __future__ import annotations

import importlib

from app.admin.resources import CRUD_ACTIONS, Registry
from app.errors import KeelError

SITE_MODULE = "app.site.resources"


def site_registry(module: str = SITE_MODULE) -> Registry:
    """The `REGISTRY` the site package declares (app/site/resources.py by default)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise KeelError(
            f"cannot import the site declarations {module}",
            why=str(exc),
            fix=f"create {module.replace('.', '/')}.py with REGISTRY = register(...)",
        ) from None
    registry = getattr(mod, "REGISTRY", None)
    if not isinstance(registry, Registry):
        raise KeelError(
            f"{module} has no REGISTRY",
            why="the admin reads the site's resources from REGISTRY = register(Resource(...), ...)",
            fix=f"add `REGISTRY = register(...)` to {module.replace('.', '/')}.py",
        )
    return registry


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
        # A declaration may map an action to another permission name (RES-1): it must be
        # grantable too, or only the bypassing roles could ever use that action.
        known = {name for name, _ in out}
        for action, perm in sorted(r.permissions.items()):
            if perm not in known:
                out.append((perm, f"{action.capitalize()} {title} (declared)"))
                known.add(perm)
    return out
