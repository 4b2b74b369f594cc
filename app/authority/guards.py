"""The four authority guards on every change of a user, shared by the web and the CLI (AUTHZ-3).

In a fixed order, each with its own message, each a PermissionDenied (HTTP 403, CLI exit 1):
1. no self-deactivation, self-deletion or self-demotion;
2. no action on a user of equal or higher rank (so only developers act on administrators);
3. no assigning a role above one's own;
4. never leave zero active administrators or zero active developers (the orphan guard).

`actor=None` is the machine's operator at the command line (`keel user …`, R4-1): not a
signed-in user, so guards 1–3, which compare two accounts, do not apply; the orphan guard
always does, because no path may leave the installation without an administrator.
"""

from __future__ import annotations

from typing import Any, Protocol

import psycopg
from psycopg import pq

from app.authority.principal import ROLES, Principal
from app.errors import PermissionDenied

# Roles that must never be left without an active holder (AUTHZ-3).
GUARDED_ROLES = ("administrator", "developer")
# "keelauth": serialises role, activation and deletion changes so the guard's count holds.
AUTHORITY_LOCK = 0x6B65656C_61757468


class Subject(Protocol):
    """What the guards need to know about the user being changed."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def is_active(self) -> bool: ...


async def lock_authority(conn: psycopg.AsyncConnection[Any]) -> None:
    """Serialise authority changes for the rest of the caller's transaction.

    Row locks alone can deadlock when two transactions lock two administrators in opposite
    orders; one transaction-scoped advisory lock taken first cannot."""
    _require_transaction(conn)
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUTHORITY_LOCK,))


def check_self(
    actor: Principal | None,
    target: Subject,
    *,
    new_role: str | None = None,
    deactivate: bool = False,
    delete: bool = False,
) -> None:
    """Guard 1: nobody deactivates, deletes or demotes themselves (they could not undo it)."""
    if actor is None or actor.user_id != target.id:
        return
    fix = "ask another administrator, or use `keel user …` on the server"
    if deactivate:
        raise PermissionDenied(
            "You cannot deactivate your own account.", "another administrator", fix=fix
        )
    if delete:
        raise PermissionDenied(
            "You cannot delete your own account.", "another administrator", fix=fix
        )
    if new_role is not None and ROLES[new_role] < ROLES[target.role]:
        raise PermissionDenied(
            f"You cannot lower your own role (from {target.role} to {new_role}).",
            "another administrator",
            fix=fix,
        )


def check_rank(actor: Principal | None, target: Subject) -> None:
    """Guard 2: act only on users of strictly lower rank (AUTHZ-2: only developers act on
    administrators; developers are equal to each other, so only the operator changes them)."""
    if actor is None:
        return
    if actor.user_id == target.id:
        raise PermissionDenied(
            "You cannot change your own role, access or permissions here.",
            "another administrator",
            fix="ask another administrator; your profile and password are on your account page",
        )
    if ROLES[target.role] >= actor.rank:
        raise PermissionDenied(
            f"You cannot change {target.email}: their role ({target.role}) is not below yours "
            f"({actor.role}).",
            f"a role above {target.role}",
            fix="ask someone of higher rank, or the server's operator (`keel user …`)",
        )


def check_role_ceiling(actor: Principal | None, new_role: str | None) -> None:
    """Guard 3: nobody hands out more authority than they hold."""
    if actor is None or new_role is None:
        return
    if ROLES[new_role] > actor.rank:
        raise PermissionDenied(
            f"You cannot assign the role {new_role}: it is above your own ({actor.role}).",
            f"role {new_role}",
            fix="choose your own role or a lower one",
        )


async def check_orphan(
    conn: psycopg.AsyncConnection[Any],
    target: Subject,
    *,
    new_role: str | None = None,
    deactivate: bool = False,
    delete: bool = False,
) -> None:
    """Guard 4: the last active administrator (or developer) stays one.

    Counts with `FOR UPDATE` inside the caller's transaction: a concurrent demotion of the
    other administrator waits for this one and then sees the count it left (AUTHZ-3)."""
    if not target.is_active or target.role not in GUARDED_ROLES:
        return
    leaving = deactivate or delete or (new_role is not None and new_role != target.role)
    if not leaving:
        return
    _require_transaction(conn)
    cur = await conn.execute(
        "SELECT id FROM keel_users WHERE role = %s AND is_active ORDER BY id FOR UPDATE",
        (target.role,),
    )
    others = [r[0] for r in await cur.fetchall() if r[0] != target.id]
    if not others:
        what = "deactivating" if deactivate else "deleting" if delete else "changing the role of"
        raise PermissionDenied(
            f"{target.email} is the last active {target.role}: {what} them would leave "
            f"no active {target.role}.",
            f"another active {target.role}",
            fix=f"first give another active account the {target.role} role",
        )


async def check_user_change(
    conn: psycopg.AsyncConnection[Any],
    actor: Principal | None,
    target: Subject,
    *,
    new_role: str | None = None,
    deactivate: bool = False,
    delete: bool = False,
) -> None:
    """All four guards, in their fixed order; call inside the transaction that makes the change."""
    check_self(actor, target, new_role=new_role, deactivate=deactivate, delete=delete)
    check_rank(actor, target)
    check_role_ceiling(actor, new_role)
    await check_orphan(conn, target, new_role=new_role, deactivate=deactivate, delete=delete)


def _require_transaction(conn: psycopg.AsyncConnection[Any]) -> None:
    # Outside a transaction the row locks would be released at once and prove nothing.
    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        raise RuntimeError("authority guards must run inside the transaction that changes the user")
