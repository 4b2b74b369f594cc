"""AUDIT-7: secrets never reach audit metadata; hostile values are stored safely, never a 500."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from app import audit
from app import audit_events as ev
from app.audit import Context


def test_fingerprint_is_8_hex_of_sha256() -> None:
    fp = audit.fingerprint("s3cret-token")
    assert len(fp) == 8 and int(fp, 16) >= 0
    assert fp == audit.fingerprint(b"s3cret-token") and fp != audit.fingerprint("other")


def test_redact_masks_secret_looking_keys_at_any_depth() -> None:
    data = {
        "password": "hunter2hunter2",
        "new_password": "x",
        "api_key": "k",
        "API-Key": "k",
        "reset_token": "t",
        "totp_secret": "s",
        "backup_codes": ["AAAA-BBBB"],
        "mfa_code": "123456",
        "code": "123456",
        "password_hash": "$argon2id$...",
        "nested": {"client_secret": "s", "list": [{"token": "t", "name": "ok"}]},
        "email": "bob@example.com",
        "country_code": "FR",
        "token_fingerprint": "ab12cd34",
        "password_changed_at": "2024-01-01",
        "must_change_password": True,
    }
    out = audit.redact(data)
    for key in ("password", "new_password", "api_key", "API-Key", "reset_token", "totp_secret"):
        assert out[key] == "***", key
    for key in ("backup_codes", "mfa_code", "code", "password_hash"):
        assert out[key] == "***", key
    assert out["nested"]["client_secret"] == "***"
    assert out["nested"]["list"] == [{"token": "***", "name": "ok"}]
    for key in (
        "email",
        "country_code",
        "token_fingerprint",
        "password_changed_at",
        "must_change_password",
    ):
        assert out[key] == data[key], key
    assert data["password"] == "hunter2hunter2"  # the input is not modified


def test_diff_lists_changed_fields_and_masks_secrets() -> None:
    before = {"name": "Bob", "email": "b@x.io", "password_hash": "old", "n": 1, "same": 5}
    after = {"name": "Robert", "email": "b@x.io", "password_hash": "new", "n": 2, "same": 5}
    assert audit.diff(before, after) == {
        "name": {"from": "Bob", "to": "Robert"},
        "password_hash": {"from": "***", "to": "***"},
        "n": {"from": 1, "to": 2},
    }


def test_diff_makes_values_json_safe() -> None:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    out = audit.diff({"due": None, "price": Decimal("1.50")}, {"due": at, "price": Decimal("2")})
    assert out == {
        "due": {"from": None, "to": "2024-05-01T12:00:00.000000Z"},
        "price": {"from": "1.50", "to": "2"},
    }
    json.dumps(out)


async def test_record_redacts_metadata_whatever_the_caller_passed(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    event = ev.create("users", 9, "x", {"email": "x@y.z", "password": "plaintext!"})
    await audit.record(conn, ctx, event)
    raw = await (await conn.execute("SELECT metadata::text FROM keel_audit")).fetchone()
    assert raw and "plaintext!" not in raw[0] and '"password": "***"' in raw[0]
    assert (await audit.verify(conn, ctx.audit_key)).ok


async def test_hostile_values_are_stored_verbatim_but_safely(
    conn: psycopg.AsyncConnection[Any], ctx: Context
) -> None:
    """NUL bytes, lone surrogates, HTML, SQL and oversized fields never break the insert."""
    hostile = Context(
        audit_key=ctx.audit_key,
        actor_email="evil\x00@example.com",
        ip="1.2.3.4",
        user_agent="A" * 10_000,
        request_id="r" * 500,
    )
    event = ev.create(
        "tickets",
        "1'; DROP TABLE keel_audit; --",
        "<script>alert(1)</script>",
        {
            "title": "nul\x00byte \ud800 surrogate",
            "big": 1e300,
            "nan": float("nan"),
            "when": datetime(2024, 1, 1, tzinfo=UTC),
            "blob": b"\x00\x01",
            "tags": {"b", "a"},
        },
    )
    await audit.record(conn, hostile, event)
    [row] = await audit.recent(conn, 1)
    assert row.target_id == "1'; DROP TABLE keel_audit; --"
    assert "<script>" in row.summary  # stored as data; templates escape it
    assert row.user_agent is not None and len(row.user_agent) == 200
    assert row.request_id is not None and len(row.request_id) == 64
    assert row.actor_email == "evil\ufffd@example.com"
    values = row.metadata["values"]
    assert values["title"] == "nul\ufffdbyte ? surrogate"
    assert values["big"] == "1e+300" and values["nan"] == "nan"
    assert values["tags"] == ["a", "b"] and values["blob"] == "0001"
    assert (await audit.verify(conn, ctx.audit_key)).ok


async def test_cli_argv_and_os_actor_are_recorded(
    conn: psycopg.AsyncConnection[Any], key: bytes
) -> None:
    """CLI-5: the OS actor and the argv (secrets already removed by the caller)."""
    cli = Context(audit_key=key, os_actor="ops@host1", argv=("user", "unlock", "--email", "b@x"))
    await audit.record(
        conn, cli, ev.account_unlocked(2, "b@x", via="cli", reason="locked out at night")
    )
    [row] = await audit.recent(conn, 1)
    assert row.os_actor == "ops@host1" and row.actor_id is None
    assert row.metadata["argv"] == ["user", "unlock", "--email", "b@x"]
    assert row.metadata["reason"] == "locked out at night"
