"""Approvers are Keel users: authenticate one by password and mirror a decision in the audit log.

Only active accounts with the administrator or developer role may approve. Sign-in throttles
apply (a wrong password counts like one at the sign-in page); no session is created."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app import audit
from app.audit_events import Event
from app.authority import login
from app.authority.passwords import Hasher
from app.authority.principal import ROLES
from app.config import Config
from app.db.pool import connect
from app.errors import PermissionDenied
from app.governance.proposals import Approver

APPROVER_ROLE = "administrator"  # and every role above it (developer)
T = TypeVar("T")


def _refused(email: str) -> PermissionDenied:
    return PermissionDenied(
        f"{email} cannot approve: wrong password, or not an active administrator or developer",
        missing=APPROVER_ROLE,
        why="approvals are made by Keel users with the administrator or developer role, "
        "authenticated by their password",
        fix="check the address and password (`keel user list` shows roles), or ask an "
        "administrator; repeated wrong passwords lock the account like the sign-in page does",
    )


async def decide(
    config: Config,
    ctx: audit.Context,
    email: str,
    password: str,
    *,
    action: Callable[[Approver], T],
    events: Callable[[T], list[Event]],
) -> T:
    """Authenticate `email`, then run `action` (the file change) and record its audit events in
    one transaction: if the files cannot be written, no event claims they were."""
    address = login.normalise_email(email) or email
    hasher = Hasher(max_in_flight=1)
    try:
        async with connect(config) as conn:
            account = await login.account_by_email(conn, address)
            if (
                account is None
                or not account.is_active
                or ROLES.get(account.role, 0) < ROLES[APPROVER_ROLE]
            ):
                await hasher.dummy_verify(password)  # the same cost whatever the reason
                raise _refused(address)
            ok = await login.check_password(
                conn, ctx, hasher, user_id=account.id, password=password,
                throttle=login.Throttle.from_config(config), during="governance_approval",
            )  # fmt: skip
            if not ok:
                raise _refused(address)
            approver = Approver(account.email, account.id, account.role)
            actor = _as_actor(ctx, approver)
            async with conn.transaction():
                result = action(approver)
                for event in events(result):
                    await audit.record(conn, actor, event)
            return result
    finally:
        hasher.close()


def _as_actor(ctx: audit.Context, approver: Approver) -> audit.Context:
    from dataclasses import replace

    return replace(
        ctx, actor_id=approver.user_id, actor_email=approver.email, actor_role=approver.role
    )


def details(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}
