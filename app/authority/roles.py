"""The role ladder in use: parsing roles, and the permission checks every caller shares (AUTHZ-2, AUTHZ-5)."""

from __future__ import annotations

from typing import Any

import psycopg

from app.authority.permissions import has_permission
from app.authority.principal import ADMIN_ENTRY_ROLE, BYPASS_ROLE, ROLES, Principal, rank
from app.errors import Invalid, PermissionDenied

__all__ = [
    "ADMIN_ENTRY_ROLE",
    "BYPASS_ROLE",
    "MANAGER_ROLE",
    "ROLES",
    "can",
    "ensure",
    "ensure_role",
    "parse_role",
    "rank",
]

# Who manages users and groups (AUTHZ-7): the built-in administration is for administrators
# and developers only; see docs/security/permissions.md for why it is a role, not a permission.
MANAGER_ROLE = "administrator"


def parse_role(value: object) -> str:
    """One of the five ladder roles, or Invalid listing them."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if text not in ROLES:
        shown = "".join(c if c.isprintable() else "?" for c in str(value))[:40]
        raise Invalid(
            f"{shown!r} is not a role",
            fields={"role": "unknown role"},
            why="the role ladder has five tiers",
            fix=f"use one of {', '.join(ROLES)}",
        )
    return text


async def can(conn: psycopg.AsyncConnection[Any], principal: Principal | None, perm: str) -> bool:
    """Whether `principal` may use `perm` now.

    `user` never enters the admin; administrators and developers bypass per-resource checks;
    staff and supervisors need the permission directly or through a group (AUTHZ-2, AUTHZ-4).
    Read from the database on every call, so grants and revocations apply to the next
    request on every host (AUTHZ-5)."""
    if principal is None or not principal.enters_admin:
        return False
    if principal.bypasses_permissions:
        return True
    return await has_permission(conn, principal.user_id, perm)


async def ensure(
    conn: psycopg.AsyncConnection[Any], principal: Principal | None, perm: str
) -> None:
    """`can` or PermissionDenied naming the missing permission (AUTHZ-8)."""
    if principal is not None and not principal.enters_admin:
        raise PermissionDenied(
            "Your account does not have access to the administration.",
            missing=f"role {ADMIN_ENTRY_ROLE}",
            fix="ask an administrator to give your account the staff role or above",
        )
    if not await can(conn, principal, perm):
        raise PermissionDenied(
            f"You need the permission {perm} to do this.",
            missing=perm,
            fix="ask an administrator to grant it to you or to one of your groups",
        )


def ensure_role(principal: Principal | None, role: str) -> None:
    """PermissionDenied unless `principal` holds `role` or a higher one (AUTHZ-8).

    `None` is the machine's operator at the command line (R4-1), who is not ranked."""
    if principal is None:
        return
    if not principal.at_least(role):
        raise PermissionDenied(
            f"This needs the {role} role; your role is {principal.role}.",
            missing=f"role {role}",
            fix=f"ask someone with the {role} role to do it",
        )
