"""Invitations (AUTHZ-9): an administrator invites an address with a role and groups; the
invitee chooses their own password through a single-use, expiring link.

An invitation is an inactive account without a password (so it cannot sign in, and "forgot
password" ignores it, like any inactive account) plus a `keel_invitations` row holding only the
SHA-256 of the link's token, hashed the way recovery tokens are. The mail goes through the
outbox sealed (app/mail/seal.py): the token is never stored, not even in the queued mail.
Every change here is one transaction: lock, write, queue the mail, audit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from app import audit, mail
from app import audit_events as events
from app.authority import guards, login, ratelimit, sessions, users
from app.authority.passwords import Hasher, Policy
from app.authority.principal import Principal
from app.authority.recovery import LinkInvalid, token_hash
from app.authority.roles import MANAGER_ROLE, ensure_role, parse_role
from app.errors import Conflict, Invalid, NotFound

log = logging.getLogger("keel.invitations")
Conn = psycopg.AsyncConnection[Any]
State = Literal["pending", "expired", "accepted", "revoked"]
# The bounds `invitation_ttl` accepts (app/config.py); services called directly check them too.
MIN_TTL = 3600.0
MAX_TTL = 30 * 86400.0

__all__ = ["Invitation", "LinkInvalid", "accept", "invite", "list_pending", "resend", "revoke"]


@dataclass(frozen=True)
class Invitation:
    id: int
    user_id: int | None
    email: str
    role: str
    groups: list[str]
    invited_by_email: str | None
    created_at: datetime
    sent_at: datetime
    expires_at: datetime
    send_count: int
    accepted_at: datetime | None
    withdrawn_at: datetime | None

    def state(self, now: datetime | None = None) -> State:
        if self.accepted_at is not None:
            return "accepted"
        if self.withdrawn_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= (now or datetime.now(UTC)) else "pending"


_COLUMNS = (
    "id, user_id, email, role, groups, invited_by_email, created_at, sent_at, expires_at,"
    " send_count, accepted_at, withdrawn_at"
)


def link(public_url: str, token: str) -> str:
    """The link in mail, from `public_url` only, never the Host header (like reset links)."""
    return f"{public_url.rstrip('/')}/invite/{token}"


def duration_text(seconds: float) -> str:
    """ "3 days", "12 hours": how long a link works, in the mail and on the pages."""
    if seconds >= 86400 and seconds % 86400 == 0:
        n, unit = int(seconds // 86400), "day"
    elif seconds >= 3600:
        n, unit = round(seconds / 3600), "hour"
    else:
        n, unit = max(1, round(seconds / 60)), "minute"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _check_ttl(ttl: float) -> None:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError("an invitation lives between an hour and 30 days (invitation_ttl)")


def _need_public_url(public_url: str) -> None:
    if not public_url:
        raise Invalid(
            "invitations cannot be sent: public_url is not set",
            why="links in mail are built from the configured public_url only, never from the"
            " address a browser used",
            fix="set public_url in the configuration (e.g. public_url = "
            '"https://ops.example.com"), then invite again',
        )


async def _queue_mail(
    conn: Conn,
    ctx: audit.Context,
    *,
    email: str,
    role: str,
    inviter: str,
    public_url: str,
    site_name: str,
    ttl: float,
) -> str:
    """A new link token and its sealed mail, in the caller's transaction; returns the token."""
    token, seal = mail.new_sealed_token(mail.seal_key(ctx.audit_key), audit.key_id(ctx.audit_key))
    await mail.enqueue(
        conn,
        to=email,
        template="invitation",
        context={
            "site_name": site_name,
            "email": email,
            "role": role,
            "inviter": inviter,
            "link": link(public_url, mail.PLACEHOLDER),
            "expires_in": duration_text(ttl),
        },
        seal=seal,
    )
    return token


def _inviter(ctx: audit.Context, actor: Principal | None) -> str:
    if actor is not None:
        return actor.email
    return "An administrator"  # the CLI: the OS user is in the audit log, not in the mail


async def invite(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    *,
    email: str,
    role: str,
    groups: list[str] | tuple[str, ...] = (),
    public_url: str,
    site_name: str = "Keel",
    ttl: float,
    now: datetime | None = None,
) -> Invitation:
    """Create the inactive account (role ceiling and groups checked by `users.create`), the
    invitation row and its mail, and audit it: all or nothing. `actor` None is the CLI."""
    ensure_role(actor, MANAGER_ROLE)
    _need_public_url(public_url)
    _check_ttl(ttl)
    role = parse_role(role)
    guards.check_role_ceiling(actor, role)
    at = now or datetime.now(UTC)
    names = sorted(set(groups))
    async with conn.transaction():
        await guards.lock_authority(conn)
        user = await users.create(
            conn, ctx, actor, email=email, role=role, groups=names, via="invitation",
            active=False,
        )  # fmt: skip
        token = await _queue_mail(
            conn, ctx, email=user.email, role=role, inviter=_inviter(ctx, actor),
            public_url=public_url, site_name=site_name, ttl=ttl,
        )  # fmt: skip
        cur = await conn.execute(
            "INSERT INTO keel_invitations (user_id, email, role, groups, token_hash, invited_by,"
            f" invited_by_email, created_at, sent_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s,"
            f" %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (
                user.id, user.email, role, names, token_hash(token), ctx.actor_id,
                ctx.actor_email or ctx.os_actor, at, at, at + timedelta(seconds=ttl),
            ),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        invitation = Invitation(*row)
        await audit.record(
            conn,
            ctx,
            events.invitation_sent(
                user.id, user.email, role, names,
                details={"token_fingerprint": audit.fingerprint(token),
                         "expires_at": invitation.expires_at.isoformat()},
            ),
        )  # fmt: skip
    return invitation


async def get(conn: Conn, invitation_id: int, *, for_update: bool = False) -> Invitation:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM keel_invitations WHERE id = %s"
        + (" FOR UPDATE" if for_update else ""),
        (invitation_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(
            f"no invitation with id {invitation_id}",
            fix="see the pending invitations on the users page, or `keel user invitations`",
        )
    return Invitation(*row)


async def find_pending(conn: Conn, email: str) -> Invitation:
    """The open (pending or expired, not accepted or revoked) invitation of an address."""
    address = users.normalise_email(email)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM keel_invitations WHERE email = %s AND user_id IS NOT NULL"
        " AND accepted_at IS NULL AND withdrawn_at IS NULL ORDER BY id DESC LIMIT 1",
        (address,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(
            f"no open invitation for {address}",
            why="it was accepted or withdrawn already, or never sent",
            fix="see `keel user invitations`; invite with `keel user invite --email …`",
        )
    return Invitation(*row)


async def list_pending(conn: Conn, *, limit: int = 500) -> list[Invitation]:
    """Open invitations (expired ones included: they can be sent again), newest first."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM keel_invitations WHERE user_id IS NOT NULL"
        " AND accepted_at IS NULL AND withdrawn_at IS NULL ORDER BY created_at DESC, id DESC"
        " LIMIT %s",
        (limit,),
    )
    return [Invitation(*row) for row in await cur.fetchall()]


async def _open_for_change(conn: Conn, actor: Principal | None, invitation_id: int) -> Invitation:
    """Lock an open invitation the actor may act on (they could have sent it: role ceiling)."""
    invitation = await get(conn, invitation_id, for_update=True)
    if invitation.state() in ("accepted", "revoked") or invitation.user_id is None:
        done = "accepted" if invitation.accepted_at else "withdrawn"
        raise Conflict(
            f"the invitation to {invitation.email} was {done} already",
            why="only an open invitation can be sent again or withdrawn",
            fix="reload the list of invitations",
        )
    guards.check_role_ceiling(actor, invitation.role)
    return invitation


async def resend(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    invitation_id: int,
    *,
    public_url: str,
    site_name: str = "Keel",
    ttl: float,
    now: datetime | None = None,
) -> Invitation:
    """Mail a new link with a fresh lifetime; the old link's hash is replaced, so it dies."""
    ensure_role(actor, MANAGER_ROLE)
    _need_public_url(public_url)
    _check_ttl(ttl)
    at = now or datetime.now(UTC)
    async with conn.transaction():
        await guards.lock_authority(conn)
        before = await _open_for_change(conn, actor, invitation_id)
        token = await _queue_mail(
            conn, ctx, email=before.email, role=before.role, inviter=_inviter(ctx, actor),
            public_url=public_url, site_name=site_name, ttl=ttl,
        )  # fmt: skip
        cur = await conn.execute(
            "UPDATE keel_invitations SET token_hash = %s, sent_at = %s, expires_at = %s,"
            f" send_count = send_count + 1 WHERE id = %s RETURNING {_COLUMNS}",
            (token_hash(token), at, at + timedelta(seconds=ttl), invitation_id),
        )
        row = await cur.fetchone()
        assert row is not None and before.user_id is not None
        after = Invitation(*row)
        await audit.record(
            conn,
            ctx,
            events.invitation_resent(
                before.user_id, before.email,
                details={"token_fingerprint": audit.fingerprint(token),
                         "expires_at": after.expires_at.isoformat(),
                         "send_count": after.send_count},
            ),
        )  # fmt: skip
    return after


async def revoke(
    conn: Conn,
    ctx: audit.Context,
    actor: Principal | None,
    invitation_id: int,
    *,
    now: datetime | None = None,
) -> Invitation:
    """Withdraw an open invitation: its link dies and the never-used account is removed."""
    ensure_role(actor, MANAGER_ROLE)
    at = now or datetime.now(UTC)
    async with conn.transaction():
        await guards.lock_authority(conn)
        before = await _open_for_change(conn, actor, invitation_id)
        assert before.user_id is not None
        cur = await conn.execute(
            f"UPDATE keel_invitations SET withdrawn_at = %s WHERE id = %s RETURNING {_COLUMNS}",
            (at, invitation_id),
        )
        row = await cur.fetchone()
        assert row is not None
        removed = await users.delete_unused(conn, before.user_id)
        await audit.record(
            conn,
            ctx,
            events.invitation_revoked(
                before.user_id, before.email, details={"account_removed": removed}
            ),
        )
    return Invitation(*row)


@dataclass(frozen=True)
class Pending:
    """A live invitation link: what the accept page shows."""

    invitation_id: int
    user_id: int
    email: str
    role: str
    expires_at: datetime


async def peek(conn: Conn, token: object, *, now: datetime | None = None) -> Pending | None:
    """The live invitation of a link, without using it; None for unknown, expired, used,
    resent (old link), revoked, or an account that meanwhile got a password or was activated."""
    if not sessions.well_formed(token):
        return None
    at = now or datetime.now(UTC)
    cur = await conn.execute(
        "SELECT i.id, u.id, u.email, u.role, i.expires_at FROM keel_invitations i"
        " JOIN keel_users u ON u.id = i.user_id WHERE i.token_hash = %s"
        " AND i.accepted_at IS NULL AND i.withdrawn_at IS NULL AND i.expires_at > %s"
        " AND NOT u.is_active AND u.password_hash IS NULL",
        (token_hash(str(token)), at),
    )
    row = await cur.fetchone()
    return Pending(*row) if row else None


@dataclass(frozen=True)
class Accepted:
    user_id: int
    email: str
    role: str
    session_token: str


async def accept(
    conn: Conn,
    ctx: audit.Context,
    hasher: Hasher,
    *,
    token: object,
    password: object,
    policy: Policy,
    absolute: float,
    now: datetime | None = None,
    throttle: login.Throttle | None = None,
) -> Accepted:
    """The invitee chooses a password: the policy first, then, in one transaction, the link is
    used (once), the password written, the account activated, the event recorded and a session
    started. Raises Invalid (the policy; the link stays good) or LinkInvalid (one answer for
    every bad link). A second factor the policy requires is asked for next, by the pages."""
    at = now or datetime.now(UTC)
    # Guessing links is limited like guessing reset links, per client address.
    if await ratelimit.hit(conn, ratelimit.INVITE_ACCEPT_IP, ctx.ip or "unknown", now=at):
        raise LinkInvalid()
    pending = await peek(conn, token, now=at)
    if pending is None:
        raise LinkInvalid()
    problem = policy.check(password, email=pending.email)
    if problem:
        raise Invalid(problem, fields={"password": problem})
    password_hash = await hasher.hash(str(password))
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE keel_invitations i SET accepted_at = %s FROM keel_users u"
            " WHERE u.id = i.user_id AND i.token_hash = %s AND i.accepted_at IS NULL"
            " AND i.withdrawn_at IS NULL AND i.expires_at > %s AND NOT u.is_active"
            " AND u.password_hash IS NULL RETURNING i.user_id",
            (at, token_hash(str(token)), at),
        )
        row = await cur.fetchone()
        if row is None:  # used, resent or revoked by a concurrent request since peek
            raise LinkInvalid()
        user_id = int(row[0])
        await users.write_password(conn, user_id, password_hash, must_change=False)
        await users.write_activation(conn, user_id)
        actor_ctx = replace(
            ctx, actor_id=user_id, actor_email=pending.email, actor_role=pending.role
        )
        await audit.record(
            conn,
            actor_ctx,
            events.invitation_accepted(
                user_id, pending.email, details={"token_fingerprint": audit.fingerprint(str(token))}
            ),
        )
        session_token, session = await sessions.create(
            conn, user_id=user_id, now=at, absolute=absolute, ip=ctx.ip,
            user_agent=ctx.user_agent,
        )  # fmt: skip
        account = await login.account_by_id(conn, user_id)
        assert account is not None
        await login.finish(
            conn, actor_ctx, account, session_id=session.id, now=at,
            throttle=throttle or login.Throttle(),
        )  # fmt: skip
    return Accepted(user_id, pending.email, pending.role, session_token)
