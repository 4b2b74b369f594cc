"""Secret-key rotation: the key ring's ids, `keel doctor`'s retirement advice, the next key.

The ring is `secret_keys` (or `secret_key` alone, a ring of one): the first key signs, every
key verifies. What depends on an older key, and for how long:

- form tokens (CSRF), page links (cursors), one-shot messages (flash): made by pages shown
  before the rotation; a signed-in page lives at most `session_absolute`. Sessions themselves
  are random tokens checked in the database and do not depend on the key.
- mailed reset links: sealed with the key when queued; a reset link lives 30 minutes.
- second factors: a TOTP secret and backup codes are derived under the key they were enrolled
  with, until the user enrols again.
- the audit chain: every row names its key, and verifying a row needs that key, forever.
  Retiring a key leaves its rows unverifiable (their links are still checked).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from app import audit
from app.errors import KeelError

if TYPE_CHECKING:
    from app.config import Config
    from app.ops.doctor import Check

RESET_LINK_LIFETIME = 30 * 60  # app/authority/recovery.py RESET_TTL


def public_id(secret_key: str) -> str:
    """The 8-hex-digit id records carry for this key (see app.audit.key_id)."""
    return audit.key_id(audit.derive_key(secret_key))


def new_key() -> str:
    return secrets.token_urlsafe(32)


def live_window(config: Config) -> float:
    """Seconds after a rotation during which something live may still carry the old key."""
    return max(config.session_absolute, RESET_LINK_LIFETIME)


async def retirement(
    conn: psycopg.AsyncConnection[Any], config: Config, *, now: datetime | None = None
) -> list[tuple[str, str]]:
    """(key id, advice) for every key of the ring after the first."""
    ring = [public_id(k) for k in config.ring]
    if len(ring) < 2:
        return []
    now = now or datetime.now(UTC)
    # The rotation, as the database saw it: the first row the new signing key sealed.
    cur = await conn.execute("SELECT min(at) FROM keel_audit WHERE key_id = %s", (ring[0],))
    row = await cur.fetchone()
    rotated = row[0] if row else None
    cur = await conn.execute(
        "SELECT key_id, count(*) FROM keel_audit WHERE key_id = ANY(%s) OR key_id IS NULL"
        " GROUP BY key_id",
        (ring[1:],),
    )
    signed = {kid: int(n) for kid, n in await cur.fetchall()}
    from app.authority.mfa import key_id_for

    advice = []
    for secret, kid in zip(config.ring[1:], ring[1:], strict=True):
        mfa_id = key_id_for(secret)
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM keel_users WHERE substring(mfa_secret_enc FROM 2 FOR 4)"
            " = %s) + (SELECT count(DISTINCT user_id) FROM keel_mfa_backup_codes"
            " WHERE key_id = %s AND used_at IS NULL)",
            (mfa_id, mfa_id),
        )
        factors = int((await cur.fetchone() or (0,))[0])
        if rotated is None:
            text = (
                f"still needed: the signing key {ring[0]} has signed nothing yet "
                "(restart every keel process with the new ring)"
            )
        elif now < rotated + timedelta(seconds=live_window(config)):
            until = (rotated + timedelta(seconds=live_window(config))).strftime("%Y-%m-%d %H:%M")
            text = (
                f"still needed until {until} UTC by pages and mailed links from before the rotation"
            )
        elif factors:
            text = (
                f"still needed by {factors} second factor(s) enrolled under it: they stop "
                "working without it (ask those users to enrol again first)"
            )
        elif signed.get(kid) or signed.get(None):
            rows = signed.get(kid, 0) + signed.get(None, 0)
            text = (
                f"nothing live depends on it; keep it for audit verification ({rows} rows may "
                "be signed with it): removing it leaves them unverifiable"
            )
        else:
            text = "can be retired: remove it from secret_keys and restart keel"
        advice.append((kid, text))
    return advice


async def doctor_check(config: Config) -> list[Check]:
    """One line per older key of the ring: whether it can be retired yet."""
    from app.db.pool import connect
    from app.ops.doctor import OK, WARN, Check

    if len(config.ring) < 2:
        return []
    try:
        async with connect(config) as conn:
            advice = await retirement(conn, config)
    except (KeelError, psycopg.Error) as exc:
        return [Check("key ring", WARN, f"not checked: {str(exc).splitlines()[0][:200]}")]
    return [Check(f"key {kid}", OK, text) for kid, text in advice]
