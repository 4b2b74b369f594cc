"""Audit log: typed events on an HMAC chain, written in the caller's transaction (AUDIT-1..8)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field


def derive_key(secret_key: str) -> bytes:
    """The chain key is derived from secret_key so the raw key is never used twice."""
    return hmac.new(secret_key.encode(), b"keel-audit-chain-v1", hashlib.sha256).digest()


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
