"""Shared pieces of the users and groups pages: refusals, notices, the permission grid (AUTHZ-7/8)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web

from app.authority.principal import ROLES, Principal
from app.authority.roles import MANAGER_ROLE
from app.errors import Invalid, KeelError, PermissionDenied
from app.web import keys
from app.web.auth import require
from app.web.render import render

# The built-in CRUD actions come first in the grid, in this order (AUTHZ-4).
CRUD = ("view", "add", "change", "delete")

# Notices after a redirect: the query names one of these keys, never free text, so a crafted
# link cannot put words on the page (SEC-3).
NOTICES: dict[str, tuple[str, str]] = {
    "created": ("success", "The user was created."),
    "saved": ("success", "Changes saved."),
    "unchanged": ("info", "Nothing was changed."),
    "deleted": ("success", "The user was deleted."),
    "link_sent": ("success", "A password reset link is on its way to the user's email."),
    "locked": ("success", "The account is locked and its sessions have ended."),
    "unlocked": ("success", "The account is unlocked."),
    "mfa_off": ("success", "Two-step sign-in is off for this user; their sessions ended."),
    "revoked": ("success", "The sessions have ended."),
    "group_created": ("success", "The group was created."),
    "group_saved": ("success", "The group was saved."),
    "group_deleted": ("success", "The group was deleted."),
    "member_added": ("success", "The member was added."),
    "member_removed": ("success", "The member was removed."),
}


async def manager(request: web.Request) -> Principal:
    """Users and groups administration is for administrators and developers (AUTHZ-7)."""
    return await require(request, role=MANAGER_ROLE)


def assignable_roles(actor: Principal) -> list[str]:
    """Roles at or below the actor's own: nobody hands out more than they hold (AUTHZ-3)."""
    return [role for role, rank in ROLES.items() if rank <= actor.rank]


def notices(request: web.Request) -> list[dict[str, str]]:
    key = request.query.get("done", "")
    if key in NOTICES:
        kind, text = NOTICES[key]
        return [{"kind": kind, "text": text}]
    return []


def crumbs(*items: tuple[str, str | None]) -> list[dict[str, Any]]:
    base = [{"label": "Admin", "url": "/admin/"}]
    return base + [{"label": label, "url": url} for label, url in items]


def refused(request: web.Request, exc: PermissionDenied) -> web.Response:
    """A guard's refusal as the 403 page, naming the rule and what to do (AUTHZ-3, AUTHZ-8)."""
    return render(
        request,
        "users/refused.html",
        {"status": 403, "title": "Not allowed", "message": sentence(exc.problem), "fix": exc.fix},
        status=403,
    )


def sentence(text: str) -> str:
    """Services word problems as clauses ("the reason is too short"); pages show sentences."""
    text = text.strip()
    if not text:
        return text
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def form_problem(exc: KeelError) -> tuple[list[str], dict[str, str]]:
    """Form-level and per-field messages of an Invalid (400) or a Conflict (409), for
    re-rendering the form with what the user typed."""
    message = sentence(exc.problem) + (f" {sentence(exc.fix)}" if exc.fix else "")
    return [message], dict(exc.fields) if isinstance(exc, Invalid) else {}


def has_template(request: web.Request, name: str) -> bool:
    try:
        request.app[keys.RENDERER].env.get_template(name)
    except jinja2.TemplateNotFound:
        return False
    return True


@dataclass
class GridRow:
    resource: str
    cells: dict[str, tuple[str, bool]]  # action → (permission, checked)
    extra: list[tuple[str, str, bool]] = field(default_factory=list)  # (action, perm, checked)


@dataclass
class Grid:
    """Rows = resources, columns = view/add/change/delete; custom actions listed per row."""

    columns: tuple[str, ...]
    rows: list[GridRow]
    descriptions: dict[str, str]

    @property
    def names(self) -> list[str]:
        return list(self.descriptions)


def permission_grid(declared: Iterable[tuple[str, str]], held: Iterable[str]) -> Grid:
    """The grid for `declared` (name, description) with `held` checked. A held permission the
    site no longer declares still gets a box, so it can be seen and revoked."""
    held_set = set(held)
    descriptions = dict(declared)
    for name in sorted(held_set - set(descriptions)):
        descriptions[name] = "no longer declared by the site"
    rows: dict[str, GridRow] = {}
    for name in sorted(descriptions):
        resource, _, action = name.partition(".")
        row = rows.setdefault(resource, GridRow(resource, {}))
        if action in CRUD:
            row.cells[action] = (name, name in held_set)
        else:
            row.extra.append((action, name, name in held_set))
    return Grid(CRUD, list(rows.values()), descriptions)
