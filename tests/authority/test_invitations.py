"""Invitations (AUTHZ-9) at the service, on a real database: one transaction per change with its
mail and audit event, the token only hashed at rest, single use, expiry, resend and revoke, the
role ceiling, and an invited account that cannot sign in or ask for a reset."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import invitations, login, recovery
from app.authority.passwords import Hasher, Policy
from app.authority.principal import Principal
from app.errors import Conflict, Invalid, PermissionDenied
from tests.authority.conftest import context_for, make_user, principal_of
from tests.helpers import outbox_mail

URL = "https://ops.example.com"
TTL = 3 * 86400.0
PASSWORD = "a long and unusual passphrase"
Conn = psycopg.AsyncConnection[Any]


@pytest.fixture(autouse=True)
async def crew(conn: Conn) -> None:
    await conn.execute("INSERT INTO keel_groups (name) VALUES ('crew')")


async def _invite(conn: Conn, ctx: Context, actor: Principal | None, **kw: Any) -> Any:
    args = {"email": "New.Person@Example.com", "role": "staff", "groups": ["crew"]}
    args.update(kw)
    return await invitations.invite(conn, ctx, actor, public_url=URL, ttl=TTL, **args)


async def _link_token(conn: Conn, secret_key: str) -> str:
    *_, (_, body) = await outbox_mail(conn, secret_key)
    found = re.findall(r"https://ops\.example\.com/invite/([A-Za-z0-9_-]{43})", body)
    assert found, body
    return str(found[-1])


async def _events(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT event_type FROM keel_audit ORDER BY id")
    return [r[0] for r in await cur.fetchall()]


async def test_invite_creates_an_inactive_account_and_mails_a_hashed_link(
    conn: Conn, secret_key: str, admin: Principal
) -> None:
    ctx = context_for(secret_key, admin)
    inv = await _invite(conn, ctx, admin)
    assert (inv.email, inv.role, inv.groups, inv.state()) == (
        "new.person@example.com",
        "staff",
        ["crew"],
        "pending",
    )
    row = await (
        await conn.execute(
            "SELECT is_active, password_hash FROM keel_users WHERE id = %s", (inv.user_id,)
        )
    ).fetchone()
    assert row == (False, None)
    token = await _link_token(conn, secret_key)
    # Only the hash is stored; the queued mail holds a seal, not the token.
    dump = await (
        await conn.execute(
            "SELECT (SELECT string_agg(body_text || body_html, '') FROM keel_outbox)"
            " || (SELECT string_agg(encode(token_hash, 'escape'), '') FROM keel_invitations)"
        )
    ).fetchone()
    assert dump is not None and token not in dump[0]
    stored = await (await conn.execute("SELECT token_hash FROM keel_invitations")).fetchone()
    assert stored is not None and bytes(stored[0]) == recovery.token_hash(token)
    assert await _events(conn) == ["user_created", "invitation_sent"]
    # The invited account cannot sign in: the same failure as a wrong password.
    async with await psycopg.AsyncConnection.connect(conn.info.dsn, autocommit=True) as other:
        h = Hasher(time_cost=1, memory_cost=8192, parallelism=1)
        try:
            result = await login.login(
                login.using(other), ctx, h, email=inv.email, password="anything at all",
                absolute=3600,
            )  # fmt: skip
        finally:
            h.close()
    assert not result.ok and result.token is None
    # "Forgot password" sends nothing to an invited address (it looks like every other).
    sent = await recovery.request_reset(conn, ctx, email=inv.email, public_url=URL)
    assert sent is False


async def test_accept_sets_the_password_activates_and_signs_in_once(
    conn: Conn, secret_key: str, admin: Principal, fast_hasher: Hasher
) -> None:
    ctx = context_for(secret_key, admin)
    inv = await _invite(conn, ctx, admin)
    token = await _link_token(conn, secret_key)
    policy = Policy(min_length=12)
    with pytest.raises(Invalid):  # the policy first; the link stays good
        await invitations.accept(
            conn, ctx, fast_hasher, token=token, password="short", policy=policy, absolute=3600
        )
    done = await invitations.accept(
        conn, ctx, fast_hasher, token=token, password=PASSWORD, policy=policy, absolute=3600
    )
    assert done.user_id == inv.user_id and len(done.session_token) == 43
    row = await (
        await conn.execute(
            "SELECT is_active, password_hash IS NOT NULL FROM keel_users WHERE id = %s",
            (inv.user_id,),
        )
    ).fetchone()
    assert row == (True, True)
    assert (await _events(conn))[-2:] == ["invitation_accepted", "login_succeeded"]
    with pytest.raises(invitations.LinkInvalid):  # single use
        await invitations.accept(
            conn, ctx, fast_hasher, token=token, password=PASSWORD, policy=policy, absolute=3600
        )
    assert await invitations.list_pending(conn) == []


async def test_expired_resent_and_revoked_links_are_refused(
    conn: Conn, secret_key: str, admin: Principal, fast_hasher: Hasher
) -> None:
    ctx = context_for(secret_key, admin)
    policy = Policy()
    inv = await _invite(conn, ctx, admin)
    first = await _link_token(conn, secret_key)
    later = datetime.now(UTC) + timedelta(seconds=TTL + 60)
    assert await invitations.peek(conn, first) is not None
    assert await invitations.peek(conn, first, now=later) is None  # expiry honoured
    assert [i.state(later) for i in await invitations.list_pending(conn)] == ["expired"]

    again = await invitations.resend(conn, ctx, admin, inv.id, public_url=URL, ttl=TTL)
    assert again.send_count == 2
    second = await _link_token(conn, secret_key)
    assert second != first
    assert await invitations.peek(conn, first) is None  # the old link died
    assert await invitations.peek(conn, second) is not None

    await invitations.revoke(conn, ctx, admin, inv.id)
    assert await invitations.peek(conn, second) is None
    with pytest.raises(invitations.LinkInvalid):
        await invitations.accept(
            conn, ctx, fast_hasher, token=second, password=PASSWORD, policy=policy, absolute=60
        )
    gone = await (
        await conn.execute("SELECT count(*) FROM keel_users WHERE id = %s", (inv.user_id,))
    ).fetchone()
    assert gone == (0,)  # the never-used account is removed
    with pytest.raises(Conflict):
        await invitations.revoke(conn, ctx, admin, inv.id)
    assert (await _events(conn))[-2:] == ["invitation_resent", "invitation_revoked"]
    # The address can be invited afresh.
    await _invite(conn, ctx, admin)


async def test_role_ceiling_duplicates_and_public_url(
    conn: Conn, secret_key: str, admin: Principal
) -> None:
    ctx = context_for(secret_key, admin)
    with pytest.raises(PermissionDenied):
        await _invite(conn, ctx, admin, role="developer")
    staff_id, _ = await make_user(conn, role="staff")
    staff = await principal_of(conn, staff_id)
    with pytest.raises(PermissionDenied):
        await _invite(conn, context_for(secret_key, staff), staff)
    with pytest.raises(Conflict):
        await _invite(conn, ctx, admin, email=admin.email)
    with pytest.raises(Invalid, match="public_url"):
        await invitations.invite(
            conn, ctx, admin, email="x@example.com", role="user", public_url="", ttl=TTL
        )
    assert await _events(conn) == []  # nothing was written by any refusal


async def test_the_cli_context_can_invite_any_role(
    conn: Conn, ctx: Context, secret_key: str
) -> None:
    inv = await _invite(conn, ctx, None, role="developer", groups=[])
    assert inv.invited_by_email == "ops@host"
    *_, (to, body) = await outbox_mail(conn, secret_key)
    assert to == inv.email and "An administrator invited you" in body
