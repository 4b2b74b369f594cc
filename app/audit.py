"""Audit log: typed events on an HMAC chain, written in the caller's transaction (AUDIT-1..8)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql
from psycopg.types.json import Jsonb

from app.audit_events import Event, EventType
from app.errors import Invalid, KeelError, NotFound

if TYPE_CHECKING:
    from app.config import Config
    from app.ops.doctor import Check

__all__ = [
    "Context",
    "Event",
    "EventType",
    "VerifyResult",
    "derive_key",
    "diff",
    "fingerprint",
    "key_id",
    "record",
    "redact",
    "ring_keys",
    "verify",
]

# One advisory lock key per database serialises chain appends (AUDIT-4). "keelaudt".
CHAIN_LOCK = 0x6B65656C_61756474
GENESIS = bytes(32)  # prev_hash of the first row
MASK = "***"
DOCTOR_ROWS = 1000  # how much of the head `keel doctor` re-verifies
_USER_AGENT_MAX = 200


def derive_key(secret_key: str) -> bytes:
    """The chain key is derived from secret_key so the raw key is never used twice."""
    return hmac.new(secret_key.encode(), b"keel-audit-chain-v1", hashlib.sha256).digest()


def key_id(audit_key: bytes) -> str:
    """A key's public name, 8 hex digits: records say which key signed them (key rotation).

    A hash of the derived chain key: it names the key without revealing anything usable."""
    return hashlib.sha256(b"keel-key-id-v1" + audit_key).hexdigest()[:8]


def ring_keys(secret_keys: tuple[str, ...]) -> dict[str, bytes]:
    """Key id → chain key for every key of the ring, the signing key first."""
    return {key_id(k): k for k in (derive_key(s) for s in secret_keys)}


@dataclass(frozen=True)
class Context:
    """Who acts, from where, and the key that seals their events.

    Built once per request (web) or per command (CLI) and passed to every service
    function that changes state, so the service can write its audit event itself."""

    audit_key: bytes = field(repr=False)
    actor_id: int | None = None
    actor_email: str | None = None
    actor_role: str | None = None
    session_id: int | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    os_actor: str | None = None  # "user@host" for CLI commands (CLI-5)
    argv: tuple[str, ...] = ()  # CLI argv with secret values removed (CLI-5)
    # The API token a request came with: the actor is its owner, and every event it causes
    # names the token too (metadata `api_token_id`), so a script's changes can be told apart.
    token_id: int | None = None


# ---- redaction (AUDIT-7) ----------------------------------------------------------------

# A key looks secret when one of these appears in it ...
_SECRET_WORDS = re.compile(
    r"passw|passphrase|secret|token|api_?key|private_?key|credential|backup|hash|salt|"
    r"cookie|authorization|otp|totp|recovery_key"
)
# ... or it is a one-time code ("code", "mfa_code", "backup_codes"): plain "code" alone is
# not enough, so "country_code" and "postal_code" stay readable in diffs.
_SECRET_CODE = re.compile(
    r"(^|_)(mfa|otp|totp|backup|recovery|auth|verification|reset|login|security|one_time)_codes?$"
    r"|^codes?$"
)
# Derived facts about a secret are not the secret: when it changed, how many, its fingerprint.
_SAFE_SUFFIXES = ("_fingerprint", "_at", "_count", "_id", "_ids", "_length", "_reason", "_policy")
_SAFE_NAMES = frozenset({"must_change_password", "revoked_reason"})


def is_secret_name(name: str) -> bool:
    key = name.lower().replace("-", "_")
    if key in _SAFE_NAMES or key.endswith(_SAFE_SUFFIXES):
        return False
    return bool(_SECRET_WORDS.search(key) or _SECRET_CODE.search(key))


def fingerprint(token: str | bytes) -> str:
    """8 hex characters of SHA-256: enough to correlate, useless to replay (AUDIT-7)."""
    data = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()[:8]


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the values of secret-looking keys masked, at any depth."""
    return {
        str(k): MASK if is_secret_name(str(k)) else _redact_value(v) for k, v in mapping.items()
    }


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], fields: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """{field: {"from": old, "to": new}} for every changed field, secrets masked (EDIT-6)."""
    names = fields if fields is not None else list(dict.fromkeys([*before, *after]))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if is_secret_name(name):
            out[name] = {"from": MASK, "to": MASK}
        else:
            out[name] = {"from": jsonable(old), "to": jsonable(new)}
    return out


# ---- canonical form ---------------------------------------------------------------------


def clean_text(value: str) -> str:
    """PostgreSQL text refuses NUL and lone surrogates; hostile input must not make a 500."""
    if value.isascii() and "\x00" not in value:
        return value  # most text: nothing to replace, and no copy made
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def jsonable(value: Any) -> Any:
    """A JSON value that survives a jsonb round trip unchanged, so hashes stay verifiable."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        # jsonb rewrites exponents (1e+20 → 100000000000000000000) and refuses NaN.
        return value if math.isfinite(value) and "e" not in repr(value) else repr(value)
    if isinstance(value, datetime):
        return iso(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {clean_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return clean_text(str(value))


def iso(at: datetime) -> str:
    utc = at.astimezone(UTC)
    if utc.year < 1000:
        # strftime writes such years unpadded; sealed rows hold that text, so it stays.
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as the strftime above, without parsing a format on every call.
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(row: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTC times: the bytes the HMAC seals (AUDIT-4)."""
    return json.dumps(
        {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def seal(
    key: bytes,
    prev_hash: bytes,
    row: Mapping[str, Any],
    keys: tuple[str, str] | None = None,
) -> bytes:
    """The row's HMAC. Rows that record a key id seal it too, with the previous row's: a row
    relabelled with an invented key id (which could not be checked) breaks the next row."""
    data = prev_hash + canonical(row)
    if keys is not None:
        own, previous = keys
        data += b"\0key\0" + own.encode() + b"\0prev-key\0" + previous.encode()
    return hmac.new(key, data, hashlib.sha256).digest()


# The sealed columns, in table order; prev_hash and row_hash are the chain itself.
SEALED = (
    "id", "at", "event_type", "actor_id", "actor_email", "session_id", "ip", "user_agent",
    "request_id", "target_resource", "target_id", "outcome", "summary", "metadata", "os_actor",
)  # fmt: skip


def _bounded(value: str | None, limit: int) -> str | None:
    return None if value is None else clean_text(value)[:limit]


def _row(ctx: Context, event: Event, row_id: int, at: datetime) -> dict[str, Any]:
    metadata = dict(event.metadata)
    if ctx.argv:
        metadata.setdefault("argv", list(ctx.argv))  # already stripped of secrets (CLI-5)
    if ctx.token_id is not None:
        metadata.setdefault("api_token_id", ctx.token_id)
    return {
        "id": row_id,
        "at": at,
        "event_type": EventType(event.type).value,
        "actor_id": ctx.actor_id,
        "actor_email": _bounded(ctx.actor_email and ctx.actor_email.lower(), 320),
        "session_id": ctx.session_id,
        "ip": _bounded(ctx.ip, 64),
        "user_agent": _bounded(ctx.user_agent, _USER_AGENT_MAX),
        "request_id": _bounded(ctx.request_id, 64),
        "target_resource": _bounded(event.target_resource, 100),
        "target_id": _bounded(event.target_id, 200),
        "outcome": event.outcome,
        "summary": _bounded(event.summary, 500) or "",
        "metadata": jsonable(redact(metadata)),  # AUDIT-7: always, whatever the caller passed
        "os_actor": _bounded(ctx.os_actor, 300),
    }


# ---- writing (AUDIT-4, AUDIT-5) ---------------------------------------------------------


async def record(conn: psycopg.AsyncConnection[Any], ctx: Context, event: Event) -> int:
    """Append `event` to the chain inside the caller's transaction; returns the row id.

    If the caller's transaction rolls back, the event disappears with the change (AUDIT-5).
    Outside a transaction one is opened for just this row."""
    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        async with conn.transaction():
            return await _append(conn, ctx, event)
    return await _append(conn, ctx, event)


async def _append(conn: psycopg.AsyncConnection[Any], ctx: Context, event: Event) -> int:
    cur = await conn.execute(
        "SELECT pg_advisory_xact_lock(%s), current_setting('transaction_isolation'),"
        " nextval(pg_get_serial_sequence('keel_audit', 'id')), clock_timestamp()",
        (CHAIN_LOCK,),
    )
    _lock, isolation, row_id, at = await cur.fetchone()  # type: ignore[misc]
    if isolation != "read committed":
        # A snapshot older than the lock would miss the newest row and fork the chain.
        raise RuntimeError(f"audit.record needs READ COMMITTED, not {isolation}")
    last = await (
        await conn.execute("SELECT row_hash, key_id FROM keel_audit ORDER BY id DESC LIMIT 1")
    ).fetchone()
    prev_hash = bytes(last[0]) if last else GENESIS
    prev_kid = (last[1] or "") if last else ""
    row = _row(ctx, event, row_id, at)
    row_hash = seal(ctx.audit_key, prev_hash, row, (key_id(ctx.audit_key), prev_kid))
    await conn.execute(
        "INSERT INTO keel_audit (id, at, event_type, actor_id, actor_email, session_id, ip,"
        " user_agent, request_id, target_resource, target_id, outcome, summary, metadata,"
        " os_actor, prev_hash, row_hash, key_id) VALUES (%(id)s, %(at)s, %(event_type)s,"
        " %(actor_id)s, %(actor_email)s, %(session_id)s, %(ip)s, %(user_agent)s,"
        " %(request_id)s, %(target_resource)s, %(target_id)s, %(outcome)s, %(summary)s,"
        " %(metadata)s, %(os_actor)s, %(prev_hash)s, %(row_hash)s, %(key_id)s)",
        {
            **row,
            "metadata": Jsonb(row["metadata"]),
            "prev_hash": prev_hash,
            "row_hash": row_hash,
            "key_id": key_id(ctx.audit_key),
        },
    )
    return int(row_id)


# ---- verifying (AUDIT-4) ----------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    head_id: int | None = None
    head_hash: str | None = None  # hex; an operator may note it to detect tail truncation
    broken_id: int | None = None
    broken_at: datetime | None = None
    broken_type: str | None = None
    reason: str = ""
    # Rows whose signing key is no longer in the ring: their links were checked, their
    # contents cannot be. Not evidence of tampering, but not verified either.
    unverified: int = 0
    retired: tuple[str, ...] = ()

    @property
    def retired_text(self) -> str:
        keys = ", ".join(self.retired)
        return f"{self.unverified} rows cannot be verified: key {keys} retired"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "unverified": self.unverified,
            "retired_keys": list(self.retired),
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "broken": None
            if self.ok
            else {
                "id": self.broken_id,
                "at": iso(self.broken_at) if self.broken_at else None,
                "event_type": self.broken_type,
                "reason": self.reason,
            },
        }


_COLUMNS = ", ".join((*SEALED, "key_id", "prev_hash", "row_hash"))


async def verify(
    conn: psycopg.AsyncConnection[Any],
    key: bytes | Mapping[str, bytes],
    *,
    batch: int = 1000,
    last: int | None = None,
) -> VerifyResult:
    """Walk the chain in id order, a batch at a time, and name the first broken row.

    `key` is the chain key, or the ring (`ring_keys`): each row is checked with the key its
    key id names. A row whose key left the ring is counted as unverified, not as broken.
    `last=N` checks only the newest N rows, anchored on the hash of the row before them:
    a cheap check of the head for `keel doctor` (OPS-5)."""
    keys = {key_id(key): key} if isinstance(key, bytes) else dict(key)
    retired: dict[str, None] = {}
    unverified = 0
    prev, count, last_id, prev_kid = GENESIS, 0, 0, ""
    head_unverified = False
    if last is not None:
        cur = await conn.execute(
            "SELECT id, row_hash, key_id FROM keel_audit ORDER BY id DESC OFFSET %s LIMIT 1",
            (last,),
        )
        anchor = await cur.fetchone()
        if anchor:
            last_id, prev, prev_kid = int(anchor[0]), bytes(anchor[1]), anchor[2] or ""
    while True:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM keel_audit WHERE id > %s ORDER BY id LIMIT %s",
            (last_id, batch),
        )
        rows = await cur.fetchall()
        if not rows:
            break
        for values in rows:
            row = dict(zip(SEALED, values[: len(SEALED)], strict=True))
            kid, prev_hash, row_hash = values[-3], bytes(values[-2]), bytes(values[-1])
            reason = ""
            head_unverified = False
            if prev_hash != prev:
                reason = "its link to the previous row is broken: a row before it was removed"
            elif kid is not None and kid not in keys:
                retired[kid] = None
                unverified += 1
                head_unverified = True
            elif kid is not None and not hmac.compare_digest(
                seal(keys[kid], prev_hash, row, (kid, prev_kid)), row_hash
            ):
                reason = (
                    "its contents do not match its hash: the row was altered (or the key id "
                    "of the row before it was changed)"
                )
            elif kid is None and not any(
                # Rows written before key ids were recorded name no key: try the whole ring.
                hmac.compare_digest(seal(k, prev_hash, row), row_hash)
                for k in keys.values()
            ):
                reason = "its contents do not match its hash: the row was altered"
            if reason:
                return VerifyResult(
                    False, count, last_id or None, prev.hex() if last_id else None,
                    row["id"], row["at"], row["event_type"], reason,
                )  # fmt: skip
            prev, last_id, count, prev_kid = row_hash, row["id"], count + 1, kid or ""
    if head_unverified:
        # Every append is sealed with the ring's first key, so the newest row always names a
        # key in the ring; one that does not may have had its key id changed to escape the
        # check (a retired key in the middle of the chain is vouched for by the row after it).
        return VerifyResult(
            False, count, last_id or None, prev.hex() if last_id else None,
            last_id, None, None,
            "the newest row names a key that is not in secret_keys: its key id may have been "
            "changed (if you just retired that key, put it back until a new row is written)",
            unverified=unverified, retired=tuple(retired),
        )  # fmt: skip
    return VerifyResult(
        True, count, last_id or None, prev.hex() if last_id else None,
        unverified=unverified, retired=tuple(retired),
    )  # fmt: skip


async def doctor_check(config: Config) -> list[Check]:
    """OPS-5: the newest rows of the chain verify under this installation's secret key."""
    from app.config import secret_key_problem
    from app.db.pool import connect
    from app.ops.doctor import FAIL, OK, WARN, Check

    if secret_key_problem(config.secret_key):
        return [Check("audit chain", WARN, "not checked: no usable secret_key")]
    try:
        async with connect(config) as conn:
            result = await verify(conn, ring_keys(config.ring), last=DOCTOR_ROWS)
    except (KeelError, psycopg.Error) as exc:
        return [Check("audit chain", WARN, f"not checked: {str(exc).splitlines()[0][:200]}")]
    if not result.ok:
        return [
            Check(
                "audit chain",
                FAIL,
                f"row {result.broken_id} ({result.broken_type}) does not verify: {result.reason};"
                " run keel audit verify",
            )
        ]
    if result.unverified:
        return [
            Check(
                "audit chain",
                WARN,
                f"of the newest {result.rows} rows, {result.retired_text}; put the key back "
                "in secret_keys to verify them",
            )
        ]
    return [Check("audit chain", OK, f"the newest {result.rows} rows verify")]


# ---- reading (AUDIT-8) ------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    event_type: str
    actor_id: int | None
    actor_email: str | None
    session_id: int | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    target_resource: str | None
    target_id: str | None
    outcome: str
    summary: str
    metadata: dict[str, Any]
    os_actor: str | None

    @property
    def changes(self) -> dict[str, dict[str, Any]]:
        """Field-level from → to of update events, for per-object history (AUDIT-8)."""
        changes = self.metadata.get("changes")
        return changes if isinstance(changes, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        return {name: iso(self.at) if name == "at" else getattr(self, name) for name in SEALED}


@dataclass(frozen=True)
class HistoryPage:
    rows: list[AuditRow]
    older: str | None = None  # cursor of the next, older page
    newer: str | None = None  # cursor of the previous, newer page


_SELECT = f"SELECT {', '.join(SEALED)} FROM keel_audit"
_RESOURCE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,99}$")
_MAX_LIMIT = 500


def encode_cursor(row: AuditRow) -> str:
    return base64.urlsafe_b64encode(f"{iso(row.at)}|{row.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (at, id) of an opaque cursor; anything forged or corrupt is Invalid (SEC-3)."""
    bad = Invalid(
        "the page link is damaged",
        fields={"cursor": "the page link is damaged"},
        fix="go back to the first page of the history",
    )
    if not isinstance(cursor, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", cursor):
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, _, raw_id = text.partition("|")
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        row_id = int(raw_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise bad from None
    if not 0 < row_id < 2**63 or not raw_id.isdigit():
        raise bad
    return at, row_id


def check_event(event: str) -> EventType:
    try:
        return EventType(event)
    except ValueError:
        raise Invalid(
            f"unknown event type {clean_text(event)[:40]!r}",
            fields={"event": "not a known event type"},
            fix="pick one of the listed event types (see docs/security/audit.md)",
        ) from None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise Invalid(
            "the limit is out of range",
            fields={"limit": f"a whole number from 1 to {_MAX_LIMIT}"},
            fix=f"use a limit from 1 to {_MAX_LIMIT}",
        )
    return limit


def _actor_clause(actor: str | int) -> tuple[sql.Composable, Any]:
    if isinstance(actor, int) and not isinstance(actor, bool):
        return sql.SQL("actor_id = %s"), actor
    text = str(actor).strip()
    if text.isdigit() and len(text) < 19:
        return sql.SQL("actor_id = %s"), int(text)
    if "@" in text and len(text) <= 320 and text.isprintable():
        return sql.SQL("actor_email = %s"), text.lower()
    raise Invalid(
        "the actor must be an email address or a user id",
        fields={"actor": "an email address or a user id"},
        fix="write the user's email, e.g. alice@example.com",
    )


def _filters(
    *,
    event: str | None,
    actor: str | int | None,
    resource: str | None,
    object_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[sql.Composable], list[Any]]:
    where: list[sql.Composable] = []
    params: list[Any] = []
    if event:
        where.append(sql.SQL("event_type = %s"))
        params.append(check_event(event).value)
    if actor not in (None, ""):
        clause, value = _actor_clause(actor)
        where.append(clause)
        params.append(value)
    if resource:
        if not _RESOURCE.match(resource):
            raise Invalid(
                "unknown resource name",
                fields={"resource": "lowercase letters, digits, '_', '.', '-'"},
                fix="use a resource slug as in /admin/<resource>/",
            )
        where.append(sql.SQL("target_resource = %s"))
        params.append(resource)
        if object_id is not None:
            where.append(sql.SQL("target_id = %s"))
            params.append(clean_text(str(object_id))[:200])
    if since and until and since > until:
        raise Invalid(
            "the date range ends before it starts",
            fields={"until": "must be after the start"},
            fix="swap the dates",
        )
    if since:
        where.append(sql.SQL("at >= %s"))
        params.append(since)
    if until:
        where.append(sql.SQL("at < %s"))
        params.append(until)
    return where, params


async def _fetch(
    conn: psycopg.AsyncConnection[Any], query: sql.Composed, params: list[Any]
) -> list[AuditRow]:
    cur = await conn.execute(query, params)
    return [AuditRow(*values) for values in await cur.fetchall()]


async def history(
    conn: psycopg.AsyncConnection[Any],
    *,
    event: str | None = None,
    actor: str | int | None = None,
    resource: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_cursor: str | None = None,
    before_cursor: str | None = None,
    limit: int = 50,
) -> HistoryPage:
    """Newest first, keyset-paginated on (at, id): constant cost at any depth (AUDIT-8).

    `after_cursor` pages towards older events, `before_cursor` back towards newer ones."""
    limit = check_limit(limit)
    if after_cursor and before_cursor:
        raise Invalid("give one page cursor, not two", fields={"cursor": "only one direction"})
    where, params = _filters(
        event=event, actor=actor, resource=resource, object_id=object_id, since=since, until=until
    )
    newest_first = not before_cursor
    if after_cursor or before_cursor:
        at, row_id = decode_cursor(after_cursor or before_cursor or "")
        op = "<" if newest_first else ">"
        where.append(sql.SQL("(at, id) {} (%s, %s)").format(sql.SQL(op)))
        params += [at, row_id]
    order = "at DESC, id DESC" if newest_first else "at ASC, id ASC"
    query = sql.SQL("{} {} ORDER BY {} LIMIT %s").format(
        sql.SQL(_SELECT),
        sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.SQL(order),
    )
    rows = await _fetch(conn, query, [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if not newest_first:
        rows.reverse()
    if not rows:
        return HistoryPage([])
    older = encode_cursor(rows[-1]) if (more if newest_first else True) else None
    newer = encode_cursor(rows[0]) if (after_cursor or (before_cursor and more)) else None
    return HistoryPage(rows, older, newer)


async def object_history(
    conn: psycopg.AsyncConnection[Any], resource: str, object_id: object, limit: int = 50
) -> list[AuditRow]:
    """Events about one row, newest first; update events carry from → to in `changes`."""
    page = await history(conn, resource=resource, object_id=str(object_id), limit=limit)
    return page.rows


async def user_activity(
    conn: psycopg.AsyncConnection[Any], user_id: int, limit: int = 20
) -> list[AuditRow]:
    """What a user did and what was done to their account, newest first (AUTHZ-7)."""
    limit = check_limit(limit)
    query = (
        f"SELECT * FROM ({_SELECT} WHERE actor_id = %(uid)s ORDER BY at DESC, id DESC"
        f" LIMIT %(limit)s) AS mine UNION"
        f" SELECT * FROM ({_SELECT} WHERE target_resource = 'users' AND target_id = %(tid)s"
        f" ORDER BY at DESC, id DESC LIMIT %(limit)s) AS theirs"
        f" ORDER BY at DESC, id DESC LIMIT %(limit)s"
    )
    cur = await conn.execute(query, {"uid": user_id, "tid": str(user_id), "limit": limit})
    return [AuditRow(*values) for values in await cur.fetchall()]


async def recent(conn: psycopg.AsyncConnection[Any], limit: int = 10) -> list[AuditRow]:
    """The last events, for the dashboard (LIST-11)."""
    return (await history(conn, limit=limit)).rows


async def daily_counts(
    conn: psycopg.AsyncConnection[Any], days: int = 7, *, now: datetime | None = None
) -> list[tuple[date, int]]:
    """Events per UTC day, oldest first, zeros included: the dashboard sparkline (LIST-11)."""
    if not 1 <= days <= 366:
        raise Invalid("days must be from 1 to 366", fields={"days": "1 to 366"})
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    cur = await conn.execute(
        "SELECT (at AT TIME ZONE 'UTC')::date, count(*) FROM keel_audit"
        " WHERE at >= %s AND at < %s GROUP BY 1",
        (start, start + timedelta(days=days)),
    )
    counts = {day: int(n) for day, n in await cur.fetchall()}
    return [
        (first + timedelta(days=i), counts.get(first + timedelta(days=i), 0)) for i in range(days)
    ]


@dataclass(frozen=True)
class SealedRow:
    """One event with its place in the chain, for the event's own page: the hashes let an
    operator compare it with `keel audit verify` or a copy kept elsewhere."""

    row: AuditRow
    key_id: str | None  # rows sealed before key rotation name no key
    prev_hash: str  # hex
    row_hash: str  # hex

    @property
    def id(self) -> int:
        return self.row.id


async def sealed(conn: psycopg.AsyncConnection[Any], event_id: int) -> SealedRow:
    """One event by id with its chain hashes, or NotFound."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM keel_audit WHERE id = %s", (event_id,))
    found = await cur.fetchone()
    if found is None:
        raise NotFound(
            f"audit event {event_id} does not exist",
            "no event of the log has this number",
            "open the audit log and pick the event from the list",
        )
    *values, kid, prev, own = found
    return SealedRow(AuditRow(*values), kid, bytes(prev).hex(), bytes(own).hex())
