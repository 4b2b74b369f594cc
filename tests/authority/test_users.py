"""AUTHZ-1, AUTHZ-5, INV-1, INV-3: the users service — create, read, change, remove, audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.audit import Context
from app.authority import sessions, users
from app.authority.passwords import Hasher
from app.authority.principal import Principal
from app.errors import Conflict, Invalid, NotFound
from tests.authority.conftest import context_for, make_user, principal_of

Conn = psycopg.AsyncConnection[Any]


async def audit_rows(conn: Conn) -> list[tuple[str, dict[str, Any], str | None]]:
    cur = await conn.execute("SELECT event_type, metadata, os_actor FROM keel_audit ORDER BY id")
    return [(t, m, o) for t, m, o in await cur.fetchall()]


async def open_session(conn: Conn, user_id: int) -> int:
    _token, sess = await sessions.create(conn, user_id=user_id, absolute=3600)
    return sess.id


async def live_sessions(conn: Conn, user_id: int) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM keel_sessions WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    return int((await cur.fetchone())[0])  # type: ignore[index]


async def test_create_normalises_the_email_and_records_one_event(
    conn: Conn, ctx: Context, fast_hasher: Hasher
) -> None:
    """AUTHZ-1: stored lowercase; INV-1: only an Argon2id hash; INV-3: user_created in the same tx."""
    password_hash = await fast_hasher.hash("a very long passphrase")
    user = await users.create(
        conn, ctx, None, email="  Alice.Smith@Example.COM ", role="staff",
        password_hash=password_hash, profile={"full_name": "Alice Smith", "timezone": "Europe/Paris"},
    )  # fmt: skip
    assert (user.email, user.role, user.is_active, user.has_password) == (
        "alice.smith@example.com", "staff", True, True,
    )  # fmt: skip
    assert user.full_name == "Alice Smith" and user.timezone == "Europe/Paris"
    assert user.password_changed_at is not None
    cur = await conn.execute("SELECT password_hash FROM keel_users WHERE id = %s", (user.id,))
    assert (await cur.fetchone())[0].startswith("$argon2id$")  # type: ignore[index]
    [(event, meta, os_actor)] = await audit_rows(conn)
    assert event == "user_created" and meta["role"] == "staff" and os_actor == "ops@host"
    assert "password" not in str(meta)
    assert (await users.get_by_email(conn, "ALICE.smith@example.com")).id == user.id


async def test_duplicate_email_in_any_case_is_a_conflict_and_writes_nothing(
    conn: Conn, ctx: Context
) -> None:
    await users.create(conn, ctx, None, email="bob@example.com")
    with pytest.raises(Conflict, match="already exists"):
        await users.create(conn, ctx, None, email="BOB@example.com")
    assert [e for e, _m, _o in await audit_rows(conn)] == ["user_created"]


@pytest.mark.parametrize(
    "email",
    [
        "",
        "no-at-sign",
        "two@@example.com",
        "<script>@example.com",
        "x@localhost",
        "a@b.c'; DROP TABLE keel_users;--",
        "ctrl\x00char@example.com",
        "a" * 70 + "@example.com",
        "x@" + "d" * 300 + ".com",
    ],
)
async def test_malformed_emails_are_refused_with_a_message(
    conn: Conn, ctx: Context, email: str
) -> None:
    with pytest.raises(Invalid) as err:
        await users.create(conn, ctx, None, email=email)
    assert err.value.problem and err.value.http_status == 400
    assert await users.list_users(conn) == []


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ({"full_name": "x" * 201}, "too long"),
        ({"display_name": "tab\there"}, "control character"),
        ({"timezone": "Mars/Olympus"}, "not a time zone"),
        ({"timezone": "../../etc/passwd"}, "not a time zone"),
        ({"locale": "english please"}, "not a locale"),
        ({"is_admin": "yes"}, "not a profile field"),
        ({"full_name": 42}, "must be text"),
    ],
)
async def test_bad_profile_values_are_refused(
    conn: Conn, ctx: Context, profile: dict[str, object], words: str
) -> None:
    with pytest.raises(Invalid, match=words):
        await users.create(conn, ctx, None, email="p@example.com", profile=profile)


async def test_role_must_be_on_the_ladder(conn: Conn, ctx: Context) -> None:
    with pytest.raises(Invalid, match="not a role"):
        await users.create(conn, ctx, None, email="r@example.com", role="superuser")


async def test_list_filters_and_pages_by_keyset(conn: Conn, ctx: Context) -> None:
    for i in range(5):
        await make_user(conn, role="staff", email=f"s{i}@example.com")
    await make_user(conn, role="supervisor", email="boss@example.com", active=False)
    assert [u.email for u in await users.list_users(conn, role="supervisor")] == [
        "boss@example.com"
    ]
    assert len(await users.list_users(conn, active=True)) == 5
    assert [u.email for u in await users.list_users(conn, search="S3@")] == ["s3@example.com"]
    # LIKE wildcards in the search are literal, not patterns.
    assert await users.list_users(conn, search="%") == []
    page1 = await users.list_users(conn, limit=2)
    page2 = await users.list_users(conn, limit=2, after=(page1[-1].email, page1[-1].id))
    assert [u.email for u in page1 + page2] == [
        "boss@example.com", "s0@example.com", "s1@example.com", "s2@example.com",
    ]  # fmt: skip


async def test_unknown_ids_and_emails_are_not_found(conn: Conn) -> None:
    with pytest.raises(NotFound):
        await users.get(conn, 999_999)
    with pytest.raises(NotFound, match="no user has the email") as err:
        await users.get_by_email(conn, "ghost@example.com")
    assert "keel user list" in err.value.fix


async def test_update_profile_records_a_diff_and_own_profile_is_editable(
    conn: Conn, secret_key: str, ctx: Context
) -> None:
    staff_id, _ = await make_user(conn, role="staff")
    me = await principal_of(conn, staff_id)
    changed = await users.update_profile(
        conn, context_for(secret_key, me), me, staff_id, {"job_title": "Dispatcher"}
    )
    assert changed.job_title == "Dispatcher"
    [(event, meta, _o)] = await audit_rows(conn)
    assert event == "user_updated" and meta["changes"]["job_title"]["to"] == "Dispatcher"
    # Nothing changed: no event.
    await users.update_profile(conn, ctx, None, staff_id, {"job_title": "Dispatcher"})
    assert len(await audit_rows(conn)) == 1


async def test_deactivation_revokes_sessions_and_reactivation_does_not_restore_them(
    conn: Conn, ctx: Context, admin: Principal, secret_key: str
) -> None:
    """AUTHZ-5: a deactivated user's sessions are revoked through the single writer (SESS-4)."""
    staff_id, _ = await make_user(conn, role="staff")
    await open_session(conn, staff_id)
    await open_session(conn, staff_id)
    actx = context_for(secret_key, admin)
    user = await users.set_active(conn, actx, admin, staff_id, False)
    assert not user.is_active and await live_sessions(conn, staff_id) == 0
    cur = await conn.execute(
        "SELECT DISTINCT revoked_reason FROM keel_sessions WHERE user_id = %s", (staff_id,)
    )
    assert await cur.fetchall() == [("deactivated",)]
    assert [e for e, _m, _o in await audit_rows(conn)] == [
        "user_updated", "sessions_revoked_by_other",
    ]  # fmt: skip
    assert (await users.set_active(conn, actx, admin, staff_id, True)).is_active


async def test_demotion_revokes_sessions_but_promotion_keeps_them(
    conn: Conn, admin: Principal, secret_key: str
) -> None:
    staff_id, _ = await make_user(conn, role="supervisor")
    await open_session(conn, staff_id)
    actx = context_for(secret_key, admin)
    await users.set_role(conn, actx, admin, staff_id, "staff")
    assert await live_sessions(conn, staff_id) == 0
    await open_session(conn, staff_id)
    await users.set_role(conn, actx, admin, staff_id, "supervisor")
    assert await live_sessions(conn, staff_id) == 1
    events = [(e, m.get("changes")) for e, m, _o in await audit_rows(conn) if e == "role_changed"]
    assert events == [
        ("role_changed", {"role": {"from": "supervisor", "to": "staff"}}),
        ("role_changed", {"role": {"from": "staff", "to": "supervisor"}}),
    ]


async def test_set_password_temporary_forces_a_change_and_ends_sessions(
    conn: Conn, admin: Principal, secret_key: str, fast_hasher: Hasher
) -> None:
    staff_id, _ = await make_user(conn, role="staff")
    await open_session(conn, staff_id)
    new_hash = await fast_hasher.hash("temporary passphrase")
    user = await users.set_password(
        conn, context_for(secret_key, admin), admin, staff_id, new_hash,
        temporary=True, reason="user forgot it on holiday",
    )  # fmt: skip
    assert user.must_change_password and await live_sessions(conn, staff_id) == 0
    rows = await audit_rows(conn)
    assert rows[0][0] == "password_reset_by_other"
    assert rows[0][1]["reason"] == "user forgot it on holiday"
    assert "temporary passphrase" not in str(rows) and new_hash not in str(rows)


async def test_writers_refuse_anything_but_an_argon2id_hash(conn: Conn) -> None:
    """INV-1: no code path can store a plaintext password (and the database CHECK agrees)."""
    user_id, _ = await make_user(conn, password=None)
    with pytest.raises(ValueError, match="Argon2id"):
        await users.write_password(conn, user_id, "hunter2", must_change=False)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "UPDATE keel_users SET password_hash = 'hunter2' WHERE id = %s", (user_id,)
        )


async def test_delete_removes_the_user_and_keeps_their_history(
    conn: Conn, admin: Principal, secret_key: str
) -> None:
    staff_id, _ = await make_user(conn, role="staff", email="leaver@example.com")
    await open_session(conn, staff_id)
    await users.delete(conn, context_for(secret_key, admin), admin, staff_id)
    assert await users.find(conn, staff_id) is None
    events = [e for e, _m, _o in await audit_rows(conn)]
    assert events[-1] == "user_deleted"


async def test_lock_and_unlock(conn: Conn, admin: Principal, secret_key: str) -> None:
    staff_id, _ = await make_user(conn, role="staff")
    actx = context_for(secret_key, admin)
    until = datetime.now(UTC) + timedelta(hours=1)
    user = await users.lock(conn, actx, admin, staff_id, until=until, reason="suspicious logins")
    assert user.is_locked()
    forever = await users.lock(conn, actx, admin, staff_id, until=None, reason="left the company")
    assert forever.is_locked(datetime.now(UTC) + timedelta(days=3650))
    assert not (await users.unlock(conn, actx, admin, staff_id, reason="cleared")).is_locked()
    events = [e for e, _m, _o in await audit_rows(conn)]
    assert events.count("account_locked") == 2 and events[-1] == "account_unlocked"


async def test_ensure_demo_admin_creates_one_only_when_none_exists(
    conn: Conn, ctx: Context, hasher: Hasher
) -> None:
    """OPS-8: a one-time password, shown once, to be changed at first sign-in."""
    created = await users.ensure_demo_admin(conn, ctx)
    assert created is not None
    email, password = created
    user = await users.get_by_email(conn, email)
    assert user.role == "administrator" and user.must_change_password
    cur = await conn.execute("SELECT password_hash FROM keel_users WHERE id = %s", (user.id,))
    assert (await hasher.verify((await cur.fetchone())[0], password))[0]  # type: ignore[index]
    assert await users.ensure_demo_admin(conn, ctx) is None


async def test_demo_reset_admin_ends_the_demo_admins_sessions(
    conn: Conn, ctx: Context, hasher: Hasher
) -> None:
    """`keel demo --reset-admin` is a password reset by someone else: sessions end (REC-5)."""
    created = await users.ensure_demo_admin(conn, ctx)
    assert created is not None
    user = await users.get_by_email(conn, created[0])
    token, _sess = await sessions.create(conn, user_id=user.id, absolute=3600)
    await open_session(conn, user.id)
    again = await users.ensure_demo_admin(conn, ctx, fresh_password=True)
    assert again is not None and again[1] != created[1]
    assert await live_sessions(conn, user.id) == 0
    assert await sessions.lookup(conn, token, idle=1800) is None
    cur = await conn.execute(
        "SELECT DISTINCT revoked_reason FROM keel_sessions WHERE user_id = %s", (user.id,)
    )
    assert await cur.fetchall() == [("password_reset_by_other",)]
    types = [e for e, _m, _o in await audit_rows(conn)]
    assert types[-2:] == ["password_reset_by_other", "sessions_revoked_by_other"]


async def test_demo_reset_admin_keeps_a_developer_a_developer(conn: Conn, ctx: Context) -> None:
    """Resetting the demo account's password never lowers its role (nor orphans developers)."""
    await make_user(conn, role="developer", email=users.DEMO_ADMIN_EMAIL)
    assert await users.ensure_demo_admin(conn, ctx, fresh_password=True) is not None
    assert (await users.get_by_email(conn, users.DEMO_ADMIN_EMAIL)).role == "developer"
    assert "role_changed" not in [e for e, _m, _o in await audit_rows(conn)]


async def test_hostile_search_text_is_harmless(conn: Conn) -> None:
    await make_user(conn, role="staff", email="s@example.com")
    for text in ("\x00", "'; DROP TABLE keel_users;--", "<script>", "x" * 10_000, "\\"):
        assert await users.list_users(conn, search=text) == [] or text == "\x00"
    assert len(await users.list_users(conn, search="\x00")) == 1  # nothing left to filter by
